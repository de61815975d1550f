// cpu::conv2d_packed, the fast path: packed weights + a register-blocked microkernel + fused epilogue.
// When it runs: every convolution of a model on the CPU backend that Winograd does not take
// (conv2d_winograd.cpp), with weights packed once by pack_conv2d_weight. Its readable twin is
// reference::conv2d; tests/test_conv2d_packed.cpp compares them over many shapes.
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
// The microkernel (one per CPU level, kernels/cpu/isa_kernels.inc) keeps a tile of Y in
// registers for the whole K loop: with AVX-512 8 x 48 in 24 zmm registers, with AVX2 4 x 24 in
// 12 ymm registers; per k it loads a row of B and broadcasts the weights. This file, compiled
// for plain x86-64, does the rest (padding, im2col, threading) and calls it per tile.
#include "../conv2d.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "batch_split.h"
#include "isa.h"

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
    return w;
}

namespace {
int thread_index() {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}
}  // namespace

void conv2d_packed(const Conv2dParams& p, const float* x, const PackedConv2dWeight& w,
                   const Conv2dEpilogue& e, float* y, int threads, CpuLevel level) {
    const IsaKernels& isa = isa_kernels(level);
    // A batch with an image per thread: whole images per thread (each call runs on one thread).
    if (for_each_image(p, x, e, y, threads, [&](const Conv2dParams& p1, const float* x1, const Conv2dEpilogue& e1,
                                                 float* y1) { conv2d_packed(p1, x1, w, e1, y1, 1, isa.level); }))
        return;
    constexpr int64_t kMR = kPackRows;
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
    const int64_t panel = kTileCols;
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
                isa.im2col_block(p, xn + g * cg * p.h * p.w, k, k + 1, 0, npix, src + g * K * npix, npix);
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
                    isa.im2col_block(p, xn + g * cg * p.h * p.w, 0, K, j_begin, j_end, block, chunk_cols);
                    Bt = block;
                    j_base = j_begin;
                }
                for (int64_t b = b0; b < b1; ++b) {
                    const float* A = w.data.get() + (g * oc_blocks + b) * K * kMR;
                    const int rows = static_cast<int>(std::min<int64_t>(kMR, ocg - b * kMR));
                    for (int64_t j = j_begin; j < j_end; j += panel) {
                        const int64_t width = std::min(panel, j_end - j);
                        isa.tile(K, A, Bt + (j - j_base), offs.data(), C + b * kMR * ncols + j, ncols, rows, width,
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
