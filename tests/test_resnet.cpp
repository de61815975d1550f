// ResNet-18 and the getter against PyTorch itself: full-size weights from the deterministic
// generator (models/init.cpp == tools/detgen.py, checked bit for bit first), inputs and
// torchvision's outputs from tests/fixtures/resnet18_*.safetensors (tools/make_fixtures.py).
//
// Tolerances, per tensor, relative to max|torch|:
// - reference backend: 1e-4. Naive loops with double accumulation against float32 oneDNN; the
//   observed differences are ~1e-6, and any real error (a wrong padding, stride or BN term)
//   changes outputs by >1e-2.
// - cpu backend (the fast path): 1e-3, the budget for Winograd F(4x4,3x3), whose transforms
//   scale intermediate values by up to 8x before float32 rounding, plus BatchNorm folded into
//   the weights. Observed here: a few 1e-6 (see the CI log line "fast path max rel error").
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "test_util.h"

using namespace strata;

namespace {

constexpr double kReferenceTolerance = 1e-4;
constexpr double kFastTolerance = 1e-3;

double tolerance(const RunOptions& o) { return o.backend == Backend::Reference ? kReferenceTolerance : kFastTolerance; }

struct Fixture {
    StateDict tensors;
    Metadata meta;
    ReturnLayers return_layers;
};

Fixture load_fixture(const std::string& name) {
    Fixture f;
    f.tensors = load(strata_test::fixture("resnet18_" + name + ".safetensors"), &f.meta);
    REQUIRE(f.meta.at("seed") == "2024");
    for (const auto& pair : nlohmann::json::parse(f.meta.at("return_layers")))
        f.return_layers.emplace_back(pair[0].get<std::string>(), pair[1].get<std::string>());
    return f;
}

std::shared_ptr<models::ResNet> detgen_resnet18() {
    auto model = models::resnet18();
    fill_deterministic(*model, 2024);
    return model;
}

void check_fixture(const std::string& name, const RunOptions& options) {
    INFO("fixture resnet18_" << name << ", backend " << backend_name(options.backend) << ", threads "
                             << options.num_threads);
    const Fixture f = load_fixture(name);
    auto model = detgen_resnet18();
    IntermediateLayerGetter getter(*model, f.return_layers);
    const auto out = getter(f.tensors.at("input"), options);
    const auto expected_names = nlohmann::json::parse(f.meta.at("outputs")).get<std::vector<std::string>>();
    REQUIRE(out.keys() == expected_names);  // model order, as torchvision
    for (const auto& [new_name, tensor] : out) {
        const auto cmp = strata_test::compare(tensor, f.tensors.at("out." + new_name), tolerance(options));
        INFO(new_name << ": " << cmp.message);
        REQUIRE(cmp.ok);
        // The observed error, so a drift towards the budget shows in the log before it fails.
        if (options.backend == Backend::Cpu)
            std::printf("fast path max rel error %-8s %-10s %.2e\n", name.c_str(), new_name.c_str(),
                        cmp.max_abs_diff / std::max(cmp.max_abs_ref, 1e-30));
    }
}

}  // namespace

TEST_CASE("detgen: the C++ generator equals tools/detgen.py bit for bit") {
    Metadata meta;
    const StateDict check = load(strata_test::fixture("detgen_check.safetensors"), &meta);
    const auto seeds = nlohmann::json::parse(meta.at("seeds")).get<std::vector<uint64_t>>();
    const auto keys = nlohmann::json::parse(meta.at("keys")).get<std::vector<std::string>>();
    REQUIRE(seeds.size() == 2);
    REQUIRE(keys.size() == 6);
    for (uint64_t seed : seeds) {
        auto model = models::resnet18();
        fill_deterministic(*model, seed);
        const StateDict sd = model->state_dict();
        for (const auto& key : keys) {
            const Tensor& expected = check.at(std::to_string(seed) + "/" + key);
            const Tensor mine = flatten(sd.at(key), 0);
            INFO("seed " << seed << " key " << key);
            for (int64_t i = 0; i < expected.numel(); ++i)
                REQUIRE(mine.data<float>()[i] == expected.data<float>()[i]);
        }
    }
}

TEST_CASE("resnet18 vs torchvision: the seed example (1x3x224x224, layer1 + layer3)") {
    check_fixture("seed", RunOptions{Backend::Cpu, 2});
}

