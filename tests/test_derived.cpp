// Derived weights (BatchNorm folded, packed, Winograd-transformed) belong to the model they come
// from: loading one model never rebuilds another's, a load into a model (or a getter sharing its
// children) rebuilds exactly that model's, and the executor's fused groups follow the weights.
#include "test_util.h"

using namespace strata;
using strata_test::compare_bitwise;
using strata_test::random_tensor;

namespace {

const RunOptions kCpu{Backend::Cpu, 1};

}  // namespace

TEST_CASE("derived weights: loading one model leaves another model's packed weights untouched") {
    auto a = models::resnet18(10, 1);
    auto b = models::resnet18(10, 2);
    const Tensor x = random_tensor({1, 3, 32, 32}, "derived.x", 0.0, 1.0);
    const Tensor a_before = a->forward(x, kCpu);
    const Tensor b_before = b->forward(x, kCpu);  // packs b's weights

    // b is warm: calling it again builds nothing.
    const uint64_t warm = derived_weight_builds();
    STRATA_REQUIRE_CMP(compare_bitwise(b->forward(x, kCpu), b_before), "b, second call");
    REQUIRE(derived_weight_builds() == warm);

    // Loading into a (here: b's weights) rebuilds a's derived weights on its next call, never b's.
    a->load_state_dict(b->state_dict());
    STRATA_REQUIRE_CMP(compare_bitwise(b->forward(x, kCpu), b_before), "b after loading a");
    REQUIRE(derived_weight_builds() == warm);
    STRATA_REQUIRE_CMP(compare_bitwise(a->forward(x, kCpu), b_before), "a, now with b's weights");
    REQUIRE(derived_weight_builds() > warm);

    // The same through init (fill_deterministic moves the versions of the model it fills).
    const uint64_t after_a = derived_weight_builds();
    fill_deterministic(*a, 7);
    REQUIRE(b->forward(x, kCpu).shape() == b_before.shape());
    REQUIRE(derived_weight_builds() == after_a);
    const Tensor a_filled = a->forward(x, kCpu);
    REQUIRE(derived_weight_builds() > after_a);
    REQUIRE_FALSE(compare_bitwise(a_filled, a_before).ok);
}

TEST_CASE("derived weights: a getter shares the model's children, so a load into either is seen by both") {
    auto model = models::resnet18(10, 3);
    const IntermediateLayerGetter getter(*model, {{"layer2", "feat"}});
    const Tensor x = random_tensor({1, 3, 40, 40}, "derived.getter.x", 0.0, 1.0);
    const Tensor before = getter(x, kCpu)[0].second;

    auto other = models::resnet18(10, 4);
    const IntermediateLayerGetter other_getter(*other, {{"layer2", "feat"}});
    const Tensor want = other_getter(x, kCpu)[0].second;

    model->load_state_dict(other->state_dict());  // the getter's kept children are the model's
    const Tensor after = getter(x, kCpu)[0].second;
    STRATA_REQUIRE_CMP(compare_bitwise(after, want), "getter after a load into its model");
    REQUIRE_FALSE(compare_bitwise(after, before).ok);

    // And the other way round: a load into the getter changes the model's layer2 too.
    IntermediateLayerGetter writable(*model, {{"layer2", "feat"}});
    auto third = models::resnet18(10, 5);
    StateDict kept;
    for (const auto& [k, t] : third->state_dict())
        if (writable.state_dict().contains(k)) kept.insert(k, t);
    writable.load_state_dict(kept);
    const IntermediateLayerGetter third_getter(*third, {{"layer2", "feat"}});
    STRATA_REQUIRE_CMP(compare_bitwise(getter(x, kCpu)[0].second, third_getter(x, kCpu)[0].second),
                       "model's getter after a load into another getter over the same children");
}

TEST_CASE("Sequential: nested Sequentials run in place, fused groups end at requested outputs") {
    // Sequential(Sequential(conv, bn, relu), conv, bn): every request on the fast path equals the
    // reference backend's unfused run within the fast path's tolerance, and the fusing executor
    // keeps errors' module paths.
    auto inner = std::make_shared<Sequential>(std::vector<std::shared_ptr<Module>>{
        std::make_shared<Conv2d>(Conv2dOptions(3, 8, 3).padding(1).bias(false)), std::make_shared<BatchNorm2d>(8),
        std::make_shared<ReLU>()});
    Sequential outer({inner, std::make_shared<Conv2d>(Conv2dOptions(8, 4, 3).stride(2)), std::make_shared<BatchNorm2d>(4)});
    fill_deterministic(outer, 11);
    const Tensor x = random_tensor({2, 3, 17, 19}, "sequential.x", -1.0, 1.0);
    const Tensor ref = outer.forward(x, RunOptions{Backend::Reference, 1});
    STRATA_REQUIRE_CMP(strata_test::compare(outer.forward(x, kCpu), ref, 1e-5), "fused vs reference");
    REQUIRE(inner->forward(x, kCpu).shape() == Shape{2, 8, 17, 19});

    const Tensor wrong = random_tensor({1, 5, 9, 9}, "sequential.wrong", 0.0, 1.0);
    for (const RunOptions& o : {kCpu, RunOptions{Backend::Reference, 1}})
        REQUIRE_THROWS_WITH(outer.forward(wrong, o), Catch::StartsWith("0.0: expected 3 input channels, got 5"));
}

TEST_CASE("Conv2dOptions: named arguments build the same convolution as the positional form") {
    const Conv2d named(Conv2dOptions(4, 6, {3, 5}).stride(2).padding({1, 2}).dilation(2).groups(2).bias(false));
    const Conv2d positional(4, 6, {3, 5}, 2, {1, 2}, 2, 2, false);
    REQUIRE(named.extra_repr() == positional.extra_repr());
    REQUIRE(named.extra_repr() == "4, 6, kernel_size=(3, 5), stride=(2, 2), padding=(1, 2), dilation=(2, 2), groups=2, bias=False");
}
