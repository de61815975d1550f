// CPU convolution as im2col + GEMM (Eigen, single-threaded per call; OpenMP splits the work).
// Per image n and group g:   Y_g[ocg, oh*ow] = W_g[ocg, cg*kh*kw] * col[cg*kh*kw, oh*ow]
// A 1x1, stride-1, unpadded convolution needs no im2col: the input plane is already `col`.
#include "../conv2d.h"

#include <Eigen/Core>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif
#include <algorithm>
#include <vector>

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

// Rows [k0, k1) and columns [j0, j1) of col[cg*kh*kw, oh*ow] for the channels of one group of
// one image: row k is written at col + k*ld, column j at offset j - j0 in it.
// x_group: [cg, h, w]
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
#pragma omp parallel num_threads(threads)
        {
            std::vector<float> col(pointwise ? 0 : static_cast<size_t>(K * npix));
#pragma omp for schedule(static)
            for (int64_t item = 0; item < items; ++item) {
                const int64_t n = item / p.groups, g = item % p.groups;
                const float* x_group = x + (n * p.c + g * cg) * p.h * p.w;
                const float* c = x_group;
                if (!pointwise) {
                    im2col_rows(p, x_group, col.data(), 0, K);
                    c = col.data();
                }
                gemm_rows(weight + g * ocg * K, c, bias ? bias + g * ocg : nullptr,
                          y + (n * p.oc + g * ocg) * npix, K, npix, 0, ocg);
            }
        }
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
            if (by_columns) {
                const int64_t chunk = ((npix + nt - 1) / nt + 15) / 16 * 16;
                const int64_t j0 = std::min(npix, chunk * t), j1 = std::min(npix, chunk * (t + 1));
                gemm_columns(w_group, c, b_group, y_group, ocg, K, npix, j0, j1);
            } else {
                const int64_t o0 = ocg * t / nt, o1 = ocg * (t + 1) / nt;
                gemm_rows(w_group, c, b_group, y_group, K, npix, o0, o1);
            }
        }
    }
}

}  // namespace cpu
}  // namespace strata

// =========================================================================================
// The fast path: packed weights + AVX-512 microkernel + fused epilogue.
//
// Per image and group the convolution is a GEMM  Y[oc, j] = sum_k A[oc, k] * B[k, j]  where
// k runs over (input channel, ky, kx). Instead of materialising B (im2col), each row k of B is
// a pointer offset into a source buffer:
//   stride 1: the source is the zero-padded input, [c][hp][wp] with hp = h + 2*pad_h, and the
//             output is computed on the padded grid: j = oy*wp + ox. Then the input for tap
//             (ci, ky, kx) is simply source[j + ci*hp*wp + ky*dil_h*wp + kx*dil_w] -- every row
//             of B is contiguous, shifted. Columns ox >= ow of each row are junk and dropped
//             when the result is compacted into y (which also applies residual and ReLU).
//   stride>1: the source is an im2col buffer [K][oh*ow] and row k starts at k*oh*ow.
// The microkernel keeps an 8 x (16*NV) tile of Y in 24 zmm registers for the whole K loop:
// per k it loads NV vectors of B and broadcasts 8 weights (FMA with memory operand).
// =========================================================================================

#include "batch_split.h"
#include "microkernel.h"
#include <cstdlib>
#include <cstring>
#include <new>

