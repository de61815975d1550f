// Winograd convolution F(m x m, 3 x 3), m = 2 or 4 (Lavin & Gray, "Fast Algorithms for
// Convolutional Neural Networks", 2016), for 3x3 / stride 1 / dilation 1 / ungrouped layers.
//
// With a = m + 2, each m x m output tile of one output channel is
//     Y = AT * [ sum_c  U_c (.) V_c ] * AT^T,   U_c = G g_c G^T (a x a),   V_c = BT d_c BT^T
// where d_c is the a x a input patch of channel c and (.) is the elementwise product. Summing
// over c for every one of the a*a positions is a GEMM, which is where the time goes:
//     M[pos][oc][tile] = sum_c U[pos][oc][c] * V[pos][c][tile]
// so the work per tile drops from 9 m^2 to a^2 multiplies per channel pair.
// Steps per call: (1) input transform -> V, (2) a*a GEMMs -> M (the shared microkernel),
// (3) output transform + epilogue (bias, residual, ReLU) -> y. Tiles of all images in the
// batch are concatenated, so batch > 1 makes the GEMMs wider. The transforms of one image
// plane and the microkernel exist once per CPU level (isa_kernels.inc, which holds BT and AT);
// this file sets up the call, threads it and transforms the weights (G).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "../conv2d.h"
#include "batch_split.h"
#include "isa.h"
#include "parallel_errors.h"

