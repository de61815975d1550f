// The module tree: registration, traversal order and names, state_dict layout (BatchNorm2d and
// all of ResNet-18, against torchvision's), the strict and non-strict loaders, and errors that
// name the module path.
#include <algorithm>
#include <functional>
#include <memory>

#include "test_util.h"

using namespace strata;
using strata_test::compare_bitwise;
using strata_test::random_tensor;

namespace {

// A bare container module.
class Node : public Module {
public:
    std::string type_name() const override { return "Node"; }
};

std::vector<std::string> names_of(const std::vector<std::pair<std::string, Tensor>>& items) {
    std::vector<std::string> out;
    for (const auto& item : items) out.push_back(item.first);
    return out;
}

// A deep copy of every tensor of the module's state, in order.
StateDict snapshot(const Module& m) {
    StateDict out;
    for (const auto& [k, t] : m.state_dict()) out.insert(k, t.clone());
    return out;
}

// The module's state equals `before`, bit for bit.
void require_unchanged(const Module& m, const StateDict& before) {
    const StateDict now = m.state_dict();
    REQUIRE(now.keys() == before.keys());
    for (const auto& [k, t] : now) {
        INFO("state " << k);
        STRATA_REQUIRE_CMP(compare_bitwise(t, before.at(k)), "unchanged after a failed load");
    }
}

// Conv2d(3, 4, 3) -> BatchNorm2d(4): keys 0.weight 0.bias 1.weight 1.bias 1.running_mean
// 1.running_var 1.num_batches_tracked.
std::shared_ptr<Sequential> small_model() {
    return std::make_shared<Sequential>(std::vector<std::shared_ptr<Module>>{
        std::make_shared<Conv2d>(3, 4, 3), std::make_shared<BatchNorm2d>(4)});
}

// The small model's state with fresh random values (valid: positive variances).
StateDict random_state(const Module& m, const std::string& key) {
    StateDict out;
    for (const auto& [k, t] : m.state_dict()) {
        if (t.dtype() == DType::Int64) out.insert(k, Tensor::zeros(t.shape(), DType::Int64));
        else out.insert(k, random_tensor(t.shape(), key + "." + k, 0.25, 2.0));
    }
    return out;
}

std::string error_message(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

}  // namespace

TEST_CASE("module: register_module keeps insertion order and refuses dotted or duplicate names") {
    Node root;
    root.register_module("zeta", std::make_shared<Node>());
    root.register_module("alpha", std::make_shared<ReLU>());
    root.register_module("mid", std::make_shared<Node>());
    REQUIRE(root.named_children().keys() == std::vector<std::string>{"zeta", "alpha", "mid"});
    REQUIRE(root.child("alpha")->type_name() == "ReLU");

    REQUIRE_THROWS_WITH(root.register_module("a.b", std::make_shared<Node>()), Catch::Contains("a.b"));
    REQUIRE_THROWS_AS(root.register_module("alpha", std::make_shared<Node>()), Error);
    REQUIRE_THROWS_AS(root.register_module("", std::make_shared<Node>()), Error);
    REQUIRE_THROWS_AS(root.register_module("null", std::shared_ptr<Node>()), Error);
    REQUIRE_THROWS_AS(root.register_parameter("w.x", Tensor::zeros({1})), Error);
    REQUIRE_THROWS_AS(root.register_parameter("mid", Tensor::zeros({1})), Error);  // a child's name
    root.register_parameter("w", Tensor::zeros({1}));
    REQUIRE_THROWS_AS(root.register_buffer("w", Tensor::zeros({1})), Error);
    REQUIRE_THROWS_AS(root.register_parameter("w", Tensor::zeros({1})), Error);
    REQUIRE_THROWS_WITH(root.child("nope"), Catch::Contains("nope"));
    // Nothing was added by the refused calls.
    REQUIRE(root.named_children().keys() == std::vector<std::string>{"zeta", "alpha", "mid"});
    REQUIRE(names_of(root.named_parameters()) == std::vector<std::string>{"w"});
}

TEST_CASE("module: named_children, named_modules, named_parameters and named_buffers use dotted paths") {
    auto root = std::make_shared<Node>();
    auto features = root->register_module("features", std::make_shared<Sequential>());
    features->push_back(std::make_shared<Conv2d>(3, 8, 3, 1, 1, 1, 1, false));
    features->push_back(std::make_shared<BatchNorm2d>(8));
    features->push_back(std::make_shared<ReLU>());
    auto head = root->register_module("head", std::make_shared<Node>());
    head->register_module("fc", std::make_shared<Linear>(8, 2));

    REQUIRE(root->named_children().keys() == std::vector<std::string>{"features", "head"});
    REQUIRE(features->named_children().keys() == std::vector<std::string>{"0", "1", "2"});

    const auto modules = root->named_modules();
    std::vector<std::string> paths;
    for (const auto& [path, m] : modules) paths.push_back(path);
    REQUIRE(paths == std::vector<std::string>{"", "features", "features.0", "features.1", "features.2", "head", "head.fc"});
    REQUIRE(modules[0].second.get() == root.get());  // the root is "" and is this module
    REQUIRE(modules[1].second.get() == features.get());
    REQUIRE(modules[3].second->type_name() == "BatchNorm2d");
    REQUIRE(modules[6].second->type_name() == "Linear");

    REQUIRE(names_of(root->named_parameters()) ==
            std::vector<std::string>{"features.0.weight", "features.1.weight", "features.1.bias", "head.fc.weight", "head.fc.bias"});
    REQUIRE(names_of(root->named_buffers()) ==
            std::vector<std::string>{"features.1.running_mean", "features.1.running_var", "features.1.num_batches_tracked"});
    REQUIRE(root->num_parameters() == 8 * 3 * 3 * 3 + 8 + 8 + 2 * 8 + 2);
    // Parameters are the layer's own tensors, not copies.
    REQUIRE(root->named_parameters()[0].second.raw_data() == std::static_pointer_cast<Conv2d>(features->child("0"))->weight().raw_data());
}

TEST_CASE("module: BatchNorm2d's state_dict is weight, bias, running_mean, running_var, num_batches_tracked") {
    BatchNorm2d bn(16);
    const StateDict state = bn.state_dict();
    REQUIRE(state.keys() == std::vector<std::string>{"weight", "bias", "running_mean", "running_var", "num_batches_tracked"});
    for (const char* k : {"weight", "bias", "running_mean", "running_var"}) {
        INFO(k);
        REQUIRE(state.at(k).shape() == Shape{16});
        REQUIRE(state.at(k).dtype() == DType::Float32);
    }
    const Tensor& nbt = state.at("num_batches_tracked");
    REQUIRE(nbt.dtype() == DType::Int64);
    REQUIRE(nbt.shape() == Shape{});
    REQUIRE(nbt.numel() == 1);
    // torch's fresh BatchNorm2d: weight 1, bias 0, mean 0, var 1, count 0.
    REQUIRE(state.at("weight").item_at({3}) == 1.0);
    REQUIRE(state.at("bias").item_at({3}) == 0.0);
    REQUIRE(state.at("running_mean").item_at({3}) == 0.0);
    REQUIRE(state.at("running_var").item_at({3}) == 1.0);
    REQUIRE(nbt.item_at({}) == 0.0);
    REQUIRE(names_of(bn.named_parameters()) == std::vector<std::string>{"weight", "bias"});
}

TEST_CASE("module: ResNet-18's state_dict has torchvision's keys, shapes and parameter count") {
    const auto model = models::resnet18();
    const StateDict state = model->state_dict();
    // torchvision.models.resnet18().state_dict(): 122 entries = 62 parameters + 60 buffers
    // (20 BatchNorm2d x running_mean, running_var, num_batches_tracked); 102 = 122 - the 20
    // num_batches_tracked. 11,689,512 parameters. (Counted with torch 1.13 / torchvision 0.14.)
    REQUIRE(state.size() == 122);
    REQUIRE(model->named_parameters().size() == 62);
    REQUIRE(model->named_buffers().size() == 60);
    REQUIRE(model->num_parameters() == 11689512);
    int num_batches_tracked = 0;
    for (const auto& [k, t] : state)
        if (k.size() > 20 && k.compare(k.size() - 20, 20, ".num_batches_tracked") == 0) {
            ++num_batches_tracked;
            INFO(k);
            REQUIRE(t.dtype() == DType::Int64);
            REQUIRE(t.shape() == Shape{});
        }
    REQUIRE(num_batches_tracked == 20);

    REQUIRE(state[0].first == "conv1.weight");
    REQUIRE(state[state.size() - 1].first == "fc.bias");
    const std::pair<const char*, Shape> expected[] = {
        {"conv1.weight", {64, 3, 7, 7}},
        {"bn1.running_var", {64}},
        {"layer1.0.conv1.weight", {64, 64, 3, 3}},
        {"layer1.1.bn2.bias", {64}},
        {"layer2.0.conv1.weight", {128, 64, 3, 3}},
        {"layer2.0.downsample.0.weight", {128, 64, 1, 1}},
        {"layer2.0.downsample.1.running_mean", {128}},
        {"layer3.1.conv2.weight", {256, 256, 3, 3}},
        {"layer4.0.downsample.0.weight", {512, 256, 1, 1}},
        {"layer4.1.bn2.weight", {512}},
        {"fc.weight", {1000, 512}},
        {"fc.bias", {1000}},
    };
    for (const auto& [key, shape] : expected) {
        INFO(key);
        REQUIRE(state.contains(key));
        REQUIRE(state.at(key).shape() == shape);
    }
    // Only the first block of layers 2-4 has a downsample; layer1 has none.
    REQUIRE_FALSE(state.contains("layer1.0.downsample.0.weight"));
    REQUIRE_FALSE(state.contains("layer2.1.downsample.0.weight"));
    // Within a module, parameters come before buffers; then children in order (torch's order).
    const auto keys = state.keys();
    const auto pos = [&](const std::string& k) { return std::find(keys.begin(), keys.end(), k) - keys.begin(); };
    REQUIRE(pos("layer2.0.bn2.num_batches_tracked") + 1 == pos("layer2.0.downsample.0.weight"));
    REQUIRE(pos("bn1.bias") + 1 == pos("bn1.running_mean"));
}

TEST_CASE("module: a strict load reports every missing, unexpected and mis-shaped key in one error") {
    auto model = small_model();
    const StateDict before = snapshot(*model);
    StateDict bad;
    for (const auto& [k, t] : random_state(*model, "strict")) {
        if (k == "1.bias") continue;                                     // missing
        if (k == "0.weight") bad.insert(k, Tensor::zeros({4, 3, 3, 2})); // wrong shape
        else bad.insert(k, t);
    }
    bad.insert("2.weight", Tensor::zeros({2}));  // unexpected
    const std::string msg = error_message([&] { model->load_state_dict(bad, true); });
    INFO("message: " << msg);
    CHECK_THAT(msg, Catch::Contains("missing"));
    CHECK_THAT(msg, Catch::Contains("1.bias"));
    CHECK_THAT(msg, Catch::Contains("unexpected"));
    CHECK_THAT(msg, Catch::Contains("2.weight"));
    CHECK_THAT(msg, Catch::Contains("0.weight (expected [4, 3, 3, 3], found [4, 3, 3, 2])"));
    REQUIRE_THROWS_AS(model->load_state_dict(bad, true), Error);
    require_unchanged(*model, before);  // a failed load changes nothing
}

TEST_CASE("module: a non-strict load ignores missing and unexpected keys but not shape mismatches") {
    auto model = small_model();
    const StateDict fresh = snapshot(*model);
    const StateDict values = random_state(*model, "nonstrict");
    StateDict partial;
    for (const auto& [k, t] : values)
        if (k != "1.running_var") partial.insert(k, t);
    partial.insert("extra.weight", Tensor::zeros({3}));
    REQUIRE_THROWS_AS(model->load_state_dict(partial, true), Error);
    require_unchanged(*model, fresh);
    REQUIRE_NOTHROW(model->load_state_dict(partial, false));
    const StateDict now = model->state_dict();
    for (const auto& [k, t] : now) {
        INFO("state " << k);
        // Loaded keys take the new values; the missing one keeps its own.
        STRATA_REQUIRE_CMP(compare_bitwise(t, k == "1.running_var" ? fresh.at(k) : values.at(k)), "after non-strict load");
    }

    // A shape mismatch fails even without strict, and changes nothing.
    const StateDict loaded = snapshot(*model);
    StateDict misfit;
    for (const auto& [k, t] : random_state(*model, "misfit")) misfit.insert(k, k == "1.weight" ? Tensor::zeros({5}) : t);
    const std::string msg = error_message([&] { model->load_state_dict(misfit, false); });
    INFO("message: " << msg);
    CHECK_THAT(msg, Catch::Contains("1.weight (expected [4], found [5])"));
    REQUIRE_THROWS_AS(model->load_state_dict(misfit, false), Error);
    require_unchanged(*model, loaded);
}

TEST_CASE("module: float16 and bfloat16 state values load converted to float32") {
    for (DType dtype : {DType::Float16, DType::BFloat16}) {
        INFO("dtype " << dtype_name(dtype));
        auto model = small_model();
        StateDict state;
        for (const auto& [k, t] : random_state(*model, std::string("half.") + dtype_name(dtype)))
            state.insert(k, t.dtype() == DType::Int64 ? t : t.to(dtype));
        REQUIRE(state.at("0.weight").dtype() == dtype);
        REQUIRE_NOTHROW(model->load_state_dict(state, true));
        for (const auto& [k, t] : model->state_dict()) {
            INFO("state " << k);
            if (t.dtype() == DType::Int64) continue;
            REQUIRE(t.dtype() == DType::Float32);
            // Every 16-bit value is exact in float32: the conversion must be exact too.
            STRATA_REQUIRE_CMP(compare_bitwise(t, state.at(k).to(DType::Float32)), "loaded value");
            const float v = t.data<float>()[0];
            const uint16_t raw = state.at(k).data<uint16_t>()[0];
            REQUIRE(v == (dtype == DType::Float16 ? half_to_float(raw) : bfloat16_to_float(raw)));
        }
    }
}

TEST_CASE("module: a channel mismatch inside a Sequential or ResNet names the module path") {
    Sequential seq(std::vector<std::shared_ptr<Module>>{
        std::make_shared<Conv2d>(3, 8, 3), std::make_shared<ReLU>(), std::make_shared<Conv2d>(16, 4, 1)});
    const std::string seq_msg = error_message([&] { seq(random_tensor({1, 3, 9, 9}, "path.seq")); });
    INFO("Sequential message: " << seq_msg);
    REQUIRE(seq_msg.rfind("2: expected 16 input channels, got 8", 0) == 0);

    const auto model = models::resnet18();
    const std::string msg = error_message([&] { model->forward(random_tensor({1, 4, 32, 32}, "path.resnet")); });
    INFO("resnet18 message: " << msg);
    REQUIRE(msg.rfind("conv1: expected 3 input channels, got 4", 0) == 0);

    // layer2 called on its own: the path is relative to it. Its first block expects 64 channels.
    try {
        model->child("layer2")->forward(random_tensor({1, 32, 16, 16}, "path.layer2"));
        FAIL("layer2 accepted a 32-channel input");
    } catch (const Error& e) {
        INFO("layer2 message: " << e.what());
        REQUIRE(std::string(e.what()).rfind("0.conv1: expected 64 input channels, got 32", 0) == 0);
        REQUIRE(e.path() == "0.conv1");
    }
    // Paths compose: layer2 inside another Sequential reports "0." in front.
    Sequential outer(std::vector<std::shared_ptr<Module>>{model->child("layer2")});
    const std::string nested = error_message([&] { outer(random_tensor({1, 32, 16, 16}, "path.outer")); });
    INFO("nested message: " << nested);
    REQUIRE(nested.rfind("0.0.conv1: expected 64 input channels, got 32", 0) == 0);
}
