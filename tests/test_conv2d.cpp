// Convolution: cpu::conv2d (im2col / pointwise + Eigen GEMM, two OpenMP splits) against
// reference::conv2d on a few hundred seeded random configurations, the Conv2d layer with both
// backends, and the layer's input checks.
#include <algorithm>
#include <cmath>
#include <sstream>

#include "kernels/conv2d.h"
#include "test_util.h"

using namespace strata;
using strata_test::compare_bitwise;
using strata_test::compare_bounded;
using strata_test::random_tensor;

namespace {

constexpr double kUnitRoundoff = 1.0 / 16777216.0;  // 2^-24, float32

std::string describe(const Conv2dParams& p, bool bias) {
    std::ostringstream os;
    os << "x [" << p.n << ", " << p.c << ", " << p.h << ", " << p.w << "] -> " << p.oc
       << " channels, kernel (" << p.kh << ", " << p.kw << "), stride (" << p.stride_h << ", "
       << p.stride_w << "), padding (" << p.pad_h << ", " << p.pad_w << "), dilation ("
       << p.dil_h << ", " << p.dil_w << "), groups " << p.groups << ", bias "
       << (bias ? "yes" : "no") << ", output " << p.oh << "x" << p.ow;
    return os.str();
}

Tensor abs_of(const Tensor& t) {
    Tensor out = t.clone();
    float* p = out.data<float>();
    for (int64_t i = 0; i < out.numel(); ++i) p[i] = std::fabs(p[i]);
    return out;
}

// Tolerance, per output element. cpu::conv2d sums K = (c/groups)*kh*kw float32 products in an
// order Eigen chooses (blocked, FMA), then adds the bias: by the standard forward error bound
// (Higham, Accuracy and Stability, 3.1) its error is at most gamma_{K+1} * M with
// M = sum |w*x| + |bias| and gamma_n = n*u/(1-n*u), u = 2^-24. The reference accumulates in
// double and rounds once (error <= u*|y| <= u*M). So |cpu - ref| <= (K+3) * u * M, whatever the
// summation order or thread split. M is the reference convolution of |x|, |w|, |bias|. This is
// a guaranteed bound, tight per element (a border pixel with few taps gets a small bound), and
// any indexing error moves a result by a whole term |w*x|, far above it.
Tensor conv_error_bound(const Conv2dParams& p, const Tensor& x, const Tensor& w, const Tensor& b) {
    const Tensor ax = abs_of(x), aw = abs_of(w);
    const Tensor ab = b.defined() ? abs_of(b) : Tensor();
    Tensor m = Tensor::empty({p.n, p.oc, p.oh, p.ow});
    reference::conv2d(p, ax.data<float>(), aw.data<float>(), ab.defined() ? ab.data<float>() : nullptr,
                      m.data<float>());
    const double k = static_cast<double>(p.c / p.groups * p.kh * p.kw);
    float* pm = m.data<float>();
    for (int64_t i = 0; i < m.numel(); ++i)
        pm[i] = static_cast<float>((k + 3) * kUnitRoundoff * pm[i] * (1 + 1e-6));
    return m;
}

// An integer in [lo, hi], from element *i of the stream (then *i advances).
int64_t draw(const DetStream& s, uint64_t* i, int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(s.u((*i)++) * static_cast<double>(hi - lo + 1));
}

// One random configuration: batch 1..3, channels 1..24 per side, groups 1, 2, 3 or depthwise
// (with channel multiplier 1 or 2), kernel 1..7 each side, stride 1..3, padding 0..3,
// dilation 1..3, spatial 1..29 (mostly odd), bias or not. Every sixth is a pointwise 1x1
// stride 1 unpadded convolution (cpu's no-im2col path). Work is capped to keep the test fast.
Conv2dParams random_conv(const DetStream& s, uint64_t* i, int index, bool* bias) {
    for (;;) {
        Conv2dParams p{};
        p.n = draw(s, i, 1, 3);
        const int64_t kind = draw(s, i, 0, 3);
        if (kind < 3) {
            p.groups = kind + 1;
            p.c = p.groups * draw(s, i, 1, 24 / p.groups);
            p.oc = p.groups * draw(s, i, 1, 24 / p.groups);
        } else {  // depthwise
            p.c = draw(s, i, 1, 24);
            p.groups = p.c;
            p.oc = p.c * (p.c <= 12 ? draw(s, i, 1, 2) : 1);
        }
        p.kh = draw(s, i, 1, 7);
        p.kw = draw(s, i, 1, 7);
        p.stride_h = draw(s, i, 1, 3);
        p.stride_w = draw(s, i, 1, 3);
        p.pad_h = draw(s, i, 0, 3);
        p.pad_w = draw(s, i, 0, 3);
        p.dil_h = draw(s, i, 1, 3);
        p.dil_w = draw(s, i, 1, 3);
        if (index % 6 == 0) {
            p.kh = p.kw = 1;
            p.stride_h = p.stride_w = 1;
            p.pad_h = p.pad_w = 0;
        }
        auto spatial = [&](int64_t k, int64_t dil, int64_t pad) {
            const int64_t lo = std::max<int64_t>(1, dil * (k - 1) + 1 - 2 * pad);
            int64_t v = draw(s, i, lo, 29);
            if (v % 2 == 0 && draw(s, i, 0, 3) != 0) v = v + 1 <= 29 ? v + 1 : v - 1;
            return std::max(v, lo);
        };
        p.h = spatial(p.kh, p.dil_h, p.pad_h);
        p.w = spatial(p.kw, p.dil_w, p.pad_w);
        *bias = draw(s, i, 0, 1) == 1;
        if (!p.compute_output_size()) continue;
        const int64_t macs = p.n * p.oc * p.oh * p.ow * (p.c / p.groups) * p.kh * p.kw;
        if (macs > 2000000) continue;  // keeps the reference (and the suite) fast
        return p;
    }
}

Conv2dParams make_conv(int64_t n, int64_t c, int64_t h, int64_t w, int64_t oc, int64_t kh,
                       int64_t kw, int64_t stride, int64_t pad, int64_t dil, int64_t groups) {
    Conv2dParams p{};
    p.n = n; p.c = c; p.h = h; p.w = w; p.oc = oc; p.kh = kh; p.kw = kw;
    p.stride_h = p.stride_w = stride;
    p.pad_h = p.pad_w = pad;
    p.dil_h = p.dil_w = dil;
    p.groups = groups;
    REQUIRE(p.compute_output_size());
    return p;
}

// Which code path of kernels/cpu/conv2d.cpp a call takes (restated from its source, to prove
// that the configurations below reach all of them).
struct PathCount {
    int per_item = 0, split_columns = 0, split_rows = 0;  // threads split items / one product
    int pointwise = 0, im2col = 0;
    int split_pointwise = 0, split_im2col = 0;
};

void count_path(const Conv2dParams& p, int threads, PathCount* c) {
    const bool pointwise = p.kh == 1 && p.kw == 1 && p.stride_h == 1 && p.stride_w == 1 &&
                           p.pad_h == 0 && p.pad_w == 0;
    (pointwise ? c->pointwise : c->im2col)++;
    if (p.n * p.groups >= threads) {
        c->per_item++;
    } else {
        (p.oh * p.ow >= p.oc / p.groups ? c->split_columns : c->split_rows)++;
        (pointwise ? c->split_pointwise : c->split_im2col)++;
    }
}

// Runs cpu::conv2d with 1, 2 and 3 threads against the reference on one configuration.
void check_conv(const Conv2dParams& p, bool bias, const std::string& key, PathCount* paths) {
    INFO("conv2d " << key << ": " << describe(p, bias));
    const Tensor x = random_tensor({p.n, p.c, p.h, p.w}, key + ".x");
    const Tensor w = random_tensor({p.oc, p.c / p.groups, p.kh, p.kw}, key + ".w");
    const Tensor b = bias ? random_tensor({p.oc}, key + ".b") : Tensor();
    const float* pb = bias ? b.data<float>() : nullptr;
    Tensor ref = Tensor::empty({p.n, p.oc, p.oh, p.ow});
    reference::conv2d(p, x.data<float>(), w.data<float>(), pb, ref.data<float>());
    const Tensor bound = conv_error_bound(p, x, w, b);
    for (int threads = 1; threads <= 3; ++threads) {
        INFO("threads " << threads);
        count_path(p, threads, paths);
        // NaN first, so that an output the kernel forgets to write cannot pass.
        Tensor y = Tensor::full({p.n, p.oc, p.oh, p.ow}, NAN);
        cpu::conv2d(p, x.data<float>(), w.data<float>(), pb, y.data<float>(), threads);
        STRATA_REQUIRE_CMP(compare_bounded(y, ref, bound), "cpu vs reference");
    }
}

// Copies seeded random values into every parameter of `m` (keyed by the parameter's name).
void fill_parameters(Module& m, const std::string& key) {
    for (auto& [name, t] : m.named_parameters()) {
        Tensor dst = t;
        dst.copy_from(random_tensor(t.shape(), key + "." + name));
    }
}

}  // namespace

