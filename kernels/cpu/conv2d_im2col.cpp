// cpu::conv2d: convolution as im2col + GEMM (Eigen, single-threaded per call; OpenMP splits the
// work). Per image n and group g:   Y_g[ocg, oh*ow] = W_g[ocg, cg*kh*kw] * col[cg*kh*kw, oh*ow]
// A 1x1, stride-1, unpadded convolution needs no im2col: the input plane is already `col`.
// When it runs: for weights that are not packed (a one-off call), and as the packed path's
// fallback on CPUs without AVX-512 (conv2d_direct.cpp). The readable twin of both fast paths is
// reference::conv2d (kernels/reference/conv2d.cpp).
#include "../conv2d.h"

#include <Eigen/Core>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <algorithm>
#include <vector>

#include "im2col.h"
#include "parallel_errors.h"

namespace strata {
namespace cpu {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstRowMap = Eigen::Map<const RowMatrix>;
using RowMap = Eigen::Map<RowMatrix>;

namespace {

bool is_pointwise(const Conv2dParams& p) {
    return p.kh == 1 && p.kw == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 &&
           p.pad_w == 0;
}

// y_group[ocg, npix] = w_group[ocg, K] * col[K, npix] (+ bias), columns [j0, j1) only.
void gemm_columns(const float* w_group, const float* col, const float* bias, float* y_group,
                  int64_t ocg, int64_t K, int64_t npix, int64_t j0, int64_t j1) {
    if (j1 <= j0) return;
    ConstRowMap W(w_group, ocg, K);
    Eigen::Map<const RowMatrix, 0, Eigen::OuterStride<>> C(col + j0, K, j1 - j0,
                                                           Eigen::OuterStride<>(npix));
    Eigen::Map<RowMatrix, 0, Eigen::OuterStride<>> Y(y_group + j0, ocg, j1 - j0,
                                                     Eigen::OuterStride<>(npix));
    Y.noalias() = W * C;
    if (bias)
        for (int64_t o = 0; o < ocg; ++o) Y.row(o).array() += bias[o];
}

// Rows [o0, o1) of the same product.
void gemm_rows(const float* w_group, const float* col, const float* bias, float* y_group,
               int64_t K, int64_t npix, int64_t o0, int64_t o1) {
    if (o1 <= o0) return;
    ConstRowMap W(w_group + o0 * K, o1 - o0, K);
    ConstRowMap C(col, K, npix);
    RowMap Y(y_group + o0 * npix, o1 - o0, npix);
    Y.noalias() = W * C;
    if (bias)
        for (int64_t o = o0; o < o1; ++o) Y.row(o - o0).array() += bias[o];
}

}  // namespace

void conv2d(const Conv2dParams& p, const float* x, const float* weight, const float* bias, float* y,
            int threads) {
    const int64_t cg = p.c / p.groups;
    const int64_t ocg = p.oc / p.groups;
    const int64_t K = cg * p.kh * p.kw;
    const int64_t npix = p.oh * p.ow;
    const bool pointwise = is_pointwise(p);
    const int64_t items = p.n * p.groups;  // independent (image, group) products

    if (items >= threads) {
        // Enough independent products: one per thread at a time, each with its own buffer.
        ParallelErrors errors;
#pragma omp parallel num_threads(threads)
        {
            std::vector<float> col;
            errors.run([&] { col.resize(pointwise ? 0 : static_cast<size_t>(K * npix)); });
#pragma omp for schedule(static)
            for (int64_t item = 0; item < items; ++item) {
                errors.run([&] {
                    const int64_t n = item / p.groups, g = item % p.groups;
                    const float* x_group = x + (n * p.c + g * cg) * p.h * p.w;
                    const float* c = x_group;
                    if (!pointwise) {
                        im2col_rows(p, x_group, col.data(), 0, K);
                        c = col.data();
                    }
                    gemm_rows(weight + g * ocg * K, c, bias ? bias + g * ocg : nullptr,
                              y + (n * p.oc + g * ocg) * npix, K, npix, 0, ocg);
                });
            }
        }
        errors.rethrow();
        return;
    }

    // Few products (batch 1): split each one across the threads.
    std::vector<float> col(pointwise ? 0 : static_cast<size_t>(K * npix));
    for (int64_t item = 0; item < items; ++item) {
        const int64_t n = item / p.groups, g = item % p.groups;
        const float* x_group = x + (n * p.c + g * cg) * p.h * p.w;
        const float* w_group = weight + g * ocg * K;
        const float* b_group = bias ? bias + g * ocg : nullptr;
        float* y_group = y + (n * p.oc + g * ocg) * npix;
        const float* c = pointwise ? x_group : col.data();
        // Split the wider side of the output; keep column blocks a multiple of 16 floats.
        const bool by_columns = npix >= ocg;
        ParallelErrors errors;
#pragma omp parallel num_threads(threads)
        {
            int t = 0, nt = 1;
#ifdef _OPENMP
            t = omp_get_thread_num();
            nt = omp_get_num_threads();
#endif
            if (!pointwise) {
                const int64_t k0 = K * t / nt, k1 = K * (t + 1) / nt;
                im2col_rows(p, x_group, col.data(), k0, k1);
#pragma omp barrier
            }
            errors.run([&] {  // Eigen's GEMM may allocate its workspace
                if (by_columns) {
                    const int64_t chunk = ((npix + nt - 1) / nt + 15) / 16 * 16;
                    const int64_t j0 = std::min(npix, chunk * t), j1 = std::min(npix, chunk * (t + 1));
                    gemm_columns(w_group, c, b_group, y_group, ocg, K, npix, j0, j1);
                } else {
                    const int64_t o0 = ocg * t / nt, o1 = ocg * (t + 1) / nt;
                    gemm_rows(w_group, c, b_group, y_group, K, npix, o0, o1);
                }
            });
        }
        errors.rethrow();
    }
}

}  // namespace cpu
}  // namespace strata
