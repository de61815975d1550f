// `strata bench` as benchmarks/run.sh uses it: the JSON fields it reads (first_ms, load_ms) and
// the per-child profile (--profile), whose multiply-adds must add up to ResNet-18's published
// count and whose child times must add up to the full model's.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test_util.h"

using namespace strata;

namespace {

// ctest runs test cases as parallel processes in one folder: every file name carries the pid.
std::string bench_tmp(const std::string& name) { return "bench_cli_" + std::to_string(::getpid()) + "_" + name; }

// Runs `strata bench ARGS`; returns its exit code and stdout.
std::pair<int, std::string> run_bench(const std::string& args) {
    const std::string out = bench_tmp("stdout.txt");
    const std::string cmd = std::string(STRATA_CLI_PATH) + " bench " + args + " >" + out + " 2>/dev/null";
    const int status = std::system(cmd.c_str());
    std::ifstream f(out);
    std::stringstream ss;
    ss << f.rdbuf();
    std::remove(out.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, ss.str()};
}

}  // namespace

TEST_CASE("cli: bench --profile splits ResNet-18 into its children") {
    const auto [rc, out] = run_bench("--model resnet18 --batch 2 --size 224 --threads 1 --warmup 1 --iters 2 "
                                     "--profile --peak-gflops 100");
    INFO(out);
    REQUIRE(rc == 0);
    const auto j = nlohmann::json::parse(out);
    REQUIRE(j["first_ms"].get<double>() > 0);
    REQUIRE(j["load_ms"].is_null());
    const auto& rows = j["profile"];
    const std::vector<std::string> children = {"conv1",  "bn1",    "relu",   "maxpool", "layer1",
                                               "layer2", "layer3", "layer4", "avgpool", "fc"};
    REQUIRE(rows.size() == children.size());
    double gflop = 0, child_ms = 0;
    for (size_t i = 0; i < rows.size(); ++i) {
        REQUIRE(rows[i]["child"] == children[i]);
        gflop += rows[i]["gflop"].get<double>();
        child_ms += rows[i]["ms"].get<double>();
        if (!rows[i]["peak_share"].is_null())  // against --peak-gflops 100
            REQUIRE(rows[i]["peak_share"].get<double>() ==
                    Approx(rows[i]["gflops"].get<double>() / 100).margin(1e-3));
    }
    REQUIRE(rows[6]["out_shape"] == nlohmann::json({2, 256, 14, 14}));
    REQUIRE(rows[9]["out_shape"] == nlohmann::json({2, 1000}));
    // ResNet-18 at 224x224: 1,813,561,344 multiply-adds in convolutions + 512,000 in fc per image
    // (the figure fvcore and ptflops report); conv1: 64 x 112 x 112 x 3 x 7 x 7 = 118,013,952.
    // Each row prints 4 decimals: the sum may be off by 10 x 0.5e-4 GFLOP.
    REQUIRE(gflop == Approx(2 * 2 * (1813561344.0 + 512000.0) * 1e-9).margin(1e-3));
    REQUIRE(rows[0]["gflop"].get<double>() == Approx(2 * 2 * 118013952.0 * 1e-9).margin(1e-4));
    // Child times are differences of consecutive medians: they add up to the last one.
    REQUIRE(child_ms == Approx(rows[9]["truncated_median_ms"].get<double>()).margin(0.02));
}

TEST_CASE("cli: bench times the weight load and the first call") {
    auto model = models::resnet18();
    const std::string weights = bench_tmp("weights.safetensors");
    save(model->state_dict(), weights);
    const auto [rc, out] = run_bench("--weights " + weights + " --size 64 --threads 1 --warmup 0 --iters 1");
    std::remove(weights.c_str());
    INFO(out);
    REQUIRE(rc == 0);
    const auto j = nlohmann::json::parse(out);
    REQUIRE(j["load_ms"].get<double>() >= 0);
    REQUIRE(j["first_ms"].get<double>() > 0);
    REQUIRE(j["warmup"] == 1);  // the first call is always made, and counts as warm-up
    REQUIRE(j.count("profile") == 0);
}

// The report is written by a JSON library: a new name with a quote or a backslash stays valid
// JSON, and every timed call is there (samples_ms) for a harness that wants one median over rounds.
TEST_CASE("cli: bench's JSON escapes names and lists every timed call") {
    const auto [rc, out] = run_bench("--layers 'layer1:fe\"at\\1' --size 32 --threads 1 --warmup 0 --iters 3");
    INFO(out);
    REQUIRE(rc == 0);
    const auto j = nlohmann::json::parse(out);
    REQUIRE(j["layers"] == "layer1:fe\"at\\1");
    REQUIRE(j["samples_ms"].size() == 3);
    for (const auto& v : j["samples_ms"]) REQUIRE(v.get<double>() > 0);
}
