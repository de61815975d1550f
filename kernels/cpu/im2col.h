// im2col: the input patches of a convolution laid out as the columns of a matrix, so that the
// convolution becomes one GEMM  Y[oc, j] = W[oc, k] * col[k, j]  with k = (ci, ky, kx) and
// j = (oy, ox). Used by the im2col + GEMM path (conv2d_im2col.cpp) and by the direct kernel's
// strided convolutions (conv2d_direct.cpp). Internal to kernels/cpu.
#pragma once
#include <cstdint>

#include "../conv2d.h"

namespace strata {
namespace cpu {

// Rows [k0, k1) and columns [j0, j1) of col[cg*kh*kw, oh*ow] for the channels of one group of
// one image: row k is written at col + k*ld, column j at offset j - j0 in it. x_group: [cg, h, w]
void im2col_block(const Conv2dParams& p, const float* x_group, int64_t k0, int64_t k1, int64_t j0, int64_t j1,
                  float* col, int64_t ld);
// Rows [k0, k1), all columns (ld = oh*ow).
void im2col_rows(const Conv2dParams& p, const float* x_group, float* col, int64_t k0, int64_t k1);

}  // namespace cpu
}  // namespace strata
