// The fast convolution (packed weights, register-blocked microkernel, fused epilogue) against
// the reference convolution followed by the reference epilogue, on many shapes, at every CPU
// level this machine supports (kernels/cpu/isa.h: AVX-512, AVX2, baseline), each level forced
// explicitly, so one run covers all of them.
//
// Tolerance: both sum the same K = (c/groups)*kh*kw products; the reference in double, the fast
// path in float32 FMAs in k order. The float32 error bound is about K * 2^-24 * sum|x*w|; with
// inputs and weights in [-1, 1] and K <= 600 here, 1e-5 * K-scaled is loose enough yet a wrong
// tap, offset or epilogue changes values by O(1). We use max|diff| <= 2e-6 * K * max(1, max|ref|).
#include <random>

#include "kernels/conv2d.h"
#include "kernels/relu.h"
#include "test_util.h"

using namespace strata;

namespace {

struct Case {
    Conv2dParams p;
    bool bias, residual, relu;
    int threads;
};

std::string describe(const Case& c) {
    const auto& p = c.p;
    std::ostringstream os;
    os << "n=" << p.n << " c=" << p.c << " h=" << p.h << " w=" << p.w << " oc=" << p.oc << " k=" << p.kh << "x" << p.kw
       << " s=" << p.stride_h << "x" << p.stride_w << " pad=" << p.pad_h << "x" << p.pad_w << " d=" << p.dil_h << "x"
       << p.dil_w << " g=" << p.groups << " bias=" << c.bias << " residual=" << c.residual << " relu=" << c.relu
       << " threads=" << c.threads;
    return os.str();
}

void run_case(const Case& c, int index) {
    Conv2dParams p = c.p;
    REQUIRE(p.compute_output_size());
    const std::string key = "case" + std::to_string(index);
    const int64_t K = (p.c / p.groups) * p.kh * p.kw;
    const Tensor x = strata_test::random_tensor({p.n, p.c, p.h, p.w}, key + "x");
    const Tensor w = strata_test::random_tensor({p.oc, p.c / p.groups, p.kh, p.kw}, key + "w");
    const Tensor b = strata_test::random_tensor({p.oc}, key + "b");
    const Tensor r = strata_test::random_tensor({p.n, p.oc, p.oh, p.ow}, key + "r");

    Tensor expected = Tensor::empty({p.n, p.oc, p.oh, p.ow});
    reference::conv2d(p, x.data<float>(), w.data<float>(), c.bias ? b.data<float>() : nullptr, expected.data<float>());
    if (c.residual) reference::add(expected.data<float>(), r.data<float>(), expected.data<float>(), expected.numel(), c.relu);
    else if (c.relu) reference::relu(expected.data<float>(), expected.data<float>(), expected.numel());

    const cpu::PackedConv2dWeight packed = cpu::pack_conv2d_weight(p.oc, K, p.groups, w.data<float>());
    Conv2dEpilogue e;
    e.bias = c.bias ? b.data<float>() : nullptr;
    e.residual = c.residual ? r.data<float>() : nullptr;
    e.relu = c.relu;
    for (const CpuLevel level : strata_test::cpu_levels()) {
        Tensor actual = Tensor::full({p.n, p.oc, p.oh, p.ow}, 12345.0f);  // every value must be written
        cpu::conv2d_packed(p, x.data<float>(), packed, e, actual.data<float>(), c.threads, level);
        const auto cmp = strata_test::compare(actual, expected, 0.0);
        const double tol = 2e-6 * static_cast<double>(K) * std::max(1.0, cmp.max_abs_ref);
        INFO(describe(c) << " cpu=" << cpu_level_name(level));
        INFO("max|diff| " << cmp.max_abs_diff << " tol " << tol << " " << cmp.message);
        REQUIRE(cmp.max_abs_diff <= tol);
    }
}

Conv2dParams make(int64_t n, int64_t c, int64_t h, int64_t w, int64_t oc, int64_t kh, int64_t kw, int64_t s,
                  int64_t pad, int64_t d, int64_t g) {
    Conv2dParams p{};
    p.n = n; p.c = c; p.h = h; p.w = w; p.oc = oc; p.kh = kh; p.kw = kw;
    p.stride_h = p.stride_w = s; p.pad_h = p.pad_w = pad; p.dil_h = p.dil_w = d; p.groups = g;
    return p;
}

}  // namespace

