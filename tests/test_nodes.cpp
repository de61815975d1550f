// Nested requests: every node torch.fx names (torchvision's get_graph_node_names) is accepted by
// the getter and returns the tensor create_feature_extractor returns, in execution order, with
// truncation; shapes and strides come from shape inference alone.
//
// Fixtures: tests/fixtures/nodes_<model>.safetensors (tools/make_fixtures.py --only nodes):
// detgen weights (seed 2024), one 1x3x40x48 input, every node's strided sample of 256 values
// and [sum, sum|.|, max|.|] of the whole output. Tolerances as tests/test_resnet.cpp, relative
// to the node's max|torch|: 1e-4 on the reference backend, 1e-3 on the fast path (Winograd's
// budget); sums of |.| within the same fraction of torch's.
#include <atomic>
#include <nlohmann/json.hpp>

#include "test_util.h"

using namespace strata;
using strata_test::random_tensor;

namespace {

struct NodeFixture {
    StateDict tensors;
    Metadata meta;
    std::vector<std::string> nodes;
    nlohmann::json shapes, stats, node_lists;
};

NodeFixture load_node_fixture(const std::string& model) {
    NodeFixture f;
    f.tensors = load(strata_test::fixture("nodes_" + model + ".safetensors"), &f.meta);
    REQUIRE(f.meta.at("model") == model);
    f.nodes = nlohmann::json::parse(f.meta.at("nodes")).get<std::vector<std::string>>();
    f.shapes = nlohmann::json::parse(f.meta.at("shapes"));
    f.stats = nlohmann::json::parse(f.meta.at("stats"));
    f.node_lists = nlohmann::json::parse(f.meta.at("node_lists"));
    return f;
}

std::shared_ptr<models::ResNet> fixture_model(const std::string& name) {
    auto model = models::create(name, 1000, 0, models::Init::None);
    fill_deterministic(*model, 2024);
    return model;
}

// Every sampled value within tol * max|torch| of torch's, and sum|.| within tol of torch's.
void check_node(const std::string& node, const Tensor& got, const NodeFixture& f, double tol) {
    INFO("node " << node);
    const auto want_shape = f.shapes.at(node).get<std::vector<int64_t>>();
    REQUIRE(got.shape() == Shape(want_shape.begin(), want_shape.end()));
    const Tensor g = got.contiguous();
    const float* v = g.data<float>();
    const int64_t numel = g.numel(), samples = std::stoll(f.meta.at("samples"));
    const int64_t step = std::max<int64_t>(1, (numel + samples - 1) / samples);
    const Tensor& sample = *f.tensors.find("sample." + node);
    const double max_abs = f.stats.at(node)[2].get<double>(), abs_sum = f.stats.at(node)[1].get<double>();
    REQUIRE(sample.numel() == (numel + step - 1) / step);
    double worst = 0;
    for (int64_t i = 0; i < sample.numel(); ++i)
        worst = std::max(worst, std::abs(static_cast<double>(v[i * step]) - sample.data<float>()[i]));
    double sum = 0;
    for (int64_t i = 0; i < numel; ++i) sum += std::abs(static_cast<double>(v[i]));
    INFO("max |diff| " << worst << " of max|torch| " << max_abs << "; sum|.| " << sum << " vs " << abs_sum);
    REQUIRE(worst <= tol * std::max(max_abs, 1e-30));
    REQUIRE(std::abs(sum - abs_sum) <= tol * std::max(abs_sum, 1e-30));
}

void check_every_node(const std::string& model_name, const RunOptions& options, double tol) {
    const NodeFixture f = load_node_fixture(model_name);
    auto model = fixture_model(model_name);
    REQUIRE(IntermediateLayerGetter::node_names(*model) == f.nodes);
    ReturnLayers every;
    for (const auto& n : f.nodes) every.emplace_back(n, n);
    const IntermediateLayerGetter getter(*model, every);
    const OrderedDict<Tensor> out = getter(*f.tensors.find("input"), options);
    REQUIRE(out.keys() == f.nodes);  // execution order
    for (const auto& [name, t] : out) check_node(name, t, f, tol);
    // output_info: the same shapes without running anything
    const auto info = getter.output_info({1, 3, 40, 48});
    REQUIRE(info.size() == f.nodes.size());
    for (const auto& i : info) {
        const auto s = f.shapes.at(i.name).get<std::vector<int64_t>>();
        REQUIRE(i.shape == Shape(s.begin(), s.end()));
    }
}

// Counts its calls; a leaf layer that passes its input through.
struct Counting : Module {
    mutable std::atomic<int> calls{0};
    std::string type_name() const override { return "Counting"; }
    Tensor forward(const Tensor& x, const RunOptions&) const override {
        ++calls;
        return x;
    }
    Shape output_shape(const Shape& in) const override { return in; }
};

}  // namespace

