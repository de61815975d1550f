// im2col: the input patches of a convolution laid out as the columns of a matrix, so that the
// convolution becomes one GEMM  Y[oc, j] = W[oc, k] * col[k, j]  with k = (ci, ky, kx) and
// j = (oy, ox). The implementation, im2col_block, exists once per CPU level (isa_kernels.inc;
// the direct kernel's strided convolutions call it through isa.h's table). This is the entry
// for the im2col + Eigen path (conv2d_im2col.cpp), compiled for plain x86-64 like Eigen there.
// Internal to kernels/cpu.
#pragma once
#include <cstdint>

#include "../conv2d.h"
#include "isa.h"

namespace strata {
namespace cpu {

// Rows [k0, k1), all columns, of col[cg*kh*kw, oh*ow] for the channels of one group of one
// image (row k at col + k*oh*ow). x_group: [cg, h, w].
inline void im2col_rows(const Conv2dParams& p, const float* x_group, float* col, int64_t k0, int64_t k1) {
    isa_kernels(CpuLevel::Baseline).im2col_block(p, x_group, k0, k1, 0, p.oh * p.ow, col, p.oh * p.ow);
}

}  // namespace cpu
}  // namespace strata
