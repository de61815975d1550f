// Adaptive average pooling: cpu::adaptive_avg_pool2d (float32 sums) against the reference
// (double sums) on random input and output sizes, including outputs larger than the input, the
// AdaptiveAvgPool2d layer with both backends, and its input checks.
#include <cmath>
#include <sstream>

#include "kernels/adaptive_avg_pool2d.h"
#include "test_util.h"

using namespace strata;
using strata_test::compare_bitwise;
using strata_test::compare_bounded;
using strata_test::random_tensor;

namespace {

constexpr double kUnitRoundoff = 1.0 / 16777216.0;  // 2^-24, float32

std::string describe(const AdaptiveAvgPool2dParams& p) {
    std::ostringstream os;
    os << "x [" << p.n << ", " << p.c << ", " << p.h << ", " << p.w << "] -> " << p.oh << "x" << p.ow;
    return os.str();
}

// Tolerance, per element. cpu sums the A values of a window in float32 (error at most
// (A-1) * u * sum|x|, u = 2^-24) and divides by A (one more rounding); the reference sums in
// double and rounds once. So |cpu - ref| <= (A + 2) * u * mean|x| over the window. A is bounded
// by (ceil(h/oh) + 1) * (ceil(w/ow) + 1), and mean|x| is the reference pooling of |x|.
Tensor pool_error_bound(const AdaptiveAvgPool2dParams& p, const Tensor& x) {
    Tensor ax = x.clone();
    for (int64_t i = 0; i < ax.numel(); ++i) ax.data<float>()[i] = std::fabs(ax.data<float>()[i]);
    Tensor m = Tensor::empty({p.n, p.c, p.oh, p.ow});
    reference::adaptive_avg_pool2d(p, ax.data<float>(), m.data<float>());
    const double area = static_cast<double>(((p.h + p.oh - 1) / p.oh + 1) * ((p.w + p.ow - 1) / p.ow + 1));
    for (int64_t i = 0; i < m.numel(); ++i)
        m.data<float>()[i] = static_cast<float>((area + 2) * kUnitRoundoff * m.data<float>()[i] * (1 + 1e-6));
    return m;
}

int64_t draw(const DetStream& s, uint64_t* i, int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(s.u((*i)++) * static_cast<double>(hi - lo + 1));
}

}  // namespace

TEST_CASE("adaptive_avg_pool2d: cpu kernel matches the reference on 200 random configurations") {
    const DetStream stream(17, "test_adaptive_avg_pool2d configurations");
    uint64_t i = 0;
    for (int index = 0; index < 200; ++index) {
        AdaptiveAvgPool2dParams p{};
        p.n = draw(stream, &i, 1, 3);
        p.c = draw(stream, &i, 1, 8);
        p.h = draw(stream, &i, 1, 29);
        p.w = draw(stream, &i, 1, 29);
        // Output 1x1 (ResNet's head) in a quarter of the cases, else 1..h+3 (larger than the
        // input too: windows then overlap and repeat values).
        const bool head = index % 4 == 0;
        p.oh = head ? 1 : draw(stream, &i, 1, p.h + 3);
        p.ow = head ? 1 : draw(stream, &i, 1, p.w + 3);
        const std::string key = "avg#" + std::to_string(index);
        INFO("adaptive_avg_pool2d " << key << ": " << describe(p));
        const Tensor x = random_tensor({p.n, p.c, p.h, p.w}, key, -1, 3);
        Tensor ref = Tensor::empty({p.n, p.c, p.oh, p.ow});
        reference::adaptive_avg_pool2d(p, x.data<float>(), ref.data<float>());
        const Tensor bound = pool_error_bound(p, x);
        // Planes are independent; thread counts 1, 2, 3 in turn keep the test fast.
        const int threads = 1 + index % 3;
        INFO("threads " << threads);
        Tensor y = Tensor::full({p.n, p.c, p.oh, p.ow}, NAN);  // an unwritten output cannot pass
        cpu::adaptive_avg_pool2d(p, x.data<float>(), y.data<float>(), threads);
        STRATA_REQUIRE_CMP(compare_bounded(y, ref, bound), "cpu vs reference");
        // An output the size of the input has one-value windows: the identity, exactly.
        if (p.oh == p.h && p.ow == p.w) STRATA_REQUIRE_CMP(compare_bitwise(ref, x), "identity pooling");
    }
}