TEST_CASE("nodes: the node names are torch.fx's, for every ResNet strata offers") {
    const NodeFixture f = load_node_fixture("resnet18");
    for (const auto& [name, nodes] : f.node_lists.items()) {
        const auto known = models::names();
        if (std::find(known.begin(), known.end(), name) == known.end()) continue;  // not offered yet
        INFO("model " << name);
        REQUIRE(IntermediateLayerGetter::node_names(*models::create(name, 1000, 0, models::Init::None)) ==
                nodes.get<std::vector<std::string>>());
    }
}

TEST_CASE("nodes: every node of resnet18 equals create_feature_extractor's, reference and fast path") {
    check_every_node("resnet18", RunOptions{Backend::Reference, 2}, 1e-4);
    check_every_node("resnet18", RunOptions{Backend::Cpu, 2}, 1e-3);
}

TEST_CASE("nodes: every node of resnet50 equals create_feature_extractor's on the fast path") {
    check_every_node("resnet50", RunOptions{Backend::Cpu, 2}, 1e-3);
}

TEST_CASE("nodes: every node of resnext50_32x4d (grouped convolutions) equals create_feature_extractor's") {
    check_every_node("resnext50_32x4d", RunOptions{Backend::Cpu, 2}, 1e-3);
}

TEST_CASE("nodes: a sample of requests, each alone, equals the all-nodes run (fusion never changes a value)") {
    const NodeFixture f = load_node_fixture("resnet18");
    auto model = fixture_model("resnet18");
    const Tensor x = *f.tensors.find("input");
    for (const std::string node : {"layer1.0.bn1", "layer1.0.relu", "layer1.0.add", "layer2.0.downsample.1",
                                   "layer2.1", "layer3.0.bn2", "layer4.1.relu_1", "flatten", "fc", "x", "relu"}) {
        const IntermediateLayerGetter getter(*model, {{node, "out"}});
        const OrderedDict<Tensor> out = getter(x, RunOptions{Backend::Cpu, 1});
        REQUIRE(out.size() == 1);
        // "layer2.1" is a module: its last node, as create_feature_extractor resolves it
        check_node(std::string(node) == "layer2.1" ? "layer2.1.relu_1" : node, out[0].second, f, 1e-3);
    }
    // bn1 next to relu keeps its negative values: no aliasing, no fusion through a request
    const IntermediateLayerGetter both(*model, {{"layer1.0.relu", "r"}, {"layer1.0.bn1", "b"}});
    const auto out = both(x, RunOptions{Backend::Cpu, 1});
    REQUIRE(out.keys() == std::vector<std::string>{"b", "r"});  // execution order, not request order
    const Tensor b = out[0].second;
    REQUIRE(*std::min_element(b.data<float>(), b.data<float>() + b.numel()) < 0.0f);
    // direct children and nested names mix in one request
    const IntermediateLayerGetter mixed(*model, {{"layer1", "l1"}, {"layer2.0.conv1", "c"}});
    const auto m = mixed(x, RunOptions{Backend::Cpu, 1});
    check_node("layer1.1.relu_1", m[0].second, f, 1e-3);
    check_node("layer2.0.conv1", m[1].second, f, 1e-3);
}

