// Test helpers: tensor comparison that reports the first mismatch with its coordinates, fixture
// paths, and seeded random tensors.
#pragma once
#include <catch2/catch.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "strata.h"

namespace strata_test {

// Every CPU level (core/cpu_level.h) this machine supports, best first: kernel tests run each.
inline std::vector<strata::CpuLevel> cpu_levels() {
    std::vector<strata::CpuLevel> levels;
    for (strata::CpuLevel l : {strata::CpuLevel::Avx512, strata::CpuLevel::Avx2, strata::CpuLevel::Baseline})
        if (strata::cpu_supports(l)) levels.push_back(l);
    return levels;
}

// The fixtures folder: STRATA_FIXTURES_DIR from the environment (a binary run on another
// machine, e.g. benchmarks/gpu_check.sh), else the source tree's, fixed at build time.
inline std::string fixture(const std::string& name) {
    const char* env = std::getenv("STRATA_FIXTURES_DIR");
    return std::string(env && *env ? env : STRATA_FIXTURES_DIR) + "/" + name;
}

// A uniform [lo, hi) tensor from the deterministic stream `key` (seed fixed).
inline strata::Tensor random_tensor(const strata::Shape& shape, const std::string& key,
                                    double lo = -1.0, double hi = 1.0) {
    strata::Tensor t = strata::Tensor::empty(shape);
    const strata::DetStream s(12345, key);
    float* p = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = s.uniform(static_cast<uint64_t>(i), lo, hi);
    return t;
}

struct Comparison {
    bool ok = true;
    double max_abs_diff = 0, max_abs_ref = 0;
    std::string message;
};

// max |actual - expected| <= rel_tol * max |expected| (and shapes equal). NaN in either side at
// the same place counts as equal; NaN on one side only is a mismatch.
inline Comparison compare(const strata::Tensor& actual_in, const strata::Tensor& expected_in, double rel_tol) {
    Comparison c;
    if (actual_in.shape() != expected_in.shape()) {
        c.ok = false;
        c.message = "shape " + strata::shape_str(actual_in.shape()) + " vs expected " + strata::shape_str(expected_in.shape());
        return c;
    }
    const strata::Tensor a = actual_in.to(strata::DType::Float32).contiguous();
    const strata::Tensor e = expected_in.to(strata::DType::Float32).contiguous();
    const float* pa = a.data<float>();
    const float* pe = e.data<float>();
    for (int64_t i = 0; i < e.numel(); ++i)
        if (std::isfinite(pe[i])) c.max_abs_ref = std::max(c.max_abs_ref, std::fabs(static_cast<double>(pe[i])));
    const double tol = rel_tol * c.max_abs_ref;
    int64_t first_bad = -1;
    for (int64_t i = 0; i < e.numel(); ++i) {
        const bool both_nan = std::isnan(pa[i]) && std::isnan(pe[i]);
        const double d = std::fabs(static_cast<double>(pa[i]) - pe[i]);
        if (both_nan || (pa[i] == pe[i])) continue;
        if (!(d <= tol) && first_bad < 0) first_bad = i;
        if (std::isfinite(d)) c.max_abs_diff = std::max(c.max_abs_diff, d);
        else c.max_abs_diff = INFINITY;
    }
    if (first_bad >= 0) {
        c.ok = false;
        // Coordinates of the first mismatch.
        std::string coords;
        int64_t rem = first_bad;
        for (int64_t d = e.dim() - 1; d >= 0; --d) {
            coords = std::to_string(rem % e.size(d)) + (coords.empty() ? "" : ", ") + coords;
            rem /= e.size(d);
        }
        c.message = "value mismatch at [" + coords + "]: expected " + std::to_string(pe[first_bad]) +
                    " got " + std::to_string(pa[first_bad]) + "; max|diff| " + std::to_string(c.max_abs_diff) +
                    " > tol " + std::to_string(tol) + " (rel " + std::to_string(rel_tol) + " * max|ref| " +
                    std::to_string(c.max_abs_ref) + ")";
    }
    return c;
}

#define STRATA_REQUIRE_CLOSE(actual, expected, rel_tol, context)              \
    do {                                                                      \
        const auto cmp_ = ::strata_test::compare((actual), (expected), (rel_tol)); \
        INFO(context << ": " << cmp_.message);                                \
        REQUIRE(cmp_.ok);                                                     \
    } while (0)

}  // namespace strata_test

// ---- Per-element bounds and bitwise equality (the per-op fast-vs-reference tests) ----------
namespace strata_test {

// "[n, c, h, w]" coordinates of element `flat` of a contiguous tensor of shape `shape`.
inline std::string index_str(const strata::Shape& shape, int64_t flat) {
    std::string coords;
    for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
        coords = std::to_string(flat % shape[d]) + (coords.empty() ? "" : ", ") + coords;
        flat /= shape[d];
    }
    return "[" + coords + "]";
}

