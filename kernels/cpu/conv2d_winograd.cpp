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
// batch are concatenated, so batch > 1 makes the GEMMs wider.
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "../conv2d.h"
#include "batch_split.h"
#include "microkernel.h"
#include "parallel_errors.h"

namespace strata {
namespace cpu {

namespace {

// Transform matrices. G is applied in double when weights are transformed (once, at load).
template <int M> struct Tr;
template <> struct Tr<2> {
    static constexpr int A = 4;
    static constexpr float BT[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
    static constexpr double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
    static constexpr float AT[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
};
template <> struct Tr<4> {
    static constexpr int A = 6;
    static constexpr float BT[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                                       {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
    static constexpr double G[6][3] = {{1.0 / 4, 0, 0},
                                       {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                       {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                       {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                       {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                       {0, 0, 1}};
    static constexpr float AT[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
};

std::shared_ptr<float> alloc_floats(int64_t n) {
    const size_t bytes = (static_cast<size_t>(n) * sizeof(float) + 63) / 64 * 64;
    float* p = static_cast<float*>(std::aligned_alloc(64, bytes > 0 ? bytes : 64));
    if (!p) throw std::bad_alloc();
    return std::shared_ptr<float>(p, [](float* q) { std::free(q); });
}

// dst[0, count) = v[0, count), count <= 16: one masked vector store (these copies run once per
// transformed value, and at batch 1 a group is rarely whole, so a libc memcpy call each would
// cost more than the transform).
inline void store_lanes(float* dst, const float* v, int64_t count) {
#if defined(__AVX512F__)
    _mm512_mask_storeu_ps(dst, static_cast<__mmask16>((1u << count) - 1), _mm512_loadu_ps(v));
#else
    std::memcpy(dst, v, sizeof(float) * static_cast<size_t>(count));
#endif
}

#if defined(__AVX512F__)
// p[0], p[M], p[2M], ..., p[15M] as one vector, for M = 2 or 4: the j-th column of 16
// neighbouring m x m tiles, from contiguous loads and lane permutes instead of 16 scalar loads.
// Reads p[0, 16M).
template <int M> inline __m512 load_stride(const float* p);
template <> inline __m512 load_stride<2>(const float* p) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_ps(_mm512_loadu_ps(p), even, _mm512_loadu_ps(p + 16));
}
template <> inline __m512 load_stride<4>(const float* p) {
    const __m512i every4 = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
    const __m512 lo = _mm512_permutex2var_ps(_mm512_loadu_ps(p), every4, _mm512_loadu_ps(p + 16));
    const __m512 hi = _mm512_permutex2var_ps(_mm512_loadu_ps(p + 32), every4, _mm512_loadu_ps(p + 48));
    return _mm512_shuffle_f32x4(lo, hi, _MM_SHUFFLE(1, 0, 1, 0));  // lanes 0-7 of each
}
#endif

// row[M*l + j] = cols[j][l] for 16 tiles l: the inverse of load_stride, with lane shuffles
// (a 4x4 transpose within and then across 128-bit lanes for M = 4) instead of strided stores.
template <int M> inline void interleave(const float (&cols)[M][16], float* row);
#if defined(__AVX512F__)
template <> inline void interleave<2>(const float (&cols)[2][16], float* row) {
    const __m512 v0 = _mm512_loadu_ps(cols[0]), v1 = _mm512_loadu_ps(cols[1]);
    const __m512 lo = _mm512_unpacklo_ps(v0, v1), hi = _mm512_unpackhi_ps(v0, v1);  // per 128-bit lane k: tiles 4k, 4k+1 | 4k+2, 4k+3
    const __m512i first = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    const __m512i second = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    _mm512_storeu_ps(row, _mm512_permutex2var_ps(lo, first, hi));
    _mm512_storeu_ps(row + 16, _mm512_permutex2var_ps(lo, second, hi));
}
template <> inline void interleave<4>(const float (&cols)[4][16], float* row) {
    const __m512 v0 = _mm512_loadu_ps(cols[0]), v1 = _mm512_loadu_ps(cols[1]);
    const __m512 v2 = _mm512_loadu_ps(cols[2]), v3 = _mm512_loadu_ps(cols[3]);
    const __m512 t0 = _mm512_unpacklo_ps(v0, v1), t1 = _mm512_unpackhi_ps(v0, v1);
    const __m512 t2 = _mm512_unpacklo_ps(v2, v3), t3 = _mm512_unpackhi_ps(v2, v3);
    // u_m's 128-bit lane k holds the 4 columns of tile 4k + m
    const __m512 u0 = _mm512_shuffle_ps(t0, t2, 0x44), u1 = _mm512_shuffle_ps(t0, t2, 0xEE);
    const __m512 u2 = _mm512_shuffle_ps(t1, t3, 0x44), u3 = _mm512_shuffle_ps(t1, t3, 0xEE);
    const __m512 a = _mm512_shuffle_f32x4(u0, u1, 0x44), b = _mm512_shuffle_f32x4(u2, u3, 0x44);
    const __m512 c = _mm512_shuffle_f32x4(u0, u1, 0xEE), d = _mm512_shuffle_f32x4(u2, u3, 0xEE);
    _mm512_storeu_ps(row, _mm512_shuffle_f32x4(a, b, 0x88));
    _mm512_storeu_ps(row + 16, _mm512_shuffle_f32x4(a, b, 0xDD));
    _mm512_storeu_ps(row + 32, _mm512_shuffle_f32x4(c, d, 0x88));
    _mm512_storeu_ps(row + 48, _mm512_shuffle_f32x4(c, d, 0xDD));
}
#else
template <int M> inline void interleave(const float (&cols)[M][16], float* row) {
    for (int j = 0; j < M; ++j)
        for (int l = 0; l < 16; ++l) row[M * l + j] = cols[j][l];
}
#endif

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
#if defined(__AVX512F__)
    // [pos][block][c][8]: the microkernel's A operand.
    w.data = alloc_floats(int64_t{A} * A * w.blocks * c * kPackRows);
    std::fill(w.data.get(), w.data.get() + int64_t{A} * A * w.blocks * c * kPackRows, 0.0f);
    auto at = [&](int pos, int64_t o, int64_t ci) -> float& {
        return w.data.get()[((pos * w.blocks + o / kPackRows) * c + ci) * kPackRows + o % kPackRows];
    };
#else
    // [pos][oc][c]: a plain row-major matrix per position, for Eigen.
    w.data = alloc_floats(int64_t{A} * A * oc * c);
    auto at = [&](int pos, int64_t o, int64_t ci) -> float& { return w.data.get()[(pos * oc + o) * c + ci]; };
#endif
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
         float* y, int threads) {
    constexpr int A = Tr<M>::A;
    constexpr int P = A * A;
    const int64_t tiles_y = (p.oh + M - 1) / M, tiles_x = (p.ow + M - 1) / M;
    const int64_t per_image = tiles_y * tiles_x, T = p.n * per_image;
    // Transforms run on groups of L = 16 tiles, lane-innermost so that every arithmetic loop is a
    // plain 16-wide vector loop. A group is 16 tiles of one tile row; the zero-padded copy of an
    // input plane is wide enough for whole groups, so the loads need no bounds checks. Images at
    // most 4 tiles wide (layers 3-4 at 224) would leave 3/4 of such groups' lanes empty: there
    // ("flat" groups) a group is 16 consecutive tiles in row-major order across tile rows, read
    // through per-lane offsets (flat_offs, a gather) and written back tile by tile. Measured on
    // one Zen 4 thread: 2.5-3x faster transforms at 4 tiles per row, even at 7, slower at 14.
    constexpr int L = 16;
    const bool flat = 4 * tiles_x <= L;
    const int64_t groups_x = (tiles_x + L - 1) / L;
    const int64_t groups = flat ? (per_image + L - 1) / L : tiles_y * groups_x;  // per plane
    const int64_t hp = M * tiles_y + 2, wp = flat ? M * tiles_x + 2 : M * groups_x * L + 2;
    // Flat groups: lane l of group g is tile t = g*L + l (the last tile again past the end);
    // its patch starts at plane offset flat_offs[g*L + l].
    std::vector<int32_t> flat_offs(flat ? static_cast<size_t>(groups * L) : 0);
    for (size_t k = 0; k < flat_offs.size(); ++k) {
        const int64_t t = std::min<int64_t>(static_cast<int64_t>(k), per_image - 1);
        flat_offs[k] = static_cast<int32_t>(M * (t / tiles_x) * wp + M * (t % tiles_x));
    }
    const std::shared_ptr<float> V = alloc_floats(P * p.c * T);
    const std::shared_ptr<float> Mbuf = alloc_floats(P * p.oc * T + L);  // + L: group over-read
    float* v_data = V.get();
    float* m_data = Mbuf.get();

    ParallelErrors errors;  // a thread's plane that cannot be allocated fails the call (after the region)
#pragma omp parallel num_threads(threads)
    {
        // (1) Input transform: V[pos][c][t] = (BT d BT^T)[pos] for tile t's patch d.
        // + 16 * M: load_stride reads up to 16*M - 1 floats past a group's first column.
        // Zeroed once: every channel copies into the same interior, so the padding stays zero.
        std::vector<float> plane;
        errors.run([&] { plane.assign(static_cast<size_t>(hp * wp + 16 * M), 0.0f); });
#pragma omp for schedule(static)
        for (int64_t nc = 0; nc < p.n * p.c; ++nc) {
            if (errors.failed()) continue;
            const int64_t n = nc / p.c, c = nc % p.c;
            const float* in = x + nc * p.h * p.w;
            const int64_t rows = std::min(p.h, hp - p.pad_h), cols = std::min(p.w, wp - p.pad_w);
            for (int64_t i = 0; i < rows; ++i)
                std::memcpy(&plane[static_cast<size_t>((i + p.pad_h) * wp + p.pad_w)], in + i * p.w,
                            sizeof(float) * static_cast<size_t>(cols));
            for (int64_t g = 0; g < groups; ++g) {
                    const int64_t ty = g / groups_x, tx0 = (g % groups_x) * L;  // (row groups)
                    const int64_t t0 = flat ? g * L : ty * tiles_x + tx0;          // first tile
                    const int64_t count = std::min<int64_t>(L, flat ? per_image - t0 : tiles_x - tx0);
                    float d[A][A][L], t[A][A][L];
                    if (flat) {
                        const int32_t* offs = flat_offs.data() + g * L;
#if defined(__AVX512F__)
                        const __m512i lane_offs = _mm512_loadu_si512(offs);
#endif
                        #pragma GCC unroll 8
                        for (int i = 0; i < A; ++i)
                            #pragma GCC unroll 8
                            for (int j = 0; j < A; ++j) {
#if defined(__AVX512F__)
                                const __m512i at = _mm512_add_epi32(lane_offs, _mm512_set1_epi32(static_cast<int>(i * wp + j)));
                                _mm512_storeu_ps(d[i][j], _mm512_i32gather_ps(at, plane.data(), 4));
#else
                                for (int l = 0; l < L; ++l) d[i][j][l] = plane[static_cast<size_t>(offs[l] + i * wp + j)];
#endif
                            }
                    } else {
                        const float* base = plane.data() + M * ty * wp + M * tx0;
                        #pragma GCC unroll 8
                        for (int i = 0; i < A; ++i)
                            #pragma GCC unroll 8
                            for (int j = 0; j < A; ++j) {
#if defined(__AVX512F__)
                                _mm512_storeu_ps(d[i][j], load_stride<M>(base + i * wp + j));
#else
                                for (int l = 0; l < L; ++l) d[i][j][l] = base[i * wp + M * l + j];
#endif
                            }
                    }
                    #pragma GCC unroll 8
                    for (int i = 0; i < A; ++i)
                        #pragma GCC unroll 8
                        for (int j = 0; j < A; ++j)
#pragma omp simd
                            for (int l = 0; l < L; ++l) {
                                float s = 0;
                                #pragma GCC unroll 8
                                for (int k = 0; k < A; ++k)
                                    if (Tr<M>::BT[i][k] != 0) s += Tr<M>::BT[i][k] * d[k][j][l];
                                t[i][j][l] = s;
                            }
                    float* out = v_data + c * T + n * per_image + t0;
                    #pragma GCC unroll 8
                    for (int i = 0; i < A; ++i)
                        #pragma GCC unroll 8
                        for (int j = 0; j < A; ++j) {
                            float v[L];
#pragma omp simd
                            for (int l = 0; l < L; ++l) {
                                float s = 0;
                                #pragma GCC unroll 8
                                for (int k = 0; k < A; ++k)
                                    if (Tr<M>::BT[j][k] != 0) s += t[i][k][l] * Tr<M>::BT[j][k];
                                v[l] = s;
                            }
                            store_lanes(out + (i * A + j) * p.c * T, v, count);
                        }
                }
        }

        // (2) The a*a GEMMs: M[pos][oc][t] = sum_c U[pos][oc][c] * V[pos][c][t].
#if defined(__AVX512F__)
        const int64_t panel = 16 * detail::kMaxNV;
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
                    detail::tile(p.c, w.data.get() + (pos * w.blocks + b) * p.c * kPackRows,
                                 v_data + pos * p.c * T + j, offs.data(),
                                 m_data + pos * p.oc * T + b * kPackRows * T + j, T, rows, width, nullptr,
                                 nullptr, false);
                }
            }
#else
        using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
#pragma omp for schedule(dynamic, 1)
        for (int64_t pos = 0; pos < P; ++pos) {
            Eigen::Map<const RowMatrix> U(w.data.get() + pos * p.oc * p.c, p.oc, p.c);
            Eigen::Map<const RowMatrix> Vp(v_data + pos * p.c * T, p.c, T);
            Eigen::Map<RowMatrix> Mp(m_data + pos * p.oc * T, p.oc, T);
            Mp.noalias() = U * Vp;
        }
#endif

        // (3) Output transform and epilogue: y tile = AT m AT^T (+ bias, + residual, ReLU).
#pragma omp for schedule(static)
        for (int64_t no = 0; no < p.n * p.oc; ++no) {
            const int64_t n = no / p.oc, o = no % p.oc;
            const float bias = e.bias ? e.bias[o] : 0.0f;
            float* out_plane = y + no * p.oh * p.ow;
            const float* res_plane = e.residual ? e.residual + no * p.oh * p.ow : nullptr;
            for (int64_t g = 0; g < groups; ++g) {
                    const int64_t ty = g / groups_x, tx0 = (g % groups_x) * L;  // (row groups)
                    const int64_t t0 = flat ? g * L : ty * tiles_x + tx0;
                    const float* in = m_data + o * T + n * per_image + t0;
                    float m[A][A][L], t[M][A][L];
                    #pragma GCC unroll 8
                    for (int i = 0; i < A; ++i)
                        #pragma GCC unroll 8
                        for (int j = 0; j < A; ++j)
#pragma omp simd
                            for (int l = 0; l < L; ++l) m[i][j][l] = in[(i * A + j) * p.oc * T + l];
                    #pragma GCC unroll 8
                    for (int i = 0; i < M; ++i)
                        #pragma GCC unroll 8
                        for (int j = 0; j < A; ++j)
#pragma omp simd
                            for (int l = 0; l < L; ++l) {
                                float s = 0;
                                #pragma GCC unroll 8
                                for (int k = 0; k < A; ++k)
                                    if (Tr<M>::AT[i][k] != 0) s += Tr<M>::AT[i][k] * m[k][j][l];
                                t[i][j][l] = s;
                            }
                    const int64_t x0 = M * tx0, x1 = std::min(p.ow, M * (tx0 + L));
                    #pragma GCC unroll 8
                    for (int i = 0; i < M; ++i) {
                        const int64_t oy = M * ty + i;
                        if (!flat && oy >= p.oh) break;
                        // The row of this tile group, interleaved: row[M*l + j] = tile l's column j.
                        float cols[M][L], row[M * L];
                        #pragma GCC unroll 8
                        for (int j = 0; j < M; ++j)
#pragma omp simd
                            for (int l = 0; l < L; ++l) {
                                float s = 0;
                                #pragma GCC unroll 8
                                for (int k = 0; k < A; ++k)
                                    if (Tr<M>::AT[j][k] != 0) s += t[i][k][l] * Tr<M>::AT[j][k];
                                cols[j][l] = s;
                            }
                        interleave<M>(cols, row);
                        if (flat) {  // tile by tile: M values of output row M*ty_l + i each
                            const int64_t count = std::min<int64_t>(L, per_image - t0);
                            for (int64_t l = 0; l < count; ++l) {
                                const int64_t ty_l = (t0 + l) / tiles_x, tx_l = (t0 + l) % tiles_x;
                                if (M * ty_l + i >= p.oh) continue;
                                const int64_t at = M * ty_l * p.ow + M * tx_l;  // the tile's top-left output
                                const int64_t width = std::min<int64_t>(M, p.ow - M * tx_l);
                                float* dst = out_plane + at + i * p.ow;
                                const float* res = res_plane ? res_plane + at + i * p.ow : nullptr;
                                for (int64_t j = 0; j < width; ++j) {
                                    float s = row[M * l + j] + bias;
                                    if (res) s += res[j];
                                    if (e.relu && s < 0.0f) s = 0.0f;  // NaN stays NaN
                                    dst[j] = s;
                                }
                            }
                            continue;
                        }
                        float* dst = out_plane + oy * p.ow;
                        const float* res = res_plane ? res_plane + oy * p.ow : nullptr;
#pragma omp simd
                        for (int64_t ox = x0; ox < x1; ++ox) {
                            float s = row[ox - x0] + bias;
                            if (res) s += res[ox];
                            if (e.relu && s < 0.0f) s = 0.0f;  // NaN stays NaN
                            dst[ox] = s;
                        }
                    }
                }
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
                     const Conv2dEpilogue& epilogue, float* y, int threads) {
    // Whole images per thread when that is cheaper (see winograd_by_image).
    if (winograd_by_image(w.m, p.n, p.oh, p.ow, threads) && for_each_image(p, x, epilogue, y, threads, [&](const Conv2dParams& p1, const float* x1,
                                                       const Conv2dEpilogue& e1, float* y1) {
            conv2d_winograd(p1, x1, w, e1, y1, 1);
        }))
        return;
    if (w.m == 2) run<2>(p, x, w, epilogue, y, threads);
    else run<4>(p, x, w, epilogue, y, threads);
}

}  // namespace cpu
}  // namespace strata