namespace strata {
namespace cpu {

namespace {

// The weight transform G (the input and output transforms BT and AT are in isa_kernels.inc),
// applied in double when the weights are transformed (once, at load).
template <int M> struct Tr;
template <> struct Tr<2> {
    static constexpr int A = 4;
    static constexpr double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
};
template <> struct Tr<4> {
    static constexpr int A = 6;
    static constexpr double G[6][3] = {{1.0 / 4, 0, 0},
                                       {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                       {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                       {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                       {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                       {0, 0, 1}};
};

std::shared_ptr<float> alloc_floats(int64_t n) {
    const size_t bytes = (static_cast<size_t>(n) * sizeof(float) + 63) / 64 * 64;
    float* p = static_cast<float*>(std::aligned_alloc(64, bytes > 0 ? bytes : 64));
    if (!p) throw std::bad_alloc();
    return std::shared_ptr<float>(p, [](float* q) { std::free(q); });
}

// U[pos] for one (oc, c) pair: G g G^T in double.
template <int M>
void transform_kernel(const float* g, double* u) {
    constexpr int A = Tr<M>::A;
    double t[A][3];
    for (int i = 0; i < A; ++i)
        for (int j = 0; j < 3; ++j)
            t[i][j] = Tr<M>::G[i][0] * g[0 * 3 + j] + Tr<M>::G[i][1] * g[1 * 3 + j] + Tr<M>::G[i][2] * g[2 * 3 + j];
    for (int i = 0; i < A; ++i)
        for (int j = 0; j < A; ++j) u[i * A + j] = t[i][0] * Tr<M>::G[j][0] + t[i][1] * Tr<M>::G[j][1] + t[i][2] * Tr<M>::G[j][2];
}

template <int M>
WinogradConv2dWeight pack(int64_t oc, int64_t c, const float* weight, const double* row_scale) {
    constexpr int A = Tr<M>::A;
    WinogradConv2dWeight w;
    w.m = M;
    w.oc = oc;
    w.c = c;
    w.blocks = (oc + kPackRows - 1) / kPackRows;
    // [pos][block][c][8]: the microkernel's A operand.
    w.data = alloc_floats(int64_t{A} * A * w.blocks * c * kPackRows);
    std::fill(w.data.get(), w.data.get() + int64_t{A} * A * w.blocks * c * kPackRows, 0.0f);
    auto at = [&](int pos, int64_t o, int64_t ci) -> float& {
        return w.data.get()[((pos * w.blocks + o / kPackRows) * c + ci) * kPackRows + o % kPackRows];
    };
    double u[A * A];
    float g[9];
    for (int64_t o = 0; o < oc; ++o)
        for (int64_t ci = 0; ci < c; ++ci) {
            const float* kernel = weight + (o * c + ci) * 9;
            for (int i = 0; i < 9; ++i) g[i] = row_scale ? static_cast<float>(kernel[i] * row_scale[o]) : kernel[i];
            transform_kernel<M>(g, u);
            for (int pos = 0; pos < A * A; ++pos) at(pos, o, ci) = static_cast<float>(u[pos]);
        }
    return w;
}

template <int M>
void run(const Conv2dParams& p, const float* x, const WinogradConv2dWeight& w, const Conv2dEpilogue& e,
         float* y, int threads, const IsaKernels& isa) {
    constexpr int A = M + 2;
    constexpr int P = A * A;
    WinogradGeometry g;
    g.h = p.h, g.w = p.w, g.pad_h = p.pad_h, g.pad_w = p.pad_w, g.oh = p.oh, g.ow = p.ow;
    g.tiles_y = (p.oh + M - 1) / M, g.tiles_x = (p.ow + M - 1) / M;
    g.per_image = g.tiles_y * g.tiles_x;
    const int64_t T = g.T = p.n * g.per_image;
    // Transforms run on groups of L = 16 tiles, lane-innermost so that every arithmetic loop is a
    // plain 16-wide vector loop. A group is 16 tiles of one tile row; the zero-padded copy of an
    // input plane is wide enough for whole groups, so the loads need no bounds checks. Images at
    // most 4 tiles wide (layers 3-4 at 224) would leave 3/4 of such groups' lanes empty: there
    // ("flat" groups) a group is 16 consecutive tiles in row-major order across tile rows, read
    // through per-lane offsets (flat_offs, a gather) and written back tile by tile. Measured on
    // one Zen 4 thread: 2.5-3x faster transforms at 4 tiles per row, even at 7, slower at 14.
    constexpr int L = 16;
    g.flat = 4 * g.tiles_x <= L;
    g.groups_x = (g.tiles_x + L - 1) / L;
    g.groups = g.flat ? (g.per_image + L - 1) / L : g.tiles_y * g.groups_x;  // per plane
    g.hp = M * g.tiles_y + 2, g.wp = g.flat ? M * g.tiles_x + 2 : M * g.groups_x * L + 2;
    // Flat groups: lane l of group grp is tile t = grp*L + l (the last tile again past the end);
    // its patch starts at plane offset flat_offs[grp*L + l].
    std::vector<int32_t> flat_offs(g.flat ? static_cast<size_t>(g.groups * L) : 0);
    for (size_t k = 0; k < flat_offs.size(); ++k) {
        const int64_t t = std::min<int64_t>(static_cast<int64_t>(k), g.per_image - 1);
        flat_offs[k] = static_cast<int32_t>(M * (t / g.tiles_x) * g.wp + M * (t % g.tiles_x));
    }
    g.flat_offs = flat_offs.data();
    const std::shared_ptr<float> V = alloc_floats(P * p.c * T);
    const std::shared_ptr<float> Mbuf = alloc_floats(P * p.oc * T + L);  // + L: group over-read
    float* v_data = V.get();
    float* m_data = Mbuf.get();
    const WinogradInputFn input = isa.winograd_input[M == 4];
    const WinogradOutputFn output = isa.winograd_output[M == 4];

    ParallelErrors errors;  // a thread's plane that cannot be allocated fails the call (after the region)
#pragma omp parallel num_threads(threads)
    {
        // (1) Input transform: V[pos][c][t] = (BT d BT^T)[pos] for tile t's patch d.
        // + 16 * M: the transforms' strided loads read up to 16*M - 1 floats past a group's first
        // column. Zeroed once: every channel copies into the same interior, so the padding stays zero.
        std::vector<float> plane;
        errors.run([&] { plane.assign(static_cast<size_t>(g.hp * g.wp + 16 * M), 0.0f); });
#pragma omp for schedule(static)
        for (int64_t nc = 0; nc < p.n * p.c; ++nc) {
            if (errors.failed()) continue;
            const int64_t n = nc / p.c, c = nc % p.c;
            input(g, x + nc * p.h * p.w, plane.data(), v_data + c * T + n * g.per_image, p.c * T);
        }

        // (2) The a*a GEMMs: M[pos][oc][t] = sum_c U[pos][oc][c] * V[pos][c][t].
        const int64_t panel = kTileCols;
        const int64_t panels = (T + panel - 1) / panel;
        int64_t oc_parts = 1;  // split output channels too only if positions x panels are few
        while (P * panels * oc_parts < 4 * threads && oc_parts * 2 <= w.blocks) oc_parts *= 2;
        std::vector<int64_t> offs(static_cast<size_t>(p.c));
        for (int64_t k = 0; k < p.c; ++k) offs[static_cast<size_t>(k)] = k * T;
#pragma omp for schedule(dynamic, 1) collapse(2)
        for (int64_t pos = 0; pos < P; ++pos)
            for (int64_t task = 0; task < panels * oc_parts; ++task) {
                const int64_t j = (task / oc_parts) * panel, part = task % oc_parts;
                const int64_t b0 = w.blocks * part / oc_parts, b1 = w.blocks * (part + 1) / oc_parts;
                const int64_t width = std::min(panel, T - j);
                for (int64_t b = b0; b < b1; ++b) {
                    const int rows = static_cast<int>(std::min<int64_t>(kPackRows, p.oc - b * kPackRows));
                    isa.tile(p.c, w.data.get() + (pos * w.blocks + b) * p.c * kPackRows, v_data + pos * p.c * T + j,
                             offs.data(), m_data + pos * p.oc * T + b * kPackRows * T + j, T, rows, width, nullptr,
                             nullptr, false);
                }
            }

        // (3) Output transform and epilogue: y tile = AT m AT^T (+ bias, + residual, ReLU).
#pragma omp for schedule(static)
        for (int64_t no = 0; no < p.n * p.oc; ++no) {
            const int64_t n = no / p.oc, o = no % p.oc;
            output(g, m_data + o * T + n * g.per_image, p.oc * T, e.bias ? e.bias[o] : 0.0f,
                   e.residual ? e.residual + no * p.oh * p.ow : nullptr, e.relu, y + no * p.oh * p.ow);
        }
    }
    errors.rethrow();
}

// Multiplies per output pixel, per (input, output) channel pair, counting the border tiles and
// the unused lanes of the last 16-wide vector of the GEMM's tile dimension.
double winograd_cost(int m, int64_t n, int64_t oh, int64_t ow) {
    const int64_t a = m + 2;
    const int64_t tiles = n * ((oh + m - 1) / m) * ((ow + m - 1) / m);
    const int64_t lanes = (tiles + 15) / 16 * 16;
    return static_cast<double>(a * a * lanes) / static_cast<double>(n * oh * ow);
}

// Winograd's cost per multiply is lower when a batch is split by image (batch_split.h): each
// thread's V and M buffers then hold one image's tiles and stay in its L2. Measured on Zen 4 at
// batch 8 (2 threads), layers 1-3 of ResNet-18 ran 1.3-1.6x faster split than as one call, so a
// split run's multiplies are weighted by this factor when the two are compared.
constexpr double kSplitWeight = 0.7;

bool winograd_by_image(int m, int64_t n, int64_t oh, int64_t ow, int threads) {
    return split_by_image(n, threads) && kSplitWeight * winograd_cost(m, 1, oh, ow) <= winograd_cost(m, n, oh, ow);
}

double weighted_cost(int m, int64_t n, int64_t oh, int64_t ow, int threads) {
    return winograd_by_image(m, n, oh, ow, threads) ? kSplitWeight * winograd_cost(m, 1, oh, ow)
                                                    : winograd_cost(m, n, oh, ow);
}

}  // namespace

bool winograd_applicable(const Conv2dParams& p) {
    return p.kh == 3 && p.kw == 3 && p.stride_h == 1 && p.stride_w == 1 && p.dil_h == 1 && p.dil_w == 1 &&
           p.groups == 1 && p.oh == p.h + 2 * p.pad_h - 2 && p.ow == p.w + 2 * p.pad_w - 2;
}

int winograd_tile_for(int64_t n, int64_t oh, int64_t ow, int threads) {
    // The direct kernel costs 9 multiplies per output on the padded grid (ow + 2 columns).
    const double direct = 9.0 * static_cast<double>(ow + 2) / static_cast<double>(ow);
    const double f2 = weighted_cost(2, n, oh, ow, threads), f4 = weighted_cost(4, n, oh, ow, threads);
    // Transforms are not free: ask Winograd to win by a margin before choosing it.
    if (std::min(f2, f4) > 0.8 * direct) return 0;
    return f4 <= f2 ? 4 : 2;
}

WinogradConv2dWeight pack_conv2d_winograd(int m, int64_t oc, int64_t c, const float* weight,
                                          const double* row_scale) {
    if (m == 2) return pack<2>(oc, c, weight, row_scale);
    if (m == 4) return pack<4>(oc, c, weight, row_scale);
    throw std::invalid_argument("pack_conv2d_winograd: m must be 2 or 4");
}

void conv2d_winograd(const Conv2dParams& p, const float* x, const WinogradConv2dWeight& w,
                     const Conv2dEpilogue& epilogue, float* y, int threads, CpuLevel level) {
    const IsaKernels& isa = isa_kernels(level);
    // Whole images per thread when that is cheaper (see winograd_by_image).
    if (winograd_by_image(w.m, p.n, p.oh, p.ow, threads) && for_each_image(p, x, epilogue, y, threads, [&](const Conv2dParams& p1, const float* x1,
                                                       const Conv2dEpilogue& e1, float* y1) {
            conv2d_winograd(p1, x1, w, e1, y1, 1, isa.level);
        }))
        return;
    if (w.m == 2) run<2>(p, x, w, epilogue, y, threads, isa);
    else run<4>(p, x, w, epilogue, y, threads, isa);
}

}  // namespace cpu
}  // namespace strata
