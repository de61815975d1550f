// Helpers for `strata bench`: timing statistics, and the per-child profile (--profile) that
// times the model truncated after each direct child and counts each child's multiply-adds.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "strata.h"

namespace strata_cli {

struct TimingStats {
    double median_ms = 0, min_ms = 0, mean_ms = 0;
};
TimingStats summarize(const std::vector<double>& ms);

// Times the model truncated after each direct child (an IntermediateLayerGetter returning only
// that child; `warmup` untimed then `iters` timed calls each, the truncations taken in turn) and
// returns a JSON array, one object per child in model order: its output shape, the truncated
// model's median and min, the child's cost (difference of consecutive medians) and share of the
// full model's median, its GFLOP (2 x the multiply-adds of its Conv2d and Linear modules, from a
// shape pass) and GFLOP/s, and that as a share of `peak_gflops` (null when peak_gflops <= 0).
nlohmann::json profile_children_json(const strata::Module& model, const strata::Tensor& x,
                                  const strata::RunOptions& options, int warmup, int iters, double peak_gflops);

}  // namespace strata_cli
