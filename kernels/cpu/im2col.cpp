// im2col (im2col.h): zeros where a tap falls in the padding, strided copies in between.
#include "im2col.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <algorithm>

namespace strata {
namespace cpu {

void im2col_block(const Conv2dParams& p, const float* x_group, int64_t k0, int64_t k1, int64_t j0, int64_t j1,
                  float* col, int64_t ld) {
    for (int64_t k = k0; k < k1; ++k) {
        const int64_t kx = k % p.kw;
        const int64_t ky = (k / p.kw) % p.kh;
        const int64_t ci = k / (p.kw * p.kh);
        const float* plane = x_group + ci * p.h * p.w;
        float* row = col + k * ld - j0;
        for (int64_t j = j0; j < j1;) {  // one output row's run of columns at a time
            const int64_t oy = j / p.ow, ox0 = j % p.ow, count = std::min(p.ow - ox0, j1 - j);
            const int64_t iy = oy * p.stride_h - p.pad_h + ky * p.dil_h;
            float* out = row + j;
            if (iy < 0 || iy >= p.h) {
                std::fill(out, out + count, 0.0f);
            } else {
                // ix = x0 + t*stride_w: zeros where ix falls outside the row, a plain strided
                // copy (which the compiler vectorises) in between.
                const float* in = plane + iy * p.w;
                const int64_t sw = p.stride_w, x0 = ox0 * sw - p.pad_w + kx * p.dil_w;
                const int64_t lo = std::min(count, x0 >= 0 ? 0 : (-x0 + sw - 1) / sw);
                const int64_t hi = std::max(lo, std::min(count, x0 >= p.w ? 0 : (p.w - x0 + sw - 1) / sw));
                std::fill(out, out + lo, 0.0f);
                const float* src = in + x0;
                int64_t t = lo;
#if defined(__AVX512F__)
                if (sw == 2) {  // the stem and downsampling convolutions: the even lanes of 32
                    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
                    for (; t + 16 <= hi; t += 16) {
                        const __m512 a = _mm512_loadu_ps(src + 2 * t);
                        // lane 15 of the second load (src[2t + 31]) is not used and may be past
                        // the plane's end: masked off.
                        const __m512 b = _mm512_maskz_loadu_ps(0x7fff, src + 2 * t + 16);
                        _mm512_storeu_ps(out + t, _mm512_permutex2var_ps(a, even, b));
                    }
                }
#endif
                for (; t < hi; ++t) out[t] = src[t * sw];
                std::fill(out + hi, out + count, 0.0f);
            }
            j += count;
        }
    }
}

void im2col_rows(const Conv2dParams& p, const float* x_group, float* col, int64_t k0, int64_t k1) {
    im2col_block(p, x_group, k0, k1, 0, p.oh * p.ow, col, p.oh * p.ow);
}

}  // namespace cpu
}  // namespace strata
