// The `strata` CLI as a user runs it: the exact output line, weights and .npy inputs, --out
// files equal to PyTorch's outputs, and exit code 2 with one "error:" line for bad input.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test_util.h"

using namespace strata;

namespace {

using Run = strata_test::CliRun;
using strata_test::slurp;

// ctest runs test cases as parallel processes in one folder: every file name carries the pid.
std::string tmp(const std::string& name) { return "cli_" + std::to_string(::getpid()) + "_" + name; }

Run run_cli(const std::string& args) { return strata_test::run_cli(args, "cli"); }

bool file_exists(const std::string& path) { return std::ifstream(path).good(); }

// Writes detgen (seed 2024) weights once, for the runs that compare with the fixtures.
const std::string& detgen_weights() {
    static const std::string path = [] {
        auto model = models::resnet18();
        fill_deterministic(*model, 2024);
        save(model->state_dict(), tmp("detgen.safetensors"));
        return std::string(tmp("detgen.safetensors"));
    }();
    return path;
}

void require_usage_error(const std::string& args, const std::string& expected_fragment) {
    const Run r = run_cli(args);
    INFO("strata " << args << "\nstderr: " << r.err);
    REQUIRE(r.rc == 2);
    REQUIRE(r.out.empty());
    REQUIRE(r.err.rfind("error: ", 0) == 0);
    REQUIRE(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    REQUIRE(r.err.find(expected_fragment) != std::string::npos);
}

}  // namespace

TEST_CASE("cli: features prints the seed example's line exactly") {
    const Run r = run_cli("features --model resnet18");
    REQUIRE(r.rc == 0);
    REQUIRE(r.out == "[('feat1', [1, 64, 56, 56]), ('feat2', [1, 256, 14, 14])]\n");
    REQUIRE(r.err.find("untrained") != std::string::npos);
}

TEST_CASE("cli: --weights, --input and --out reproduce torchvision's outputs") {
    const StateDict fx = load(strata_test::fixture("resnet18_odd_b3.safetensors"));
    save_npy(fx.at("input"), tmp("input.npy"));
    std::remove(tmp("out.safetensors").c_str());
    const Run r = run_cli("features --model resnet18 --weights " + detgen_weights() +
                          " --input " + tmp("input.npy") + " --layers layer4:out,layer2:aux --out " + tmp("out.safetensors") + " --threads 2");
    INFO(r.err);
    REQUIRE(r.rc == 0);
    REQUIRE(r.out == "[('aux', [3, 128, 13, 17]), ('out', [3, 512, 4, 5])]\n");
    REQUIRE(r.err.empty());
    const StateDict out = load(tmp("out.safetensors"));
    REQUIRE(out.keys() == std::vector<std::string>{"aux", "out"});
    for (const auto& [name, t] : out) {
        REQUIRE(t.dtype() == DType::Float32);
        STRATA_REQUIRE_CLOSE(t, fx.at("out." + name), 1e-4, name);
    }
}

TEST_CASE("cli: fc through the CLI gives the full model's logits") {
    const StateDict fx = load(strata_test::fixture("resnet18_full.safetensors"));
    save_npy(fx.at("input"), tmp("input224.npy"));
    const Run r = run_cli("features --weights " + detgen_weights() + " --input " + tmp("input224.npy") + " --layers fc:logits --out " + tmp("logits.safetensors"));
    REQUIRE(r.rc == 0);
    REQUIRE(r.out == "[('logits', [1, 1000])]\n");
    STRATA_REQUIRE_CLOSE(load(tmp("logits.safetensors")).at("logits"), fx.at("out.logits"), 1e-4, "logits");
}

TEST_CASE("cli: layers lists children with output shapes, --nodes every node, --all every module path") {
    Run r = run_cli("layers --model resnet18 --size 224");
    REQUIRE(r.rc == 0);
    REQUIRE(r.out.find("layer1  Sequential  [1, 64, 56, 56]  channels 64  stride 4\n") != std::string::npos);
    REQUIRE(r.out.find("fc  Linear  [1, 1000]  channels 1000  stride -\n") != std::string::npos);
    REQUIRE(std::count(r.out.begin(), r.out.end(), '\n') == 10);
    r = run_cli("layers --model resnet18 --size 97x131 --batch 8");
    REQUIRE(r.rc == 0);
    REQUIRE(r.out.find("layer4  Sequential  [8, 512, 4, 5]  channels 512  stride 32\n") != std::string::npos);
    r = run_cli("layers --model resnet18 --nodes --size 64x32");
    REQUIRE(r.rc == 0);
    REQUIRE(std::count(r.out.begin(), r.out.end(), '\n') == 70);  // torch.fx lists 70 nodes for resnet18
    REQUIRE(r.out.rfind("x  [1, 3, 64, 32]  channels 3  stride 1\n", 0) == 0);
    REQUIRE(r.out.find("\nlayer2.0.add  [1, 128, 8, 4]  channels 128  stride 8\n") != std::string::npos);
    REQUIRE(r.out.find("\nflatten  [1, 512]  channels 512  stride -\n") != std::string::npos);
    r = run_cli("layers --model resnet18 --all");
    REQUIRE(r.rc == 0);
    REQUIRE(r.out.find("layer2.0.downsample.0  Conv2d(64, 128, kernel_size=(1, 1), stride=(2, 2), bias=False)") != std::string::npos);
    REQUIRE(r.out.find("layer4.1.bn2  BatchNorm2d") != std::string::npos);
}

TEST_CASE("cli: bad input exits 2 with one error line and writes no output file") {
    std::remove(tmp("never.safetensors").c_str());
    require_usage_error("features --model resnet19", "unknown model 'resnet19'");
    require_usage_error("features --layers layer5:x", "'layer5'");
    require_usage_error("features --layers layer1:", "no new name");
    require_usage_error("features --layers :x", "no layer name");
    require_usage_error("features --layers layer1:a,layer2:a", "new name 'a'");
    require_usage_error("features --layers layer1:a,layer1:b", "requested twice");
    require_usage_error("features --input /nonexistent/x.npy --out " + tmp("never.safetensors"), "/nonexistent/x.npy");
    require_usage_error("features --weights /nonexistent/w.safetensors", "/nonexistent/w.safetensors");
    require_usage_error("features --weights .", "directory");
    require_usage_error("features --threads abc", "--threads");
    require_usage_error("features --threads 0", "--threads");
    require_usage_error("frobnicate", "frobnicate");
    require_usage_error("", "subcommand");
    // a wrong-shaped input: the error names the module path
    save_npy(Tensor::zeros({1, 4, 32, 32}), tmp("4ch.npy"));
    require_usage_error("features --input " + tmp("4ch.npy") + " --out " + tmp("never.safetensors"), "conv1: expected 3 input channels, got 4");
    // weights with a missing key and a wrong shape: one error naming both (the key belongs to a
    // child that runs: keys of children after the last requested one, such as fc, may be absent)
    {
        auto model = models::resnet18();
        StateDict sd;
        for (const auto& [k, t] : model->state_dict())
            if (k != "layer1.1.bn2.bias") sd.insert(k, k == "layer1.0.conv1.weight" ? Tensor::zeros({64, 64, 1, 1}) : t);
        save(sd, tmp("bad_weights.safetensors"));
    }
    require_usage_error("features --weights " + tmp("bad_weights.safetensors") + " --out " + tmp("never.safetensors"),
                        "layer1.1.bn2.bias");
    const Run r = run_cli("features --weights " + tmp("bad_weights.safetensors"));
    REQUIRE(r.err.find("layer1.0.conv1.weight (expected [64, 64, 3, 3], found [64, 64, 1, 1])") != std::string::npos);
    REQUIRE_FALSE(file_exists(tmp("never.safetensors")));
}