TEST_CASE("resnet18 vs torchvision: full model logits at 224, via the getter and via forward") {
    check_fixture("full", RunOptions{Backend::Cpu, 2});
    const Fixture f = load_fixture("full");
    auto model = detgen_resnet18();
    STRATA_REQUIRE_CLOSE(model->forward(f.tensors.at("input"), RunOptions{Backend::Cpu, 1}),
                         f.tensors.at("out.logits"), kFastTolerance, "forward logits");
}

TEST_CASE("resnet18 vs torchvision: every child at batch 2, 61x75") {
    for (int threads : {1, 2, 3}) check_fixture("odd_all", RunOptions{Backend::Cpu, threads});
}

TEST_CASE("resnet18 vs torchvision: batch 3 at 97x131, layers requested out of order") {
    check_fixture("odd_b3", RunOptions{Backend::Cpu, 2});
}

TEST_CASE("resnet18 vs torchvision: bn1 and relu together return true outputs") {
    check_fixture("bn1_relu", RunOptions{Backend::Cpu, 2});
    const Fixture f = load_fixture("bn1_relu");
    REQUIRE(std::stod(f.meta.at("torchvision_bn1_min")) == 0.0);  // torchvision's aliasing
    const Tensor& bn1 = f.tensors.at("out.bn1");
    REQUIRE(*std::min_element(bn1.data<float>(), bn1.data<float>() + bn1.numel()) < 0.0f);
}

TEST_CASE("resnet18 vs torchvision: batch 4 at 32x32, layer2") {
    check_fixture("small_layer2", RunOptions{Backend::Cpu, 2});
}

TEST_CASE("resnet18 vs torchvision: lean packing (direct kernel only, as `strata features` runs)") {
    for (const char* name : {"full", "odd_all", "small_layer2"}) {
        RunOptions options{Backend::Cpu, 2};
        options.packing = WeightPacking::Lean;
        check_fixture(name, options);
    }
}

TEST_CASE("resnet18 vs torchvision: batch 4 split by image (one image per thread) at 2 and 4 threads") {
    for (int threads : {2, 4}) check_fixture("small_layer2", RunOptions{Backend::Cpu, threads});
}

TEST_CASE("resnet18 vs torchvision: the reference kernels match too") {
    for (const char* name : {"small_layer2", "bn1_relu", "odd_all"}) check_fixture(name, RunOptions{Backend::Reference, 1});
}

TEST_CASE("resnet18: CPU kernels agree with the reference kernels on the seed example") {
    const Fixture f = load_fixture("seed");
    auto model = detgen_resnet18();
    IntermediateLayerGetter getter(*model, f.return_layers);
    const auto fast = getter(f.tensors.at("input"), RunOptions{Backend::Cpu, 2});
    const auto ref = getter(f.tensors.at("input"), RunOptions{Backend::Reference, 1});
    for (const auto& [name, t] : fast) STRATA_REQUIRE_CLOSE(t, ref.at(name), kFastTolerance, name);
}

TEST_CASE("resnet18: torchvision-style init has torchvision's statistics") {
    auto model = models::resnet18(1000, 7);
    const StateDict sd = model->state_dict();
    // kaiming_normal_(fan_out, relu) on conv1: std sqrt(2 / (64*7*7)) = 0.0202
    const Tensor& w = sd.at("conv1.weight");
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < w.numel(); ++i) { sum += w.data<float>()[i]; sq += double(w.data<float>()[i]) * w.data<float>()[i]; }
    const double mean = sum / w.numel(), stddev = std::sqrt(sq / w.numel() - mean * mean);
    REQUIRE(std::fabs(mean) < 0.002);
    REQUIRE(stddev == Approx(std::sqrt(2.0 / (64 * 49))).epsilon(0.03));
    REQUIRE(sd.at("bn1.weight").data<float>()[5] == 1.0f);
    REQUIRE(sd.at("bn1.bias").data<float>()[5] == 0.0f);
    const float* fc = sd.at("fc.weight").data<float>();
    const float bound = 1.0f / std::sqrt(512.0f);
    REQUIRE(*std::max_element(fc, fc + 512000) <= bound);
    REQUIRE(*std::min_element(fc, fc + 512000) >= -bound);
    // a different seed gives different weights; the same seed the same
    REQUIRE(models::resnet18(1000, 8)->state_dict().at("conv1.weight").data<float>()[0] != w.data<float>()[0]);
    REQUIRE(models::resnet18(1000, 7)->state_dict().at("conv1.weight").data<float>()[0] == w.data<float>()[0]);
}