TEST_CASE("conv2d_packed: ResNet's own shapes (at reduced spatial size) with every epilogue") {
    const std::vector<Conv2dParams> shapes = {
        make(1, 3, 37, 41, 64, 7, 7, 2, 3, 1, 1),    // stem conv1 (im2col path)
        make(1, 64, 14, 14, 64, 3, 3, 1, 1, 1, 1),   // layer1 3x3 (padded in-place path)
        make(2, 64, 14, 14, 128, 3, 3, 2, 1, 1, 1),  // layer2.0.conv1 (stride 2)
        make(2, 64, 14, 14, 128, 1, 1, 2, 0, 1, 1),  // downsample 1x1 stride 2
        make(1, 128, 7, 7, 128, 3, 3, 1, 1, 1, 1),   // layer4-like: 7x7 with junk columns
        make(3, 40, 9, 11, 24, 1, 1, 1, 0, 1, 1),    // 1x1 stride 1 (read in place)
        // im2col larger than 1 MB: built block by block per task (here 147 x 3000 floats)
        make(1, 3, 120, 100, 64, 7, 7, 2, 3, 1, 1),
        // batches with an image per thread: split by image at 2 threads (batch_split.h)
        make(4, 64, 14, 14, 64, 3, 3, 1, 1, 1, 1),
        make(2, 3, 120, 100, 24, 7, 7, 2, 3, 1, 1),
        make(8, 16, 9, 9, 40, 1, 1, 1, 0, 1, 1),
    };
    int index = 0;
    for (const auto& p : shapes)
        for (int variant = 0; variant < 4; ++variant)
            for (int threads : {1, 2})
                run_case({p, variant != 0, variant >= 2, variant % 2 == 1, threads}, index++);
}

TEST_CASE("conv2d_packed: random shapes, strides, paddings, dilations, groups and tails") {
    std::mt19937 rng(20261128);
    auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    int done = 0;
    for (int i = 0; done < 150 && i < 10000; ++i) {
        const int64_t g = std::vector<int64_t>{1, 1, 1, 2, 3}[static_cast<size_t>(pick(0, 4))];
        Conv2dParams p{};
        p.n = pick(1, 3);
        p.c = g * pick(1, 8);
        p.oc = g * pick(1, 21);  // odd counts exercise the 8-row tail
        p.groups = g;
        p.kh = pick(1, 5); p.kw = pick(1, 5);
        p.stride_h = pick(1, 3); p.stride_w = pick(1, 3);
        if (pick(0, 2) == 0) p.stride_w = p.stride_h = 1;  // favour the in-place path
        p.pad_h = pick(0, 3); p.pad_w = pick(0, 3);
        p.dil_h = pick(1, 2); p.dil_w = pick(1, 2);
        p.h = pick(1, 29); p.w = pick(1, 70);  // widths past 48 and 64 exercise several panels
        if (!p.compute_output_size()) continue;
        run_case({p, pick(0, 1) == 1, pick(0, 1) == 1, pick(0, 1) == 1, pick(1, 3)}, 1000 + done);
        ++done;
    }
    REQUIRE(done == 150);
}

