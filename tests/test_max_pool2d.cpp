// Max pooling: cpu::max_pool2d (clipped windows) against reference::max_pool2d (every tap
// tested) on a few hundred random configurations, NaN propagation, the MaxPool2d layer with
// both backends, and its input checks. Pooling only selects values: every comparison is exact,
// bit for bit.
#include <cmath>
#include <limits>
#include <sstream>

#include "kernels/max_pool2d.h"
#include "test_util.h"

using namespace strata;
using strata_test::compare_bitwise;
using strata_test::random_tensor;

namespace {

std::string describe(const MaxPool2dParams& p) {
    std::ostringstream os;
    os << "x [" << p.n << ", " << p.c << ", " << p.h << ", " << p.w << "], kernel (" << p.kh << ", "
       << p.kw << "), stride (" << p.stride_h << ", " << p.stride_w << "), padding (" << p.pad_h
       << ", " << p.pad_w << "), dilation (" << p.dil_h << ", " << p.dil_w << "), ceil_mode "
       << p.ceil_mode << ", output " << p.oh << "x" << p.ow;
    return os.str();
}

int64_t draw(const DetStream& s, uint64_t* i, int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(s.u((*i)++) * static_cast<double>(hi - lo + 1));
}

// batch 1..3, channels 1..8, kernel 1..5 per side, stride 1..3, padding 0..kernel/2 (torch's
// limit), dilation 1..3, ceil_mode or not, spatial 1..29 (mostly odd).
MaxPool2dParams random_pool(const DetStream& s, uint64_t* i) {
    for (;;) {
        MaxPool2dParams p{};
        p.n = draw(s, i, 1, 3);
        p.c = draw(s, i, 1, 8);
        p.kh = draw(s, i, 1, 5);
        p.kw = draw(s, i, 1, 5);
        p.stride_h = draw(s, i, 1, 3);
        p.stride_w = draw(s, i, 1, 3);
        p.pad_h = draw(s, i, 0, p.kh / 2);
        p.pad_w = draw(s, i, 0, p.kw / 2);
        p.dil_h = draw(s, i, 1, 3);
        p.dil_w = draw(s, i, 1, 3);
        p.ceil_mode = draw(s, i, 0, 1) == 1;
        p.h = draw(s, i, 1, 29) | (draw(s, i, 0, 3) != 0 ? 1 : 0);
        p.w = draw(s, i, 1, 29) | (draw(s, i, 0, 3) != 0 ? 1 : 0);
        if (p.compute_output_size()) return p;
    }
}

// Input values: uniform, or all negative (so that a padded position that wrongly counts as 0
// would win), with some +-inf.
Tensor pool_input(const MaxPool2dParams& p, const std::string& key, bool negative) {
    Tensor x = random_tensor({p.n, p.c, p.h, p.w}, key, negative ? -3.0 : -1.0, negative ? -0.5 : 1.0);
    const DetStream s(3, key + ".inf");
    float* px = x.data<float>();
    for (int64_t i = 0; i < x.numel(); ++i) {
        const double u = s.u(static_cast<uint64_t>(i));
        if (u < 0.01) px[i] = std::numeric_limits<float>::infinity();
        else if (u < 0.03) px[i] = -std::numeric_limits<float>::infinity();
    }
    return x;
}

Tensor run_reference(const MaxPool2dParams& p, const Tensor& x) {
    Tensor y = Tensor::full({p.n, p.c, p.oh, p.ow}, 12345.0f);
    reference::max_pool2d(p, x.data<float>(), y.data<float>());
    return y;
}

Tensor run_cpu(const MaxPool2dParams& p, const Tensor& x, int threads) {
    Tensor y = Tensor::full({p.n, p.c, p.oh, p.ow}, 12345.0f);  // an unwritten output cannot pass
    cpu::max_pool2d(p, x.data<float>(), y.data<float>(), threads);
    return y;
}

MaxPool2dParams make_pool(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t s,
                          int64_t pad, int64_t dil, bool ceil_mode) {
    MaxPool2dParams p{n, c, h, w, k, k, s, s, pad, pad, dil, dil, ceil_mode, 0, 0};
    REQUIRE(p.compute_output_size());
    return p;
}

}  // namespace

