// Loading what a getter keeps (core/load_for_request.h): the rule on hand-made state_dicts, then
// the checkpoints people have, written by torch itself (tests/fixtures/backbones/ckpt_*.pth,
// tools/make_fixtures.py --only backbones): a segmentation model's state_dict (DeepLabV3's layout,
// keys under backbone.), a detection model's (Faster R-CNN's layout, keys under backbone.body.,
// FrozenBatchNorm2d: no num_batches_tracked) and a getter's own (truncated, no fc). Each wraps a
// torchvision resnet18 truncated after layer1 (a whole backbone's weights are too large to commit),
// stored as float16 or bfloat16; torch's outputs are computed with those rounded weights.
// Tolerance as tests/test_resnet.cpp: max|strata - torch| <= 1e-3 * max|torch| on the fast CPU
// path, 1e-4 on the reference kernels.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "test_util.h"

using namespace strata;

namespace {

constexpr double kReferenceTolerance = 1e-4;
constexpr double kFastTolerance = 1e-3;

std::shared_ptr<models::ResNet> fresh_resnet18() {
    auto m = models::create("resnet18", 1000, 0, models::Init::None);
    return m;
}

StateDict without(const StateDict& sd, const std::function<bool(const std::string&)>& drop) {
    StateDict out;
    for (const auto& [k, t] : sd)
        if (!drop(k)) out.insert(k, t);
    return out;
}

bool ends_with(const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

const std::vector<std::string> kUpToLayer3 = {"conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3"};

}  // namespace

TEST_CASE("load_for_request: keys of children that do not run may be absent; of those that run may not") {
    auto source = models::resnet18(1000, 3);
    const StateDict full = source->state_dict();
    const StateDict no_fc = without(full, [](const std::string& k) { return k.rfind("fc.", 0) == 0; });

    auto model = fresh_resnet18();
    const RequestLoadSummary s = load_for_request(*model, no_fc, kUpToLayer3);
    REQUIRE(s.kept_default.empty());
    // layer4's keys are in the file but layer4 does not run: not loaded.
    REQUIRE(s.not_loaded.front() == "layer4.0.conv1.weight");
    REQUIRE(model->state_dict().at("layer3.1.bn2.running_var").data<float>()[3] ==
            full.at("layer3.1.bn2.running_var").data<float>()[3]);
    REQUIRE(model->state_dict().at("layer4.0.conv1.weight").data<float>()[0] == 0.0f);

    // fc runs: its keys are required, reported as load_state_dict reports them.
    auto all = model->named_children().keys();
    REQUIRE_THROWS_WITH(load_for_request(*fresh_resnet18(), no_fc, all),
                        "error(s) in loading state_dict for ResNet (children run: conv1, bn1, relu, maxpool, layer1, "
                        "layer2, layer3, layer4, avgpool, fc): missing keys (2): fc.weight, fc.bias");
    REQUIRE(check_for_request(*model, full, all).empty());
    REQUIRE(required_keys(*model, {"conv1", "bn1"}) ==
            std::vector<std::string>{"conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var"});
}

TEST_CASE("load_for_request: num_batches_tracked may be absent (FrozenBatchNorm2d) and keeps its value") {
    const StateDict full = models::resnet18(1000, 3)->state_dict();
    const StateDict frozen = without(full, [](const std::string& k) { return ends_with(k, "num_batches_tracked"); });
    auto model = fresh_resnet18();
    model->state_dict().at("bn1.num_batches_tracked").data<int64_t>()[0] = 7;
    const RequestLoadSummary s = load_for_request(*model, frozen, model->named_children().keys(), LoadMode::Share);
    REQUIRE(s.kept_default.size() == 20);  // every BatchNorm of resnet18
    REQUIRE(model->state_dict().at("bn1.num_batches_tracked").data<int64_t>()[0] == 7);
    REQUIRE(model->state_dict().at("layer2.0.downsample.1.num_batches_tracked").data<int64_t>()[0] == 0);
    // Present, it loads (an int64 scalar like any other buffer).
    auto with_count = fresh_resnet18();
    full.at("bn1.num_batches_tracked").data<int64_t>()[0] = 11;
    load_for_request(*with_count, full, {"conv1", "bn1"});
    REQUIRE(with_count->state_dict().at("bn1.num_batches_tracked").data<int64_t>()[0] == 11);
}

TEST_CASE("load_for_request: unknown keys and wrong shapes are errors; dropped children are not checked") {
    const StateDict full = models::resnet18(1000, 3)->state_dict();
    // A checkpoint fine-tuned for 10 classes: its fc is not run, so its shape does not matter.
    StateDict ten_classes = without(full, [](const std::string& k) { return k.rfind("fc.", 0) == 0; });
    ten_classes.insert("fc.weight", Tensor::zeros({10, 512}));
    ten_classes.insert("fc.bias", Tensor::zeros({10}));
    auto model = fresh_resnet18();
    REQUIRE_NOTHROW(load_for_request(*model, ten_classes, {"conv1", "bn1", "relu", "maxpool", "layer1", "layer2",
                                                           "layer3", "layer4"}));
    REQUIRE_THROWS_WITH(load_for_request(*fresh_resnet18(), ten_classes, model->named_children().keys()),
                        Catch::Contains("shape mismatch (2): fc.weight (expected [1000, 512], found [10, 512]), "
                                        "fc.bias (expected [1000], found [10])"));
    // A key the model does not have is an error, whichever children run; nothing is loaded then.
    StateDict extra = full;
    extra.insert("classifier.0.weight", Tensor::zeros({3}));
    auto untouched = fresh_resnet18();
    REQUIRE_THROWS_WITH(load_for_request(*untouched, extra, {"conv1"}),
                        Catch::EndsWith("unexpected keys (1): classifier.0.weight"));
    REQUIRE(untouched->state_dict().at("conv1.weight").data<float>()[0] == 0.0f);
    REQUIRE_THROWS_WITH(load_for_request(*untouched, full, {"conv1", "layer5"}),
                        Catch::Contains("'layer5' is not a child of ResNet"));
}

// ---- torch-written checkpoints --------------------------------------------------------------------
namespace {

struct Checkpoint {
    const char* kind;       // the expected outputs are "<kind>.<name>"
    const char* file;
    const char* prefix;     // --strip-prefix that selects the backbone
    ReturnLayers request;   // what torch's own getter returned
};

const std::vector<Checkpoint>& checkpoints() {
    static const std::vector<Checkpoint> all = {
        {"segmentation", "ckpt_segmentation.pth", "backbone.", {{"layer1", "out"}, {"maxpool", "aux"}}},
        {"detection", "ckpt_detection.pth", "backbone.body.", {{"layer1", "0"}}},
        {"getter", "ckpt_getter.pth", "", {{"layer1", "feat"}}},
    };
    return all;
}

std::string ckpt_path(const Checkpoint& c) { return strata_test::fixture(std::string("backbones/") + c.file); }

const StateDict& expected_outputs() {
    static const StateDict e = load(strata_test::fixture("backbones/ckpt_expected.safetensors"));
    return e;
}

using Run = strata_test::CliRun;
using strata_test::slurp;

std::string tmp(const std::string& name) { return "ckpt_" + std::to_string(::getpid()) + "_" + name; }

Run run_cli(const std::string& args) { return strata_test::run_cli(args, "ckpt"); }

std::string layers_arg(const ReturnLayers& request) {
    std::string s;
    for (const auto& [layer, name] : request) s += (s.empty() ? "" : ",") + layer + ":" + name;
    return s;
}

}  // namespace

TEST_CASE("checkpoints (C++ API): segmentation, detection and getter state_dicts load for the getter and match torch") {
    for (const auto& c : checkpoints()) {
        INFO("checkpoint " << c.file);
        LoadOptions options;
        options.strip_prefix = c.prefix;
        const StateDict state = load(ckpt_path(c), options);
        auto model = fresh_resnet18();
        const IntermediateLayerGetter getter(*model, c.request);
        load_for_request(*model, state, getter.named_children().keys(), LoadMode::Share);
        for (const RunOptions& o : {RunOptions{Backend::Cpu, 2}, RunOptions{Backend::Reference, 1}}) {
            const auto out = getter(expected_outputs().at("input"), o);
            REQUIRE(out.size() == c.request.size());
            for (const auto& [name, t] : out)
                STRATA_REQUIRE_CLOSE(t, expected_outputs().at(std::string(c.kind) + "." + name),
                                     o.backend == Backend::Reference ? kReferenceTolerance : kFastTolerance, name);
        }
        // layer2 is not in the file: a request that runs it fails, naming its keys.
        const IntermediateLayerGetter deeper(*model, {{"layer2", "x"}});
        REQUIRE_THROWS_WITH(load_for_request(*fresh_resnet18(), state, deeper.named_children().keys()),
                            Catch::Contains("missing keys (25): layer2.0.conv1.weight, layer2.0.bn1.weight"));
    }
}

TEST_CASE("checkpoints (CLI): the suggested --strip-prefix leads to a working command, equal to torch") {
    save_npy(expected_outputs().at("input"), tmp("x.npy"));
    for (const auto& c : checkpoints()) {
        INFO("checkpoint " << c.file);
        const std::string base = "features --model resnet18 --weights " + ckpt_path(c) + " --input " + tmp("x.npy") +
                                 " --layers " + layers_arg(c.request) + " --threads 2 --out " + tmp("out.safetensors");
        std::string args = base;
        if (*c.prefix) {
            // Without the prefix: exit 2, one line, naming the --strip-prefix that loads the file.
            const Run bad = run_cli(base);
            INFO(bad.err);
            REQUIRE(bad.rc == 2);
            REQUIRE(std::count(bad.err.begin(), bad.err.end(), '\n') == 1);
            const std::string hint = "add --strip-prefix ";
            const size_t at = bad.err.find(hint);
            REQUIRE(at != std::string::npos);
            const std::string suggested = bad.err.substr(at + hint.size(), bad.err.find(' ', at + hint.size()) - at - hint.size());
            REQUIRE(suggested == c.prefix);
            REQUIRE_FALSE(std::ifstream(tmp("out.safetensors")).good());
            args += " --strip-prefix " + suggested;
        }
        const Run r = run_cli(args);
        INFO(args << "\n" << r.err);
        REQUIRE(r.rc == 0);
        REQUIRE(r.err.empty());
        const StateDict out = load(tmp("out.safetensors"));
        REQUIRE(out.size() == c.request.size());
        for (const auto& [name, t] : out)
            STRATA_REQUIRE_CLOSE(t, expected_outputs().at(std::string(c.kind) + "." + name), kFastTolerance, name);
        std::remove(tmp("out.safetensors").c_str());
        // Asking for more than the file holds names the missing keys of the child that would run.
        const Run deeper = run_cli("features --model resnet18 --weights " + ckpt_path(c) +
                                   (*c.prefix ? std::string(" --strip-prefix ") + c.prefix : std::string()) +
                                   " --layers layer2 --input " + tmp("x.npy"));
        REQUIRE(deeper.rc == 2);
        REQUIRE(deeper.err.find("missing keys (25): layer2.0.conv1.weight") != std::string::npos);
    }
    // A half-right prefix: the suggestion is the whole one.
    const Run half = run_cli("features --model resnet18 --weights " + ckpt_path(checkpoints()[1]) +
                             " --strip-prefix backbone. --layers layer1 --input " + tmp("x.npy"));
    REQUIRE(half.rc == 2);
    REQUIRE(half.err.find("add --strip-prefix backbone.body. to load them") != std::string::npos);
    // bench loads the same way.
    const Run bench = run_cli("bench --model resnet18 --weights " + ckpt_path(checkpoints()[1]) +
                              " --strip-prefix backbone.body. --layers layer1 --size 32 --iters 1 --warmup 0 --threads 1");
    INFO(bench.err);
    REQUIRE(bench.rc == 0);
    std::remove(tmp("x.npy").c_str());
}
