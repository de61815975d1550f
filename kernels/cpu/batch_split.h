// Batch-level parallelism for the CPU convolutions.
//
// At batch 1 a convolution splits one image's work across the threads (column chunks, output
// channel blocks), which costs a barrier between its steps and leaves each core with a share
// of a working set sized for the whole image. Once a batch holds at least one image per thread
// it is cheaper to give each thread whole images, run single-threaded: no barriers inside the
// layer, and each core's working set is one image's. This helper does that split.
#pragma once
#include "parallel_errors.h"
#include <cstdint>

#include "../conv2d.h"

namespace strata {
namespace cpu {

// True when a batch of n images is better run one image per thread: at least one per thread,
// and either an even share for every thread or enough images that the last round's imbalance
// is small.
inline bool split_by_image(int64_t n, int threads) {
    return threads > 1 && n >= threads && (n % threads == 0 || n >= 4 * threads);
}

// Calls run_one(p1, x_n, residual_n, y_n) for every image of the batch, images spread over the
// threads, each call single-threaded (p1 is p with n = 1; residual_n is nullptr without one).
// Kernels call this first and fall through to their own threading when it returns false.
template <class RunOne>
bool for_each_image(const Conv2dParams& p, const float* x, const Conv2dEpilogue& e, float* y, int threads,
                    RunOne&& run_one) {
    if (!split_by_image(p.n, threads)) return false;
    Conv2dParams p1 = p;
    p1.n = 1;
    const int64_t in = p.c * p.h * p.w, out = p.oc * p.oh * p.ow;
    ParallelErrors errors;  // each image allocates its own scratch
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int64_t n = 0; n < p.n; ++n) {
        errors.run([&] {
            Conv2dEpilogue en = e;
            if (e.residual) en.residual = e.residual + n * out;
            run_one(p1, x + n * in, en, y + n * out);
        });
    }
    errors.rethrow();
    return true;
}

}  // namespace cpu
}  // namespace strata