TEST_CASE("max_pool2d: cpu kernel equals the reference bit for bit on 300 random configurations") {
    const DetStream stream(99, "test_max_pool2d configurations");
    uint64_t i = 0;
    int ceil_cases = 0, padded_cases = 0, dilated_cases = 0;
    for (int index = 0; index < 300; ++index) {
        const MaxPool2dParams p = random_pool(stream, &i);
        ceil_cases += p.ceil_mode;
        padded_cases += p.pad_h + p.pad_w > 0;
        dilated_cases += p.dil_h + p.dil_w > 2;
        const std::string key = "pool#" + std::to_string(index);
        const Tensor x = pool_input(p, key, index % 3 == 0);
        const Tensor ref = run_reference(p, x);
        // Planes are independent; thread counts 1, 2, 3 in turn keep the test fast (an
        // oversubscribed OpenMP region costs milliseconds on a 2-core machine).
        const int threads = 1 + index % 3;
        INFO("max_pool2d " << key << ": " << describe(p) << ", threads " << threads);
        STRATA_REQUIRE_CMP(compare_bitwise(run_cpu(p, x, threads), ref), "cpu vs reference");
    }
    CHECK(ceil_cases >= 50);
    CHECK(padded_cases >= 50);
    CHECK(dilated_cases >= 50);
}

TEST_CASE("max_pool2d: a NaN anywhere in a window makes that output NaN, on both backends") {
    // torch: F.max_pool2d(torch.tensor([[[[nan, 1., 2.]]]]), (1, 3)) == [[[[nan]]]], and the same
    // with the NaN in any position of the window.
    for (int pos = 0; pos < 3; ++pos) {
        float x[3] = {1.0f, 2.0f, 0.5f};
        x[pos] = std::numeric_limits<float>::quiet_NaN();
        MaxPool2dParams p{1, 1, 1, 3, 1, 3, 1, 3, 0, 0, 1, 1, false, 0, 0};
        REQUIRE(p.compute_output_size());
        REQUIRE(p.oh * p.ow == 1);
        float ref = 0, y = 0;
        reference::max_pool2d(p, x, &ref);
        cpu::max_pool2d(p, x, &y, 1);
        INFO("NaN at window position " << pos << ": reference " << ref << ", cpu " << y);
        CHECK(std::isnan(ref));
        // Guards a bug this test found: cpu's `if (!(v <= best)) best = v;` let the next tap
        // replace a NaN (!(v <= NaN) is true), so NaN survived only as a window's last tap.
        CHECK(std::isnan(y));
    }
}

TEST_CASE("max_pool2d: cpu kernel equals the reference with NaNs in the input") {
    // The same configurations as torchvision's ResNet stem pool and a few others, with 5% NaN.
    const MaxPool2dParams configs[] = {
        make_pool(1, 3, 16, 16, 3, 2, 1, 1, false), make_pool(2, 2, 15, 17, 3, 2, 1, 1, false),
        make_pool(1, 2, 10, 13, 3, 2, 0, 1, true),  make_pool(1, 2, 9, 10, 3, 1, 1, 2, false),
        make_pool(1, 2, 7, 9, 2, 2, 0, 1, false),
    };
    int index = 0;
    for (const MaxPool2dParams& p : configs) {
        const std::string key = "poolnan#" + std::to_string(index++);
        Tensor x = random_tensor({p.n, p.c, p.h, p.w}, key);
        const DetStream s(4, key + ".nan");
        for (int64_t i = 0; i < x.numel(); ++i)
            if (s.u(static_cast<uint64_t>(i)) < 0.05) x.data<float>()[i] = std::numeric_limits<float>::quiet_NaN();
        const Tensor ref = run_reference(p, x);
        for (int threads = 1; threads <= 3; ++threads) {
            INFO("max_pool2d " << key << ": " << describe(p) << ", threads " << threads);
            STRATA_REQUIRE_CMP(compare_bitwise(run_cpu(p, x, threads), ref), "cpu vs reference, NaN input");
        }
    }
}