// |actual - expected| <= bound, element by element. `bound` has the same shape and holds an
// a-priori error bound per element (e.g. (K + 3) * 2^-24 * sum|w * x| for a float32 dot product
// of length K). NaN at the same place on both sides counts as equal.
inline Comparison compare_bounded(const strata::Tensor& actual_in, const strata::Tensor& expected_in,
                                  const strata::Tensor& bound_in) {
    Comparison c;
    if (actual_in.shape() != expected_in.shape() || bound_in.shape() != expected_in.shape()) {
        c.ok = false;
        c.message = "shape " + strata::shape_str(actual_in.shape()) + " vs expected " +
                    strata::shape_str(expected_in.shape());
        return c;
    }
    const strata::Tensor a = actual_in.contiguous(), e = expected_in.contiguous(),
                         b = bound_in.contiguous();
    const float *pa = a.data<float>(), *pe = e.data<float>(), *pb = b.data<float>();
    int64_t first_bad = -1;
    double worst_ratio = 0;  // max |diff| / bound: how much of the bound is used
    for (int64_t i = 0; i < e.numel(); ++i) {
        if (std::isnan(pa[i]) && std::isnan(pe[i])) continue;
        const double d = std::fabs(static_cast<double>(pa[i]) - pe[i]);
        c.max_abs_ref = std::max(c.max_abs_ref, std::fabs(static_cast<double>(pe[i])));
        if (!(d <= pb[i])) {
            if (first_bad < 0) first_bad = i;
            c.max_abs_diff = std::isfinite(d) ? std::max(c.max_abs_diff, d) : INFINITY;
        } else {
            c.max_abs_diff = std::max(c.max_abs_diff, d);
            if (pb[i] > 0) worst_ratio = std::max(worst_ratio, d / pb[i]);
        }
    }
    if (first_bad >= 0) {
        c.ok = false;
        c.message = "value mismatch at " + index_str(e.shape(), first_bad) + ": expected " +
                    std::to_string(pe[first_bad]) + " got " + std::to_string(pa[first_bad]) +
                    ", |diff| " + std::to_string(std::fabs(double(pa[first_bad]) - pe[first_bad])) +
                    " > bound " + std::to_string(pb[first_bad]);
    } else {
        c.message = "ok, max |diff| / bound = " + std::to_string(worst_ratio);
    }
    return c;
}

// Bit-for-bit equality (NaN payloads and the sign of zero included): for ops that only select
// or move values (max pooling, relu, flatten), where any difference is a bug.
inline Comparison compare_bitwise(const strata::Tensor& actual_in, const strata::Tensor& expected_in) {
    Comparison c;
    if (actual_in.shape() != expected_in.shape() || actual_in.dtype() != expected_in.dtype()) {
        c.ok = false;
        c.message = "shape/dtype " + strata::shape_str(actual_in.shape()) + " " +
                    strata::dtype_name(actual_in.dtype()) + " vs expected " +
                    strata::shape_str(expected_in.shape()) + " " + strata::dtype_name(expected_in.dtype());
        return c;
    }
    const strata::Tensor a = actual_in.contiguous(), e = expected_in.contiguous();
    const size_t es = strata::dtype_size(e.dtype());
    const char* pa = static_cast<const char*>(a.raw_data());
    const char* pe = static_cast<const char*>(e.raw_data());
    for (int64_t i = 0; i < e.numel(); ++i) {
        if (std::memcmp(pa + i * es, pe + i * es, es) == 0) continue;
        c.ok = false;
        const auto idx = strata::contiguous_strides(e.shape());
        std::vector<int64_t> multi;
        int64_t rem = i;
        for (size_t d = 0; d < idx.size(); ++d) {
            multi.push_back(rem / idx[d]);
            rem %= idx[d];
        }
        c.message = "bitwise mismatch at " + index_str(e.shape(), i) + ": expected " +
                    std::to_string(e.item_at(multi)) + " got " + std::to_string(a.item_at(multi));
        return c;
    }
    return c;
}

// REQUIRE on a Comparison, printing `context` (the call's parameters) and the first mismatch.
#define STRATA_REQUIRE_CMP(comparison, context)                \
    do {                                                       \
        const auto cmp_ = (comparison);                        \
        INFO(context << ": " << cmp_.message);                 \
        REQUIRE(cmp_.ok);                                      \
    } while (0)

}  // namespace strata_test

#ifdef STRATA_CLI_PATH
namespace strata_test {

// The whole contents of a file ("" if it cannot be read).
inline std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// One run of the strata CLI: exit code (-1 if it did not exit normally), stdout, stderr. `tag`
// names its capture files; ctest runs test cases as parallel processes in one folder, so the
// file names carry the pid too. `env` ("NAME=value ...", shell-quoted) is set for the CLI only.
struct CliRun {
    int rc;
    std::string out, err;
};
inline CliRun run_cli(const std::string& args, const std::string& tag, const std::string& env = "") {
    const std::string base = tag + "_" + std::to_string(::getpid()) + "_";
    const std::string out = base + "stdout.txt", err = base + "stderr.txt";
    const std::string cmd =
        (env.empty() ? "" : env + " ") + std::string(STRATA_CLI_PATH) + " " + args + " >" + out + " 2>" + err;
    const int status = std::system(cmd.c_str());
    CliRun r{WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(out), slurp(err)};
    std::remove(out.c_str());
    std::remove(err.c_str());
    return r;
}

}  // namespace strata_test
#endif