TEST_CASE("conv2d: cpu kernel matches the reference on 240 random configurations") {
    const DetStream stream(2024, "test_conv2d random configurations");
    uint64_t i = 0;
    PathCount paths;
    int grouped = 0, depthwise = 0;  // groups in 2..c-1, and groups == c > 1
    for (int index = 0; index < 240; ++index) {
        bool bias = false;
        const Conv2dParams p = random_conv(stream, &i, index, &bias);
        if (p.groups > 1) ++(p.groups == p.c ? depthwise : grouped);
        check_conv(p, bias, "random#" + std::to_string(index), &paths);
    }
    INFO("paths: per_item " << paths.per_item << ", split by columns " << paths.split_columns
                            << ", split by rows " << paths.split_rows << ", pointwise "
                            << paths.pointwise << ", im2col " << paths.im2col);
    CHECK(paths.per_item > 0);
    CHECK(paths.split_columns > 0);
    CHECK(paths.pointwise > 0);
    CHECK(paths.split_pointwise > 0);
    CHECK(paths.split_im2col > 0);
    CHECK(grouped >= 40);
    CHECK(depthwise >= 40);
}

TEST_CASE("conv2d: cpu kernel matches the reference on each thread split, by construction") {
    // Batch 1, groups 1 with 2 and 3 threads: one product split across threads. Rows are split
    // when the output has fewer pixels than channels; columns otherwise, in blocks of 16 floats,
    // so that 17 pixels over 3 threads leaves the last thread nothing to do.
    PathCount paths;
    struct Case {
        Conv2dParams p;
        bool bias;
    };
    const Case cases[] = {
        {make_conv(1, 5, 3, 3, 24, 1, 1, 1, 0, 1, 1), true},     // pointwise, rows (9 < 24)
        {make_conv(1, 7, 2, 1, 24, 3, 3, 1, 1, 1, 1), false},    // im2col, rows (2 < 24)
        {make_conv(1, 3, 1, 17, 4, 1, 1, 1, 0, 1, 1), true},     // pointwise, 17 columns
        {make_conv(1, 3, 1, 17, 4, 3, 3, 1, 1, 1, 1), true},     // im2col, 17 columns
        {make_conv(1, 4, 29, 27, 6, 3, 5, 1, 2, 1, 1), true},    // im2col, many columns
        {make_conv(1, 24, 9, 9, 24, 1, 1, 1, 0, 1, 1), false},   // pointwise, 81 columns
        {make_conv(2, 6, 5, 7, 6, 3, 3, 2, 1, 1, 1), true},      // batch 2: items 2 vs 3 threads
        {make_conv(1, 6, 11, 9, 4, 3, 3, 1, 1, 2, 2), true},     // groups 2 < 3 threads
        {make_conv(1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1), true},      // a single pixel
        {make_conv(1, 2, 1, 1, 3, 3, 3, 3, 1, 1, 1), false},     // 1x1 input, all padding but one tap
        {make_conv(3, 16, 7, 7, 16, 1, 1, 2, 0, 1, 1), false},   // 1x1 stride 2 (downsample)
        {make_conv(1, 3, 29, 29, 8, 7, 7, 2, 3, 1, 1), false},   // ResNet stem, odd input
    };
    int index = 0;
    for (const Case& c : cases) check_conv(c.p, c.bias, "split#" + std::to_string(index++), &paths);
    CHECK(paths.split_rows >= 2);
    CHECK(paths.split_columns >= 4);
    CHECK(paths.split_pointwise >= 2);
    CHECK(paths.split_im2col >= 2);
}

