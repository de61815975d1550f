// Reference convolution: the definition, written as directly as possible. Double accumulation
// makes it a tighter oracle than the float32 kernels it checks.
#include "../conv2d.h"

namespace strata {

namespace reference {

void conv2d(const Conv2dParams& p, const float* x, const float* weight, const float* bias, float* y) {
    const int64_t cg = p.c / p.groups;    // input channels per group
    const int64_t ocg = p.oc / p.groups;  // output channels per group
    for (int64_t n = 0; n < p.n; ++n)
        for (int64_t o = 0; o < p.oc; ++o) {
            const int64_t g = o / ocg;
            for (int64_t oy = 0; oy < p.oh; ++oy)
                for (int64_t ox = 0; ox < p.ow; ++ox) {
                    double acc = bias ? bias[o] : 0.0;
                    for (int64_t ci = 0; ci < cg; ++ci)
                        for (int64_t ky = 0; ky < p.kh; ++ky)
                            for (int64_t kx = 0; kx < p.kw; ++kx) {
                                const int64_t iy = oy * p.stride_h - p.pad_h + ky * p.dil_h;
                                const int64_t ix = ox * p.stride_w - p.pad_w + kx * p.dil_w;
                                if (iy < 0 || iy >= p.h || ix < 0 || ix >= p.w) continue;
                                const float xv = x[((n * p.c + g * cg + ci) * p.h + iy) * p.w + ix];
                                const float wv = weight[((o * cg + ci) * p.kh + ky) * p.kw + kx];
                                acc += static_cast<double>(xv) * wv;
                            }
                    y[((n * p.oc + o) * p.oh + oy) * p.ow + ox] = static_cast<float>(acc);
                }
        }
}

}  // namespace reference
}  // namespace strata
