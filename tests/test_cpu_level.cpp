// Runtime CPU dispatch (core/cpu_level.h, kernels/cpu/isa.h): naming and forcing a level, the
// errors for a level this CPU lacks, STRATA_CPU, and a whole model at every supported level
// against the reference backend. The kernels themselves are compared per level on many shapes
// in test_conv2d_packed.cpp; CI also runs the whole suite under STRATA_CPU=baseline and =avx2
// (and =avx512 where the CPU has it).
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "test_util.h"

using namespace strata;

TEST_CASE("cpu level: names round-trip, unknown names are refused with the list") {
    for (CpuLevel l : {CpuLevel::Auto, CpuLevel::Baseline, CpuLevel::Avx2, CpuLevel::Avx512})
        REQUIRE(parse_cpu_level(cpu_level_name(l)) == l);
    try {
        parse_cpu_level("sse9");
        FAIL("parse_cpu_level accepted sse9");
    } catch (const Error& e) {
        REQUIRE_THAT(e.what(), Catch::Contains("'sse9'") && Catch::Contains("baseline") && Catch::Contains("avx512"));
    }
}

TEST_CASE("cpu level: detection is consistent; Auto resolves to the default; STRATA_CPU is honoured") {
    const CpuLevel detected = detected_cpu_level();
    REQUIRE(detected != CpuLevel::Auto);
    REQUIRE(cpu_supports(detected));
    REQUIRE(cpu_supports(CpuLevel::Baseline));
    // Levels are ordered: supporting one means supporting every lower one.
    if (cpu_supports(CpuLevel::Avx512)) REQUIRE(cpu_supports(CpuLevel::Avx2));
    REQUIRE(resolve_cpu_level(CpuLevel::Auto) == default_cpu_level());
    const char* env = std::getenv("STRATA_CPU");
    if (env && *env && std::string(env) != "auto") {
        INFO("STRATA_CPU=" << env);
        REQUIRE(default_cpu_level() == parse_cpu_level(env));
    } else {
        REQUIRE(default_cpu_level() == detected);
    }
    REQUIRE_THAT(cpu_level_summary(), Catch::StartsWith(cpu_level_name(default_cpu_level())));
}

TEST_CASE("cpu level: a level this CPU lacks is an Error naming the missing feature, also from a forward call") {
    std::vector<CpuLevel> missing;
    for (CpuLevel l : {CpuLevel::Avx2, CpuLevel::Avx512})
        if (!cpu_supports(l)) missing.push_back(l);
    if (missing.empty()) {
        WARN("this CPU has every level (AVX-512): the refusal cannot be exercised here");
        return;
    }
    auto model = models::resnet18();
    fill_deterministic(*model, 3);
    const Tensor x = Tensor::full({1, 3, 32, 32}, 0.5f);
    for (CpuLevel l : missing) {
        INFO(cpu_level_name(l));
        try {
            resolve_cpu_level(l);
            FAIL("resolve_cpu_level accepted a level the CPU lacks");
        } catch (const Error& e) {
            REQUIRE_THAT(e.what(), Catch::Contains(cpu_level_name(l)) && Catch::Contains("lacks") &&
                                       Catch::Contains(l == CpuLevel::Avx512 ? "AVX-512" : "AVX"));
        }
        RunOptions o(Backend::Cpu, 1);
        o.cpu = l;
        REQUIRE_THROWS_AS(model->forward(x, o), Error);
    }
}

// A whole ResNet-18 at every level against the reference backend: lean packing (the direct
// kernel only: float32 sums in a different order, well inside 1e-4 of max|ref|) and fast
// packing (Winograd where it is faster; its transforms round more, 1e-3 as in test_resnet).
TEST_CASE("cpu level: ResNet-18 at every supported level matches the reference backend") {
    auto model = models::resnet18();
    fill_deterministic(*model, 11);
    const Tensor x = strata_test::random_tensor({2, 3, 64, 80}, "cpu_level.x");
    const Tensor ref = model->forward(x, RunOptions(Backend::Reference, 2));
    for (CpuLevel l : strata_test::cpu_levels())
        for (WeightPacking packing : {WeightPacking::Lean, WeightPacking::Fast})
            for (int threads : {1, 2}) {
                RunOptions o(Backend::Cpu, threads);
                o.cpu = l;
                o.packing = packing;
                INFO("cpu=" << cpu_level_name(l) << " packing=" << (packing == WeightPacking::Lean ? "lean" : "fast")
                            << " threads=" << threads);
                STRATA_REQUIRE_CLOSE(model->forward(x, o), ref, packing == WeightPacking::Lean ? 1e-4 : 1e-3, "resnet18");
            }
}

#ifdef STRATA_CLI_PATH
TEST_CASE("cpu level: the CLI shows the level, takes --cpu, and refuses a bad STRATA_CPU in one line") {
    auto r = strata_test::run_cli("--version", "cpu_version");
    REQUIRE(r.rc == 0);
    REQUIRE_THAT(r.out, Catch::Contains("cpu: " + std::string(cpu_level_name(default_cpu_level()))));
    r = strata_test::run_cli("bench --iters 1 --warmup 0 --size 32 --threads 1 --cpu baseline", "cpu_bench");
    REQUIRE(r.rc == 0);
    REQUIRE(nlohmann::json::parse(r.out).at("cpu_level") == "baseline");
    r = strata_test::run_cli("bench --iters 1 --size 32 --cpu avx3", "cpu_bad_flag");
    REQUIRE(r.rc != 0);
    REQUIRE(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    // The environment variable: an unknown value fails the run with one line naming it.
    const std::string bad = std::string("STRATA_CPU=pentium ") + STRATA_CLI_PATH +
                            " bench --iters 1 --size 32 --threads 1 >/dev/null 2>cpu_env_err.txt";
    const int status = std::system(bad.c_str());
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) != 0);
    const std::string err = strata_test::slurp("cpu_env_err.txt");
    std::remove("cpu_env_err.txt");
    REQUIRE_THAT(err, Catch::Contains("STRATA_CPU") && Catch::Contains("pentium"));
    REQUIRE(std::count(err.begin(), err.end(), '\n') == 1);
    if (!cpu_supports(CpuLevel::Avx512)) {
        r = strata_test::run_cli("bench --iters 1 --size 32 --cpu avx512", "cpu_unsupported");
        REQUIRE(r.rc != 0);
        REQUIRE_THAT(r.err, Catch::Contains("AVX-512") && Catch::Contains("lacks"));
        REQUIRE(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    }
}
#endif
