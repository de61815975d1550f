// The CPU GEMM microkernel shared by the direct and Winograd convolutions (AVX-512 only).
//   C[r][j] = epilogue( sum_k A[k*8 + r] * B[offs[k] + j] ),  r < 8, j < 16*NV
// A is a packed block of 8 rows ([K][8]); row k of B starts at B + offs[k], so B can be a
// packed matrix (offs[k] = k*ld), an im2col buffer, or a shifted view of a padded image.
#pragma once
#if defined(__AVX512F__)
#include <immintrin.h>

#include <cstdint>

#include "../conv2d.h"

namespace strata {
namespace cpu {
namespace detail {

constexpr int kMR = kPackRows;  // output channels per tile
constexpr int kMaxNV = 3;       // 16-float vectors per tile row: tiles are up to 8 x 48

// Y tile [rows <= 8][16*NV] (the last vector masked by `tail`) =
//   epilogue( sum_k A[k][0..7] * B[offs[k] + 0 .. 16*NV) )
// A: [K][8] packed weights. C: row r at C + r*ldc. residual (if any): row r at R + r*ldc.
template <int NV>
inline void microkernel(int64_t K, const float* __restrict A, const float* __restrict B,
                 const int64_t* __restrict offs, float* C, int64_t ldc, int rows, __mmask16 tail,
                 const float* bias, const float* R, bool relu) {
    __m512 acc[kMR][NV];
#pragma GCC unroll 8
    for (int r = 0; r < kMR; ++r)
#pragma GCC unroll 3
        for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();

    int64_t k0 = 0;
    if constexpr (NV == 1) {
        // One vector per row leaves 8 accumulators: too few chains to hide the FMA latency
        // (4 cycles, 2 pipes) when the loads stall. Even and odd k go to separate accumulators,
        // summed at the end; 16 chains in flight.
        __m512 odd[kMR];
#pragma GCC unroll 8
        for (int r = 0; r < kMR; ++r) odd[r] = _mm512_setzero_ps();
        for (; k0 + 1 < K; k0 += 2) {
            const __m512 b0 = _mm512_maskz_loadu_ps(tail, B + offs[k0]);
            const __m512 b1 = _mm512_maskz_loadu_ps(tail, B + offs[k0 + 1]);
            const float* a0 = A + k0 * kMR;
            const float* a1 = a0 + kMR;
            // A streams from memory here (Winograd's weights at batch 1, read once per call):
            // one 64-byte line per two k, fetched into L1 2 KB ahead and into L2 8 KB ahead
            // (the second hides DRAM latency: 15% on layer4's F(2,3) convolutions).
            _mm_prefetch(reinterpret_cast<const char*>(a0 + 512), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(a0 + 2048), _MM_HINT_T1);
#pragma GCC unroll 8
            for (int r = 0; r < kMR; ++r) {
                acc[r][0] = _mm512_fmadd_ps(_mm512_set1_ps(a0[r]), b0, acc[r][0]);
                odd[r] = _mm512_fmadd_ps(_mm512_set1_ps(a1[r]), b1, odd[r]);
            }
        }
#pragma GCC unroll 8
        for (int r = 0; r < kMR; ++r) acc[r][0] = _mm512_add_ps(acc[r][0], odd[r]);
    }
    for (int64_t k = k0; k < K; ++k) {
        const float* b = B + offs[k];
        __m512 bv[NV];
#pragma GCC unroll 3
        for (int v = 0; v < NV - 1; ++v) bv[v] = _mm512_loadu_ps(b + 16 * v);
        bv[NV - 1] = _mm512_maskz_loadu_ps(tail, b + 16 * (NV - 1));
        const float* a = A + k * kMR;
        if ((k & 1) == 0) _mm_prefetch(reinterpret_cast<const char*>(a + 512), _MM_HINT_T0);  // as above
#pragma GCC unroll 8
        for (int r = 0; r < kMR; ++r) {
            const __m512 av = _mm512_set1_ps(a[r]);
#pragma GCC unroll 3
            for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
        }
    }

    // Fully unrolled with a compile-time row index so `acc` stays in registers; rows past
    // `rows` (the zero-padded tail of the last block) are not stored.
    const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int r = 0; r < kMR; ++r) {
        if (r >= rows) break;
        const __m512 bias_v = _mm512_set1_ps(bias ? bias[r] : 0.0f);
#pragma GCC unroll 3
        for (int v = 0; v < NV; ++v) {
            const __mmask16 m = v == NV - 1 ? tail : static_cast<__mmask16>(0xffff);
            __m512 out = _mm512_add_ps(acc[r][v], bias_v);
            if (R) out = _mm512_add_ps(out, _mm512_maskz_loadu_ps(m, R + r * ldc + 16 * v));
            if (relu) out = _mm512_max_ps(zero, out);  // max(0, NaN) is NaN: NaN kept, as torch
            _mm512_mask_storeu_ps(C + r * ldc + 16 * v, m, out);
        }
    }
}

// One tile: dispatch on the number of vectors the columns [j0, j1) need.
inline void tile(int64_t K, const float* A, const float* B, const int64_t* offs, float* C,
                 int64_t ldc, int rows, int64_t width, const float* bias, const float* R, bool relu) {
    const int nv = static_cast<int>((width + 15) / 16);
    const int rem = static_cast<int>(width - 16 * (nv - 1));
    const __mmask16 tail = static_cast<__mmask16>(rem == 16 ? 0xffff : (1u << rem) - 1);
    switch (nv) {
        case 1: microkernel<1>(K, A, B, offs, C, ldc, rows, tail, bias, R, relu); break;
        case 2: microkernel<2>(K, A, B, offs, C, ldc, rows, tail, bias, R, relu); break;
        default: microkernel<3>(K, A, B, offs, C, ldc, rows, tail, bias, R, relu); break;
    }
}


}  // namespace detail
}  // namespace cpu
}  // namespace strata
#endif
