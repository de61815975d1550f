// Test helpers: tensor comparison that reports the first mismatch with its coordinates, fixture
// paths, and seeded random tensors.
#pragma once
#include <catch2/catch.hpp>
#include <cmath>
#include <string>

#include "strata.h"

namespace strata_test {

inline std::string fixture(const std::string& name) { return std::string(STRATA_FIXTURES_DIR) + "/" + name; }

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
