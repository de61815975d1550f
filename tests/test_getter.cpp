// IntermediateLayerGetter semantics (docs/GETTER.md), independent of fixtures:
// validation, truncation, model-order collection, the empty dict, duplicate names, aliasing,
// fc, and agreement with the full model's forward.
#include "test_util.h"

using namespace strata;

namespace {
std::shared_ptr<models::ResNet> small_resnet18() {
    auto m = models::resnet18();
    fill_deterministic(*m, 2024);
    return m;
}
std::vector<std::string> child_names(const Module& m) { return m.named_children().keys(); }
}  // namespace

TEST_CASE("getter: the seed example returns feat1 and feat2 with torchvision's shapes") {
    auto model = models::resnet18();
    IntermediateLayerGetter getter(*model, {{"layer1", "feat1"}, {"layer3", "feat2"}});
    const Tensor x = strata_test::random_tensor({1, 3, 224, 224}, "seed-input", 0.0, 1.0);
    const auto out = getter(x);
    REQUIRE(out.keys() == std::vector<std::string>{"feat1", "feat2"});
    REQUIRE(out.at("feat1").shape() == Shape{1, 64, 56, 56});
    REQUIRE(out.at("feat2").shape() == Shape{1, 256, 14, 14});
}

TEST_CASE("getter: truncation keeps children up to the last requested one") {
    auto model = models::resnet18();
    IntermediateLayerGetter g13(*model, {{"layer1", "a"}, {"layer3", "b"}});
    REQUIRE(child_names(g13) == std::vector<std::string>{"conv1", "bn1", "relu", "maxpool", "layer1",
                                                         "layer2", "layer3"});
    IntermediateLayerGetter g2(*model, {{"layer2", "x"}});
    REQUIRE(g2.num_parameters() == 683072);  // GETTER.md item 2
    REQUIRE(model->num_parameters() == 11689512);
    // state_dict keys are the model's keys for the kept children
    const StateDict sd = g2.state_dict();
    REQUIRE(sd.contains("layer2.0.downsample.0.weight"));
    REQUIRE_FALSE(sd.contains("layer3.0.conv1.weight"));
    REQUIRE(sd.keys().front() == "conv1.weight");
}

TEST_CASE("getter: outputs come in model order, not request order") {
    auto model = small_resnet18();
    IntermediateLayerGetter g(*model, {{"layer4", "out"}, {"layer3", "aux"}});
    const auto out = g(strata_test::random_tensor({1, 3, 64, 64}, "x", 0, 1));
    REQUIRE(out.keys() == std::vector<std::string>{"aux", "out"});
}

TEST_CASE("getter: an empty request keeps only the first child and returns nothing") {
    auto model = models::resnet18();
    IntermediateLayerGetter g(*model, {});
    REQUIRE(child_names(g) == std::vector<std::string>{"conv1"});
    REQUIRE(g(strata_test::random_tensor({1, 3, 32, 32}, "x")).empty());
}

TEST_CASE("getter: validation errors name the bad key, the valid names and the nearest one") {
    auto model = models::resnet18();
    try {
        IntermediateLayerGetter g(*model, {{"layer5", "x"}});
        FAIL("no error for layer5");
    } catch (const Error& e) {
        const std::string msg = e.what();
        INFO(msg);
        REQUIRE(msg.find("'layer5'") != std::string::npos);
        REQUIRE(msg.find("conv1, bn1, relu, maxpool, layer1, layer2, layer3, layer4, avgpool, fc") != std::string::npos);
    }
    REQUIRE_THROWS_WITH(IntermediateLayerGetter(*model, {{"layr3", "x"}}), Catch::Contains("nearest: 'layer3'"));
    REQUIRE_THROWS_WITH(IntermediateLayerGetter(*model, {{"avg_pool", "x"}}), Catch::Contains("nearest: 'avgpool'"));
    // nested names are FX's node names (tests/test_nodes.cpp); a bad one suggests a name under
    // its longest valid parent
    REQUIRE_THROWS_WITH(IntermediateLayerGetter(*model, {{"layer2.7", "x"}}),
                        Catch::Contains("'layer2.7' is not a module or graph node of ResNet") &&
                            Catch::Contains("nearest: 'layer2."));
    REQUIRE_THROWS_WITH(IntermediateLayerGetter(*model, {{"layer1.0.conv9", "x"}}), Catch::Contains("nearest: 'layer1.0.conv1'"));
    // duplicate new names are refused instead of silently dropping a layer
    REQUIRE_THROWS_WITH(IntermediateLayerGetter(*model, {{"layer1", "a"}, {"layer2", "a"}}),
                        Catch::Contains("new name 'a'"));
    REQUIRE_THROWS_WITH(IntermediateLayerGetter(*model, {{"layer1", "a"}, {"layer1", "b"}}),
                        Catch::Contains("'layer1' is requested twice"));
    REQUIRE_THROWS_WITH(IntermediateLayerGetter(*model, {{"layer1", ""}}), Catch::Contains("empty new name"));
}