namespace strata {
namespace cpu {

namespace {

std::shared_ptr<float> aligned_floats(int64_t n) {
    const size_t bytes = (static_cast<size_t>(n) * sizeof(float) + 63) / 64 * 64;
    float* p = static_cast<float*>(std::aligned_alloc(64, bytes > 0 ? bytes : 64));
    if (!p) throw std::bad_alloc();
    return std::shared_ptr<float>(p, [](float* q) { std::free(q); });
}

}  // namespace

PackedConv2dWeight pack_conv2d_weight(int64_t oc, int64_t K, int64_t groups, const float* weight,
                                      const double* row_scale) {
    auto value = [&](int64_t o, int64_t k) {
        const float v = weight[o * K + k];
        return row_scale ? static_cast<float>(v * row_scale[o]) : v;
    };
    PackedConv2dWeight w;
    w.oc = oc;
    w.K = K;
    w.groups = groups;
#if defined(__AVX512F__)
    const int64_t ocg = oc / groups;
    w.blocks_per_group = (ocg + kPackRows - 1) / kPackRows;
    const int64_t block_size = K * kPackRows;
    w.data = aligned_floats(groups * w.blocks_per_group * block_size);
    float* out = w.data.get();
    for (int64_t g = 0; g < groups; ++g)
        for (int64_t b = 0; b < w.blocks_per_group; ++b) {
            float* block = out + (g * w.blocks_per_group + b) * block_size;
            for (int64_t k = 0; k < K; ++k)
                for (int64_t r = 0; r < kPackRows; ++r) {
                    const int64_t o = b * kPackRows + r;
                    block[k * kPackRows + r] = o < ocg ? value(g * ocg + o, k) : 0.0f;
                }
        }
#else
    w.blocks_per_group = 0;
    w.data = aligned_floats(oc * K);
    for (int64_t o = 0; o < oc; ++o)
        for (int64_t k = 0; k < K; ++k) w.data.get()[o * K + k] = value(o, k);
#endif
    return w;
}

#if defined(__AVX512F__)
namespace {
int thread_index() {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}
}  // namespace

using detail::kMR;
using detail::kMaxNV;
using detail::tile;

void conv2d_packed(const Conv2dParams& p, const float* x, const PackedConv2dWeight& w,
                   const Conv2dEpilogue& e, float* y, int threads) {
    // A batch with an image per thread: whole images per thread (each call runs on one thread).
    if (for_each_image(p, x, e, y, threads, [&](const Conv2dParams& p1, const float* x1, const Conv2dEpilogue& e1,
                                                 float* y1) { conv2d_packed(p1, x1, w, e1, y1, 1); }))
        return;
    const int64_t cg = p.c / p.groups, ocg = p.oc / p.groups;
    const int64_t K = cg * p.kh * p.kw;
    const bool unit_stride = p.stride_h == 1 && p.stride_w == 1;
    // Stride 1 computes on the padded grid (row pitch wp); a 1x1 unpadded kernel reads x as is.
    const bool in_place = unit_stride && p.kh == 1 && p.kw == 1 && p.pad_h == 0 && p.pad_w == 0;
    const int64_t hp = p.h + 2 * p.pad_h, wp = p.w + 2 * p.pad_w;
    const int64_t npix = p.oh * p.ow;
    const int64_t ncols = unit_stride ? p.oh * wp : npix;  // columns of the GEMM
    const bool compact = unit_stride && wp != p.ow;       // junk columns to drop afterwards
    // Reads of the last row's junk columns run up to (kw-1)*dil_w past the padded plane.
    const int64_t slack = (p.kw - 1) * p.dil_w + 16;
    const int64_t panel = 16 * kMaxNV;
    const int64_t chunk_panels = 4;  // panels per task: B chunk stays in L2 while A blocks stream
    const int64_t chunk_cols = chunk_panels * panel;
    // Strided: an im2col buffer larger than L2 (the 7x7 stem's is 7.4 MB at 224x224) would be
    // written once and read back from memory; instead each task builds the K x chunk_cols block
    // of it that its tiles read, in a per-thread buffer that stays in L2.
    const bool chunked = !unit_stride && K * npix * static_cast<int64_t>(sizeof(float)) > (int64_t{1} << 20);

    // Row offsets of B, per group-local input channel and tap.
    std::vector<int64_t> offs(static_cast<size_t>(K));
    for (int64_t ci = 0; ci < cg; ++ci)
        for (int64_t ky = 0; ky < p.kh; ++ky)
            for (int64_t kx = 0; kx < p.kw; ++kx) {
                const int64_t k = (ci * p.kh + ky) * p.kw + kx;
                offs[k] = unit_stride ? (in_place ? ci * p.h * p.w : ci * hp * wp + ky * p.dil_h * wp + kx * p.dil_w)
                                      : k * (chunked ? chunk_cols : npix);
            }

    const int64_t source_size = in_place || chunked ? 0 : unit_stride ? p.c * hp * wp + slack : p.groups * K * npix;
    std::shared_ptr<float> source = source_size ? aligned_floats(source_size) : nullptr;
    std::shared_ptr<float> scratch = compact ? aligned_floats(p.oc * ncols) : nullptr;
    std::shared_ptr<float> blocks = chunked ? aligned_floats(threads * K * chunk_cols) : nullptr;

    const int64_t panels = (ncols + panel - 1) / panel;
    const int64_t chunks = (panels + chunk_panels - 1) / chunk_panels;
    // Split output channels too when there are few column chunks (small images, batch 1).
    const int64_t oc_blocks = w.blocks_per_group;
    int64_t oc_split = 1;
    while (chunks * oc_split < 4 * threads && oc_split * 2 <= oc_blocks) oc_split *= 2;
    const int64_t tasks = chunks * oc_split;

#pragma omp parallel num_threads(threads)
    for (int64_t n = 0; n < p.n; ++n) {
        const float* xn = x + n * p.c * p.h * p.w;
        float* yn = y + n * p.oc * npix;
        const float* rn = e.residual ? e.residual + n * p.oc * npix : nullptr;
        // 1. The source of B: padded copy, im2col, or x itself.
        float* src = source.get();
        if (unit_stride && !in_place) {
#pragma omp for schedule(static)
            for (int64_t c = 0; c < p.c; ++c) {
                float* plane = src + c * hp * wp;
                const float* in = xn + c * p.h * p.w;
                std::memset(plane, 0, sizeof(float) * static_cast<size_t>(p.pad_h * wp));
                for (int64_t i = 0; i < p.h; ++i) {
                    float* row = plane + (i + p.pad_h) * wp;
                    std::memset(row, 0, sizeof(float) * static_cast<size_t>(p.pad_w));
                    std::memcpy(row + p.pad_w, in + i * p.w, sizeof(float) * static_cast<size_t>(p.w));
                    std::memset(row + p.pad_w + p.w, 0, sizeof(float) * static_cast<size_t>(p.pad_w));
                }
                std::memset(plane + (p.pad_h + p.h) * wp, 0, sizeof(float) * static_cast<size_t>(p.pad_h * wp));
            }
#pragma omp single
            std::memset(src + p.c * hp * wp, 0, sizeof(float) * static_cast<size_t>(slack));
        } else if (!unit_stride && !chunked) {
#pragma omp for schedule(static)
            for (int64_t gk = 0; gk < p.groups * K; ++gk) {
                const int64_t g = gk / K, k = gk % K;
                im2col_rows(p, xn + g * cg * p.h * p.w, src + g * K * npix, k, k + 1);
            }
        }
        // (implicit barrier after each omp for / single)

        // 2. GEMM tiles, with the epilogue fused where the output is written in place.
        for (int64_t g = 0; g < p.groups; ++g) {
            const float* B = in_place ? xn + g * cg * p.h * p.w
                                      : unit_stride ? src + g * cg * hp * wp : src + g * K * npix;
            float* C = compact ? scratch.get() + g * ocg * ncols : yn + g * ocg * npix;
            const float* bias = e.bias ? e.bias + g * ocg : nullptr;
            const float* R = (!compact && rn) ? rn + g * ocg * npix : nullptr;
            // In a compacted output the residual and ReLU come in step 3.
            const bool relu_here = e.relu && !(compact && rn);
#pragma omp for schedule(dynamic, 1)
            for (int64_t t = 0; t < tasks; ++t) {
                const int64_t chunk = t / oc_split, part = t % oc_split;
                const int64_t b0 = oc_blocks * part / oc_split, b1 = oc_blocks * (part + 1) / oc_split;
                const int64_t j_begin = chunk * chunk_panels * panel;
                const int64_t j_end = std::min(ncols, j_begin + chunk_panels * panel);
                const float* Bt = B;  // B's column j is Bt[j - j_base]
                int64_t j_base = 0;
                if (chunked) {
                    float* block = blocks.get() + thread_index() * K * chunk_cols;
                    im2col_block(p, xn + g * cg * p.h * p.w, 0, K, j_begin, j_end, block, chunk_cols);
                    Bt = block;
                    j_base = j_begin;
                }
                for (int64_t b = b0; b < b1; ++b) {
                    const float* A = w.data.get() + (g * oc_blocks + b) * K * kMR;
                    const int rows = static_cast<int>(std::min<int64_t>(kMR, ocg - b * kMR));
                    for (int64_t j = j_begin; j < j_end; j += panel) {
                        const int64_t width = std::min(panel, j_end - j);
                        tile(K, A, Bt + (j - j_base), offs.data(), C + b * kMR * ncols + j, ncols, rows, width,
                             bias ? bias + b * kMR : nullptr, R ? R + b * kMR * ncols + j : nullptr,
                             relu_here);
                    }
                }
            }
        }

        // 3. Drop the junk columns of the padded grid; add the residual and ReLU there.
        if (compact) {
            const bool late_relu = e.relu && rn;
#pragma omp for schedule(static)
            for (int64_t o = 0; o < p.oc; ++o)
                for (int64_t i = 0; i < p.oh; ++i) {
                    const float* s = scratch.get() + o * ncols + i * wp;
                    float* d = yn + o * npix + i * p.ow;
                    if (rn) {
                        const float* r = rn + o * npix + i * p.ow;
                        if (late_relu) {
#pragma omp simd
                            for (int64_t j = 0; j < p.ow; ++j) {
                                const float v = s[j] + r[j];
                                d[j] = v < 0.0f ? 0.0f : v;
                            }
                        } else {
#pragma omp simd
                            for (int64_t j = 0; j < p.ow; ++j) d[j] = s[j] + r[j];
                        }
                    } else {
                        std::memcpy(d, s, sizeof(float) * static_cast<size_t>(p.ow));
                    }
                }
        }
    }
}

}  // namespace cpu
}  // namespace strata

#else  // no AVX-512: the packed path is im2col + Eigen with a separate epilogue pass

void conv2d_packed(const Conv2dParams& p, const float* x, const PackedConv2dWeight& w,
                   const Conv2dEpilogue& e, float* y, int threads) {
    conv2d(p, x, w.data.get(), e.bias, y, threads);
    const int64_t n = p.n * p.oc * p.oh * p.ow;
    if (e.residual || e.relu) {
#pragma omp parallel for simd num_threads(threads) schedule(static)
        for (int64_t i = 0; i < n; ++i) {
            float v = y[i] + (e.residual ? e.residual[i] : 0.0f);
            y[i] = (e.relu && v < 0.0f) ? 0.0f : v;
        }
    }
}

}  // namespace cpu
}  // namespace strata

#endif