TEST_CASE("max_pool2d: the MaxPool2d layer gives the same result on both backends") {
    struct Case {
        Size2 k, s, pad, dil;
        bool ceil_mode;
        Shape x;
    };
    const Case cases[] = {
        {3, 2, 1, 1, false, {1, 64, 29, 31}},        // ResNet stem pool, odd input
        {2, 0, 0, 1, false, {2, 3, 7, 9}},           // stride defaults to kernel_size
        {{2, 3}, {2, 1}, {1, 1}, 1, true, {1, 3, 8, 11}},
        {3, 1, 1, 2, false, {3, 2, 9, 10}},
        {3, 2, 1, 1, true, {1, 4, 1, 1}},            // 1x1 input: the window holds one value
    };
    int index = 0;
    for (const Case& c : cases) {
        const std::string key = "poollayer#" + std::to_string(index++);
        MaxPool2d pool(c.k, c.s, c.pad, c.dil, c.ceil_mode);
        INFO("MaxPool2d(" << pool.extra_repr() << ") on " << shape_str(c.x));
        const Tensor x = random_tensor(c.x, key);
        const Tensor ref = pool(x, RunOptions{Backend::Reference, 1});
        for (int threads = 1; threads <= 3; ++threads) {
            INFO("threads " << threads);
            STRATA_REQUIRE_CMP(compare_bitwise(pool(x, RunOptions{Backend::Cpu, threads}), ref),
                               "MaxPool2d cpu vs reference");
        }
    }
}

TEST_CASE("max_pool2d: MaxPool2d rejects padding above half the kernel, as torch") {
    REQUIRE_THROWS_WITH(MaxPool2d(3, 2, 2), Catch::Contains("at most half of kernel_size"));
    REQUIRE_THROWS_AS(MaxPool2d(Size2(4, 2), 1, Size2(2, 2)), Error);  // 2 > 2/2 in width
    REQUIRE_THROWS_AS(MaxPool2d(2, 1, -1), Error);
    REQUIRE_THROWS_AS(MaxPool2d(0), Error);
    REQUIRE_NOTHROW(MaxPool2d(Size2(4, 2), 1, Size2(2, 1)));
}

TEST_CASE("max_pool2d: MaxPool2d rejects 3-D input, an empty batch and too small an input") {
    MaxPool2d pool(3, 2);
    REQUIRE_THROWS_WITH(pool(random_tensor({3, 8, 8}, "pool.3d")), Catch::Contains("4-D"));
    REQUIRE_THROWS_WITH(pool(Tensor::zeros({0, 3, 8, 8})), Catch::Contains("empty batch"));
    REQUIRE_THROWS_WITH(pool(random_tensor({1, 3, 2, 8}, "pool.small")), Catch::Contains("too small"));
    REQUIRE(pool(random_tensor({1, 3, 3, 3}, "pool.fit")).shape() == Shape{1, 3, 1, 1});
}

TEST_CASE("max_pool2d: a non-contiguous input gives the result of its contiguous copy") {
    MaxPool2d pool(3, 2, 1);
    const Tensor base = random_tensor({1, 2, 13, 11}, "pool.nc");
    const Tensor x(base.storage(), 0, {1, 2, 11, 13}, {286, 143, 1, 11}, DType::Float32);
    REQUIRE_FALSE(x.is_contiguous());
    for (Backend backend : {Backend::Reference, Backend::Cpu}) {
        INFO("backend " << backend_name(backend));
        STRATA_REQUIRE_CMP(compare_bitwise(pool(x, RunOptions{backend, 2}), pool(x.clone(), RunOptions{backend, 2})),
                           "strided vs contiguous");
    }
}