TEST_CASE("getter: bn1 next to relu returns bn1's true output (no in-place aliasing)") {
    auto model = small_resnet18();
    IntermediateLayerGetter g(*model, {{"bn1", "bn1"}, {"relu", "relu"}});
    const Tensor x = strata_test::random_tensor({1, 3, 64, 64}, "x", 0, 1);
    const auto out = g(x);
    const Tensor& bn1 = out.at("bn1");
    const float* p = bn1.data<float>();
    const float min_bn1 = *std::min_element(p, p + bn1.numel());
    REQUIRE(min_bn1 < 0.0f);  // torchvision's inplace ReLU would have made this 0
    // and it equals bn1 computed on its own
    const Tensor conv = model->child("conv1")->forward(x);
    const Tensor bn = model->child("bn1")->forward(conv);
    // conv1 is not requested, so conv1+bn1 run fused (BatchNorm folded): rounding only.
    STRATA_REQUIRE_CLOSE(bn1, bn, 1e-5, "bn1");
    const float* r = out.at("relu").data<float>();
    REQUIRE(*std::min_element(r, r + bn1.numel()) == 0.0f);
}

TEST_CASE("getter: fc gives the full model's logits (ResNet's flatten is reproduced)") {
    auto model = small_resnet18();
    const Tensor x = strata_test::random_tensor({2, 3, 48, 40}, "x", 0, 1);
    IntermediateLayerGetter g(*model, {{"avgpool", "pool"}, {"fc", "logits"}});
    const auto out = g(x);
    REQUIRE(out.at("pool").shape() == Shape{2, 512, 1, 1});
    REQUIRE(out.at("logits").shape() == Shape{2, 1000});
    STRATA_REQUIRE_CLOSE(out.at("logits"), model->forward(x), 0.0, "logits vs model.forward");
}

TEST_CASE("getter: outputs equal running the children by hand, any batch and size") {
    auto model = small_resnet18();
    for (const Shape& shape : {Shape{1, 3, 33, 47}, Shape{3, 3, 64, 64}}) {
        const Tensor x = strata_test::random_tensor(shape, "x", 0, 1);
        IntermediateLayerGetter g(*model, {{"maxpool", "m"}, {"layer2", "l2"}});
        const auto out = g(x);
        Tensor y = x;
        for (const char* name : {"conv1", "bn1", "relu", "maxpool"}) y = model->child(name)->forward(y);
        // The getter fuses conv1+bn1+relu (BatchNorm folded), by hand they run apart: rounding only.
        STRATA_REQUIRE_CLOSE(out.at("m"), y, 1e-5, "maxpool");
        y = model->child("layer2")->forward(model->child("layer1")->forward(y));
        STRATA_REQUIRE_CLOSE(out.at("l2"), y, 1e-5, "layer2");
    }
}

TEST_CASE("getter: errors from a child carry its module path") {
    auto model = models::resnet18();
    IntermediateLayerGetter g(*model, {{"layer1", "a"}});
    REQUIRE_THROWS_WITH(g(Tensor::zeros({1, 4, 32, 32})), Catch::StartsWith("conv1: expected 3 input channels, got 4"));
    REQUIRE_THROWS_WITH(g.forward(Tensor::zeros({1, 3, 32, 32})), Catch::Contains("call getter(x)"));
}