TEST_CASE("conv2d: the Conv2d layer gives the same result on both backends") {
    const DetStream stream(7, "test_conv2d layer configurations");
    uint64_t i = 0;
    for (int index = 0; index < 24; ++index) {
        bool bias = false;
        const Conv2dParams p = random_conv(stream, &i, index, &bias);
        const std::string key = "layer#" + std::to_string(index);
        INFO("Conv2d " << key << ": " << describe(p, bias));
        Conv2d conv(p.c, p.oc, Size2(p.kh, p.kw), Size2(p.stride_h, p.stride_w),
                    Size2(p.pad_h, p.pad_w), Size2(p.dil_h, p.dil_w), p.groups, bias);
        fill_parameters(conv, key);
        REQUIRE(conv.named_parameters().size() == (bias ? 2u : 1u));
        const Tensor x = random_tensor({p.n, p.c, p.h, p.w}, key + ".x");
        const Tensor ref = conv(x, RunOptions{Backend::Reference, 1});
        REQUIRE(ref.shape() == Shape{p.n, p.oc, p.oh, p.ow});
        const Tensor bound = conv_error_bound(p, x, conv.weight(), conv.bias());
        for (int threads = 1; threads <= 3; ++threads) {
            INFO("threads " << threads);
            const Tensor y = conv(x, RunOptions{Backend::Cpu, threads});
            STRATA_REQUIRE_CMP(compare_bounded(y, ref, bound), "Conv2d cpu vs reference");
        }
    }
}