// Winograd F(2x2,3x3) and F(4x4,3x3) vs the reference. Their error is larger than the direct
// kernel's: the input transform scales by up to 5 (F4) and the output transform by up to 8, and
// each transformed product is rounded in float32. We measure max|diff| / max|ref| and require
// <= 1e-5 for F2 and <= 1e-4 for F4 (the documented fast-path budget is 1e-3 end to end).
TEST_CASE("conv2d_winograd: F(2,3) and F(4,3) match the reference on 3x3 stride-1 shapes") {
    std::mt19937 rng(7);
    auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    int done = 0;
    for (int i = 0; i < 60; ++i) {
        Conv2dParams p{};
        p.n = pick(1, 6);  // batches of 2+ may be split by image
        p.c = pick(1, 40); p.oc = pick(1, 70); p.groups = 1;
        p.kh = p.kw = 3; p.stride_h = p.stride_w = 1; p.dil_h = p.dil_w = 1;
        p.pad_h = pick(0, 2); p.pad_w = pick(0, 2);
        p.h = pick(1, 30); p.w = pick(1, 37);
        // Every 5th shape is wide (16+ tiles per row, for F(4,3) too); images at most 4 tiles
        // wide take the flat transform groups, wider ones the row groups.
        if (i % 5 == 0) p.w = pick(66, 140);
        if (!p.compute_output_size()) continue;
        REQUIRE(cpu::winograd_applicable(p));
        const std::string key = "wino" + std::to_string(i);
        const Tensor x = strata_test::random_tensor({p.n, p.c, p.h, p.w}, key + "x");
        const Tensor w = strata_test::random_tensor({p.oc, p.c, 3, 3}, key + "w");
        const Tensor b = strata_test::random_tensor({p.oc}, key + "b");
        const Tensor r = strata_test::random_tensor({p.n, p.oc, p.oh, p.ow}, key + "r");
        const bool use_res = pick(0, 1) == 1, relu = pick(0, 1) == 1;
        Tensor expected = Tensor::empty({p.n, p.oc, p.oh, p.ow});
        reference::conv2d(p, x.data<float>(), w.data<float>(), b.data<float>(), expected.data<float>());
        if (use_res) reference::add(expected.data<float>(), r.data<float>(), expected.data<float>(), expected.numel(), relu);
        else if (relu) reference::relu(expected.data<float>(), expected.data<float>(), expected.numel());
        const int threads = pick(1, 3);
        for (int m : {2, 4}) {
            const auto packed = cpu::pack_conv2d_winograd(m, p.oc, p.c, w.data<float>());
            Conv2dEpilogue e;
            e.bias = b.data<float>();
            e.residual = use_res ? r.data<float>() : nullptr;
            e.relu = relu;
            for (const CpuLevel level : strata_test::cpu_levels()) {
                Tensor actual = Tensor::full({p.n, p.oc, p.oh, p.ow}, 12345.0f);
                cpu::conv2d_winograd(p, x.data<float>(), packed, e, actual.data<float>(), threads, level);
                INFO("F(" << m << ",3) n=" << p.n << " c=" << p.c << " oc=" << p.oc << " h=" << p.h << " w=" << p.w
                          << " pad=" << p.pad_h << "x" << p.pad_w << " residual=" << use_res << " relu=" << relu
                          << " cpu=" << cpu_level_name(level));
                STRATA_REQUIRE_CLOSE(actual, expected, m == 2 ? 1e-5 : 1e-4, "winograd");
            }
        }
        ++done;
    }
    REQUIRE(done >= 40);
}

// Packing with a row scale (a BatchNorm folded in as the weights are packed) gives exactly the
// packed form of the pre-scaled weights: float(w * scale[o]) either way, so bitwise equal outputs.
TEST_CASE("conv2d_packed / winograd: packing with row_scale equals packing pre-scaled weights, bit for bit") {
    const Conv2dParams p = make(2, 24, 13, 11, 20, 3, 3, 1, 1, 1, 1);
    Conv2dParams q = p;
    REQUIRE(q.compute_output_size());
    const Tensor x = strata_test::random_tensor({q.n, q.c, q.h, q.w}, "rowscale.x");
    const Tensor w = strata_test::random_tensor({q.oc, q.c, 3, 3}, "rowscale.w");
    std::vector<double> scale(static_cast<size_t>(q.oc));
    for (int64_t o = 0; o < q.oc; ++o) scale[static_cast<size_t>(o)] = 0.37 + 0.11 * static_cast<double>(o);
    Tensor scaled = w.clone();
    const int64_t K = q.c * 9;
    for (int64_t o = 0; o < q.oc; ++o)
        for (int64_t k = 0; k < K; ++k)
            scaled.data<float>()[o * K + k] = static_cast<float>(w.data<float>()[o * K + k] * scale[static_cast<size_t>(o)]);
    const Conv2dEpilogue e;
    Tensor a = Tensor::empty({q.n, q.oc, q.oh, q.ow}), b = Tensor::empty({q.n, q.oc, q.oh, q.ow});
    cpu::conv2d_packed(q, x.data<float>(), cpu::pack_conv2d_weight(q.oc, K, 1, w.data<float>(), scale.data()), e,
                       a.data<float>(), 2);
    cpu::conv2d_packed(q, x.data<float>(), cpu::pack_conv2d_weight(q.oc, K, 1, scaled.data<float>()), e,
                       b.data<float>(), 2);
    STRATA_REQUIRE_CLOSE(a, b, 0.0, "direct");
    for (int m : {2, 4}) {
        cpu::conv2d_winograd(q, x.data<float>(), cpu::pack_conv2d_winograd(m, q.oc, q.c, w.data<float>(), scale.data()),
                             e, a.data<float>(), 2);
        cpu::conv2d_winograd(q, x.data<float>(), cpu::pack_conv2d_winograd(m, q.oc, q.c, scaled.data<float>()), e,
                             b.data<float>(), 2);
        STRATA_REQUIRE_CLOSE(a, b, 0.0, "winograd");
    }
}
