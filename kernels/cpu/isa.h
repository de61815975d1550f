// The CPU kernels that exist once per instruction-set level, and the table that picks them.
//
// One binary holds every level's copy: kernels/cpu/isa_kernels.inc is compiled three times,
// by isa_baseline.cpp, isa_avx2.cpp and isa_avx512.cpp, each with its own target flags (set per
// file in CMakeLists.txt) and inside its own namespace (strata::cpu::baseline / avx2 / avx512),
// so no two copies share a symbol. Everything around them (threading, padding, packing,
// choosing Winograd) is compiled once for plain x86-64 and calls through this table; the calls
// are per tile or per image plane, so the indirection costs nothing measurable.
//
// The .inc must not instantiate templates or inline functions from outside its namespace (no
// std::vector, std::min, ...): the linker keeps one copy of such a function for the whole
// program, possibly the AVX-512 one, which would then run on a CPU without AVX-512.
// tests/isa_symbols.sh checks the object files for that.
#pragma once
#include <cstdint>

#include "../../core/cpu_level.h"
#include "../conv2d.h"

namespace strata {
namespace cpu {

// C tile = epilogue(A * B) for rows [0, rows) (<= kPackRows) and columns [0, width) (<= kTileCols):
//   C[r*ldc + j] = relu?( sum_k A[k*kPackRows + r] * B[offs[k] + j] + bias[r] + R[r*ldc + j] )
// A: one packed block of the weights ([K][kPackRows], pack_conv2d_weight's layout); row k of B
// starts at B + offs[k]; bias and R may be null.
constexpr int64_t kTileCols = 48;
using TileFn = void (*)(int64_t K, const float* A, const float* B, const int64_t* offs, float* C, int64_t ldc,
                        int rows, int64_t width, const float* bias, const float* R, bool relu);

// The shape of a Winograd F(m x m, 3 x 3) call (conv2d_winograd.cpp sets it up): T tiles over
// the batch, per_image = tiles_y * tiles_x per image, transforms done on groups of 16 tiles
// ("flat" groups run across tile rows, through flat_offs; see conv2d_winograd.cpp).
struct WinogradGeometry {
    int64_t h, w, pad_h, pad_w, oh, ow;
    int64_t tiles_y, tiles_x, per_image, T;
    bool flat;
    int64_t groups, groups_x;  // 16-tile groups per plane; per tile row (row groups)
    int64_t hp, wp;            // the zero-padded plane
    const int32_t* flat_offs;  // flat groups: lane l of group g reads its patch at flat_offs[16g + l]
};
// Input transform of one input plane (image n, channel c): in [h][w] -> V, whose position pos
// starts at v + pos*v_stride (v = V[0][c] + n*per_image, v_stride = C*T). plane: scratch of
// hp*wp + 16*m floats, all zero on the first call of a thread (the padding stays zero).
using WinogradInputFn = void (*)(const WinogradGeometry& g, const float* in, float* plane, float* v, int64_t v_stride);
// Output transform of one output plane (image n, channel o): M -> out [oh][ow], with the
// epilogue (bias, residual plane or null, ReLU). m: M[0][o] + n*per_image, stride m_stride.
using WinogradOutputFn = void (*)(const WinogradGeometry& g, const float* m, int64_t m_stride, float bias,
                                  const float* residual, bool relu, float* out);
// im2col (im2col.h): rows [k0, k1) and columns [j0, j1) of col[cg*kh*kw, oh*ow] for the
// channels of one group of one image: row k is written at col + k*ld, column j at offset j - j0
// in it. x_group: [cg, h, w].
using Im2colBlockFn = void (*)(const Conv2dParams& p, const float* x_group, int64_t k0, int64_t k1, int64_t j0,
                               int64_t j1, float* col, int64_t ld);

struct IsaKernels {
    CpuLevel level;
    TileFn tile;
    WinogradInputFn winograd_input[2];    // [0]: m = 2, [1]: m = 4
    WinogradOutputFn winograd_output[2];
    Im2colBlockFn im2col_block;
};

// The table of `level` after resolve_cpu_level (Auto: the process default; a level this CPU
// lacks throws Error). A non-x86 build has only the Baseline copy and uses it for every level.
const IsaKernels& isa_kernels(CpuLevel level);

}  // namespace cpu
}  // namespace strata