TEST_CASE("conv2d: Conv2d rejects a wrong channel count with the counts in the message") {
    Conv2d conv(64, 8, 3, 1, 1);
    const Tensor x = random_tensor({1, 3, 8, 8}, "conv.err.x");
    for (Backend backend : {Backend::Reference, Backend::Cpu}) {
        REQUIRE_THROWS_AS(conv(x, RunOptions{backend, 1}), Error);
        REQUIRE_THROWS_WITH(conv(x, RunOptions{backend, 1}),
                            Catch::Contains("expected 64 input channels, got 3"));
    }
}

TEST_CASE("conv2d: Conv2d rejects inputs smaller than the dilated kernel, accepts the smallest fit") {
    // 7x7 kernel, padding 1: the padded input must be at least 7 wide.
    Conv2d conv(3, 4, 7, 1, 1);
    REQUIRE_THROWS_WITH(conv(random_tensor({1, 3, 4, 9}, "conv.small.a")),
                        Catch::Contains("smaller than the kernel"));
    REQUIRE_THROWS_AS(conv(random_tensor({1, 3, 9, 4}, "conv.small.b")), Error);
    REQUIRE(conv(random_tensor({1, 3, 5, 5}, "conv.small.c")).shape() == Shape{1, 4, 1, 1});
    // kernel 3 dilated by 3 spans 7.
    Conv2d dilated(3, 4, 3, 1, 0, 3);
    REQUIRE_THROWS_AS(dilated(random_tensor({1, 3, 6, 7}, "conv.small.d")), Error);
    REQUIRE(dilated(random_tensor({1, 3, 7, 7}, "conv.small.e")).shape() == Shape{1, 4, 1, 1});
}

TEST_CASE("conv2d: Conv2d rejects 3-D input, an empty batch and non-float32 input") {
    Conv2d conv(3, 4, 3);
    REQUIRE_THROWS_WITH(conv(random_tensor({3, 8, 8}, "conv.3d")), Catch::Contains("4-D"));
    REQUIRE_THROWS_WITH(conv(Tensor::zeros({0, 3, 8, 8})), Catch::Contains("empty batch"));
    REQUIRE_THROWS_WITH(conv(Tensor::zeros({1, 3, 8, 8}, DType::Float16)),
                        Catch::Contains("float32"));
    REQUIRE_THROWS_AS(conv(Tensor()), Error);
}

TEST_CASE("conv2d: a non-contiguous input gives the result of its contiguous copy") {
    Conv2d conv(5, 6, Size2(3, 2), Size2(2, 1), 1);
    fill_parameters(conv, "conv.noncontig");
    // [1, 5, 9, 11] seen through swapped H/W strides of a [1, 5, 11, 9] buffer, at an offset.
    const Tensor base = random_tensor({2, 5, 11, 9}, "conv.noncontig.x");
    const Tensor x(base.storage(), 5 * 11 * 9 * sizeof(float), {1, 5, 9, 11}, {495, 99, 1, 9},
                   DType::Float32);
    REQUIRE_FALSE(x.is_contiguous());
    const Tensor copy = x.clone();
    REQUIRE(copy.is_contiguous());
    for (Backend backend : {Backend::Reference, Backend::Cpu}) {
        INFO("backend " << backend_name(backend));
        STRATA_REQUIRE_CMP(compare_bitwise(conv(x, RunOptions{backend, 2}), conv(copy, RunOptions{backend, 2})),
                           "strided vs contiguous");
    }
}

TEST_CASE("conv2d: the Conv2d constructor rejects groups that do not divide the channels") {
    REQUIRE_THROWS_WITH(Conv2d(6, 4, 3, 1, 0, 1, 4), Catch::Contains("divisible by groups"));
    REQUIRE_THROWS_AS(Conv2d(6, 5, 3, 1, 0, 1, 3), Error);  // out_channels 5 % 3
    REQUIRE_THROWS_AS(Conv2d(6, 6, 3, 1, 0, 1, 0), Error);
    REQUIRE_THROWS_AS(Conv2d(6, 6, 0), Error);
    REQUIRE_THROWS_AS(Conv2d(6, 6, 3, 0), Error);
    REQUIRE_THROWS_AS(Conv2d(6, 6, 3, 1, -1), Error);
    REQUIRE_NOTHROW(Conv2d(6, 12, 3, 1, 0, 1, 6));
}