TEST_CASE("adaptive_avg_pool2d: the layer gives the same result on both backends") {
    struct Case {
        Size2 out;
        Shape x;
    };
    const Case cases[] = {{1, {2, 512, 7, 7}}, {{3, 5}, {1, 3, 7, 11}}, {{4, 6}, {1, 2, 3, 3}}, {7, {1, 5, 29, 1}}};
    int index = 0;
    for (const Case& c : cases) {
        const std::string key = "avglayer#" + std::to_string(index++);
        AdaptiveAvgPool2d pool(c.out);
        INFO("AdaptiveAvgPool2d(" << pool.extra_repr() << ") on " << shape_str(c.x));
        const Tensor x = random_tensor(c.x, key);
        const Tensor ref = pool(x, RunOptions{Backend::Reference, 1});
        const AdaptiveAvgPool2dParams p{c.x[0], c.x[1], c.x[2], c.x[3], c.out.h, c.out.w};
        REQUIRE(ref.shape() == Shape{p.n, p.c, p.oh, p.ow});
        const Tensor bound = pool_error_bound(p, x);
        for (int threads = 1; threads <= 3; ++threads) {
            INFO("threads " << threads);
            STRATA_REQUIRE_CMP(compare_bounded(pool(x, RunOptions{Backend::Cpu, threads}), ref, bound),
                               "AdaptiveAvgPool2d cpu vs reference");
        }
    }
}

TEST_CASE("adaptive_avg_pool2d: the layer rejects bad sizes, 3-D input and an empty batch") {
    REQUIRE_THROWS_AS(AdaptiveAvgPool2d(0), Error);
    REQUIRE_THROWS_AS(AdaptiveAvgPool2d(Size2(1, -1)), Error);
    AdaptiveAvgPool2d pool(1);
    REQUIRE_THROWS_WITH(pool(random_tensor({3, 8, 8}, "avg.3d")), Catch::Contains("4-D"));
    REQUIRE_THROWS_WITH(pool(Tensor::zeros({0, 3, 8, 8})), Catch::Contains("empty batch"));
    // LIBRARY BUG (core/tensor.cpp): Tensor::is_contiguous() (line ~153) multiplies the expected
    // stride by a 0 extent while contiguous_strides() (line ~58) counts a 0 extent as 1, so a
    // fresh zeros({1, 3, 0, 8}) is "non-contiguous", and contiguous()/clone() of it throw "copy
    // into a non-contiguous tensor" before the layer's own check can say "empty spatial size".
    REQUIRE_THROWS_WITH(pool(Tensor::zeros({1, 3, 0, 8})), Catch::Contains("empty spatial"));
}

TEST_CASE("adaptive_avg_pool2d: a non-contiguous input gives the result of its contiguous copy") {
    AdaptiveAvgPool2d pool(Size2(2, 3));
    const Tensor base = random_tensor({3, 9, 7, 4}, "avg.nc");  // NHWC buffer
    const Tensor x(base.storage(), 0, {3, 4, 9, 7}, {252, 1, 28, 4}, DType::Float32);
    REQUIRE_FALSE(x.is_contiguous());
    for (Backend backend : {Backend::Reference, Backend::Cpu}) {
        INFO("backend " << backend_name(backend));
        STRATA_REQUIRE_CMP(compare_bitwise(pool(x, RunOptions{backend, 2}), pool(x.clone(), RunOptions{backend, 2})),
                           "strided vs contiguous");
    }
}