TEST_CASE("nodes: only what the requests need runs") {
    // Sequential(Sequential(a, b, c), d): asking for "0.1" runs a and b only.
    auto a = std::make_shared<Counting>(), b = std::make_shared<Counting>(), c = std::make_shared<Counting>(),
         d = std::make_shared<Counting>();
    auto inner = std::make_shared<Sequential>(std::vector<std::shared_ptr<Module>>{a, b, c});
    const Sequential outer({inner, d});
    REQUIRE(IntermediateLayerGetter::node_names(outer) == std::vector<std::string>{"x", "0.0", "0.1", "0.2", "1"});
    const IntermediateLayerGetter getter(outer, {{"0.1", "b"}});
    getter(Tensor::zeros({1, 2, 3, 3}), RunOptions{Backend::Cpu, 1});
    REQUIRE(a->calls == 1);
    REQUIRE(b->calls == 1);
    REQUIRE(c->calls == 0);
    REQUIRE(d->calls == 0);

    // ResNet: a request for layer2.0.conv1 builds no weights of any later convolution.
    auto model = models::resnet18(10, 1);
    const Tensor x = random_tensor({1, 3, 32, 32}, "nodes.truncation", 0.0, 1.0);
    const uint64_t before = derived_weight_builds();
    IntermediateLayerGetter(*model, {{"layer2.0.conv1", "c"}})(x, RunOptions{Backend::Cpu, 1});
    const uint64_t truncated = derived_weight_builds() - before;
    IntermediateLayerGetter(*model, {{"layer2.0.conv2", "c"}})(x, RunOptions{Backend::Cpu, 1});
    const uint64_t longer = derived_weight_builds() - before - truncated;
    // stem 2 (fold + pack), layer1: 4 fused convolutions x 2, layer2.0.conv1 alone: 1
    CHECK(truncated == 11);
    REQUIRE(longer > truncated);
}

TEST_CASE("nodes: output_info gives shapes, channels and strides without running, and checks an input first") {
    auto model = models::create("resnet18", 1000, 0, models::Init::None);
    const IntermediateLayerGetter getter(
        *model, {{"conv1", "c1"}, {"maxpool", "pool"}, {"layer1", "l1"}, {"layer2", "l2"}, {"layer3.0.conv1", "l3c1"},
                 {"layer3", "l3"}, {"layer4", "l4"}, {"avgpool", "avg"}, {"flatten", "flat"}, {"fc", "fc"}});
    const uint64_t builds = derived_weight_builds();
    const auto info = getter.output_info({8, 3, 97, 131});
    REQUIRE(derived_weight_builds() == builds);
    const std::vector<std::pair<Shape, int64_t>> want = {
        {{8, 64, 49, 66}, 2},  {{8, 64, 25, 33}, 4},  {{8, 64, 25, 33}, 4}, {{8, 128, 13, 17}, 8},
        {{8, 256, 7, 9}, 16},  {{8, 256, 7, 9}, 16},  {{8, 512, 4, 5}, 32}, {{8, 512, 1, 1}, 0},
        {{8, 512}, 0},         {{8, 1000}, 0}};
    REQUIRE(info.size() == want.size());
    for (size_t i = 0; i < info.size(); ++i) {
        INFO(info[i].name);
        REQUIRE(info[i].shape == want[i].first);
        REQUIRE(info[i].stride == want[i].second);
        REQUIRE(info[i].channels == want[i].first[1]);
    }
    REQUIRE_THROWS_WITH(getter.output_info({1, 4, 32, 32}), Catch::StartsWith("conv1: expected 3 input channels, got 4"));

    // An input too small for a later layer fails before the first kernel runs.
    const Sequential net({std::make_shared<Conv2d>(3, 4, 3), std::make_shared<Conv2d>(4, 4, 5)});
    const IntermediateLayerGetter small(net, {{"1", "out"}});
    const uint64_t before = derived_weight_builds();
    REQUIRE_THROWS_WITH(small(Tensor::zeros({1, 3, 6, 6}), RunOptions{Backend::Cpu, 1}),
                        Catch::StartsWith("1: input of spatial size 4x4 (padded 4x4) is smaller than the kernel 5x5"));
    REQUIRE(derived_weight_builds() == before);  // the first convolution never packed its weights
}
