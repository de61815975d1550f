// BatchNorm (inference): cpu::batch_norm (folded scale/shift, float32 multiply-add) against
// reference::batch_norm (the formula in double) on random shapes, statistics and eps, the
// BatchNorm2d layer with both backends, and the layer's input checks.
#include <cmath>
#include <sstream>

#include "kernels/batch_norm.h"
#include "test_util.h"

using namespace strata;
using strata_test::compare_bitwise;
using strata_test::compare_bounded;
using strata_test::random_tensor;

namespace {

constexpr double kUnitRoundoff = 1.0 / 16777216.0;  // 2^-24, float32

std::string describe(const BatchNormParams& p) {
    std::ostringstream os;
    os << "x [" << p.n << ", " << p.c << ", hw " << p.hw << "], eps " << p.eps;
    return os.str();
}

// Tolerance, per element. cpu folds the statistics into s = w / sqrt(var + eps) and
// t = b - mean * s (computed in double, each rounded once to float32), then computes x*s + t in
// float32: two more roundings. Each of the four roundings moves the result by at most
// u * (|x*s| + |t|) (u = 2^-24), and the reference (double, rounded once) by at most u*|y|, which
// is no larger. So |cpu - ref| <= 5 * u * (|x*s| + |b| + |mean*s|). A few ulps: tight.
Tensor bn_error_bound(const BatchNormParams& p, const Tensor& x, const Tensor& w, const Tensor& b,
                      const Tensor& mean, const Tensor& var) {
    Tensor bound = Tensor::empty(x.shape());
    const float* px = x.data<float>();
    float* pb = bound.data<float>();
    for (int64_t n = 0; n < p.n; ++n)
        for (int64_t c = 0; c < p.c; ++c) {
            const double s = w.data<float>()[c] / std::sqrt(static_cast<double>(var.data<float>()[c]) + p.eps);
            const double t = std::fabs(b.data<float>()[c]) + std::fabs(mean.data<float>()[c] * s);
            for (int64_t i = 0; i < p.hw; ++i) {
                const int64_t k = (n * p.c + c) * p.hw + i;
                pb[k] = static_cast<float>(5 * kUnitRoundoff * (std::fabs(px[k] * s) + t) * (1 + 1e-6));
            }
        }
    return bound;
}

int64_t draw(const DetStream& s, uint64_t* i, int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(s.u((*i)++) * static_cast<double>(hi - lo + 1));
}

}  // namespace

TEST_CASE("batch_norm: cpu kernel matches the reference on 120 random configurations") {
    const DetStream stream(11, "test_batch_norm configurations");
    uint64_t i = 0;
    const double eps_choices[] = {1e-5, 1e-3, 0.1};
    for (int index = 0; index < 120; ++index) {
        BatchNormParams p{};
        p.n = draw(stream, &i, 1, 3);
        p.c = draw(stream, &i, 1, 24);
        p.hw = draw(stream, &i, 1, 29) * draw(stream, &i, 1, 29);
        p.eps = eps_choices[draw(stream, &i, 0, 2)];
        const std::string key = "bn#" + std::to_string(index);
        INFO("batch_norm " << key << ": " << describe(p));
        const Tensor x = random_tensor({p.n, p.c, p.hw}, key + ".x", -4, 4);
        const Tensor w = random_tensor({p.c}, key + ".w", -1.5, 1.5);
        const Tensor b = random_tensor({p.c}, key + ".b");
        const Tensor mean = random_tensor({p.c}, key + ".mean", -2, 2);
        // Variances from 1e-4 (below eps for most eps: eps matters) to 3.
        Tensor var = random_tensor({p.c}, key + ".var", 0, 1);
        for (int64_t c = 0; c < p.c; ++c) var.data<float>()[c] = static_cast<float>(1e-4 * std::pow(3e4, var.data<float>()[c]));
        Tensor ref = Tensor::empty(x.shape());
        reference::batch_norm(p, x.data<float>(), w.data<float>(), b.data<float>(), mean.data<float>(),
                              var.data<float>(), ref.data<float>());
        const Tensor bound = bn_error_bound(p, x, w, b, mean, var);
        // Planes are independent; thread counts 1, 2, 3 in turn keep the test fast.
        const int threads = 1 + index % 3;
        INFO("threads " << threads);
        Tensor y = Tensor::full(x.shape(), NAN);  // an unwritten output cannot pass
        cpu::batch_norm(p, x.data<float>(), w.data<float>(), b.data<float>(), mean.data<float>(),
                        var.data<float>(), y.data<float>(), threads);
        STRATA_REQUIRE_CMP(compare_bounded(y, ref, bound), "cpu vs reference");
    }
}

TEST_CASE("batch_norm: the BatchNorm2d layer gives the same result on both backends") {
    struct Case {
        int64_t n, c, h, w;
        double eps = 1e-5;
    };
    const Case cases[] = {{1, 64, 7, 9}, {2, 3, 1, 1}, {3, 17, 13, 5, 1e-3}, {1, 1, 29, 27, 0.5}};
    int index = 0;
    for (const Case& cs : cases) {
        const std::string key = "bnlayer#" + std::to_string(index++);
        INFO("BatchNorm2d " << key << ": x [" << cs.n << ", " << cs.c << ", " << cs.h << ", " << cs.w
                            << "], eps " << cs.eps);
        BatchNorm2d bn(cs.c, cs.eps);
        REQUIRE(bn.eps() == cs.eps);
        Tensor(bn.named_parameters()[0].second).copy_from(random_tensor({cs.c}, key + ".w", 0.5, 1.5));
        Tensor(bn.named_parameters()[1].second).copy_from(random_tensor({cs.c}, key + ".b"));
        Tensor(bn.named_buffers()[0].second).copy_from(random_tensor({cs.c}, key + ".mean"));
        Tensor(bn.named_buffers()[1].second).copy_from(random_tensor({cs.c}, key + ".var", 0.001, 2));
        const Tensor x = random_tensor({cs.n, cs.c, cs.h, cs.w}, key + ".x", -3, 3);
        const Tensor ref = bn(x, RunOptions{Backend::Reference, 1});
        const BatchNormParams p{cs.n, cs.c, cs.h * cs.w, cs.eps};
        const Tensor bound = bn_error_bound(p, x, bn.named_parameters()[0].second,
                                            bn.named_parameters()[1].second,
                                            bn.named_buffers()[0].second, bn.named_buffers()[1].second);
        for (int threads = 1; threads <= 3; ++threads) {
            INFO("threads " << threads);
            const Tensor y = bn(x, RunOptions{Backend::Cpu, threads});
            STRATA_REQUIRE_CMP(compare_bounded(y.view({p.n, p.c, p.hw}), ref.view({p.n, p.c, p.hw}),
                                               bound.view({p.n, p.c, p.hw})),
                               "BatchNorm2d cpu vs reference");
        }
        // Fresh statistics (mean 0, var 1, weight 1, bias 0) are x / sqrt(1 + eps) in both.
        BatchNorm2d fresh(cs.c, cs.eps);
        STRATA_REQUIRE_CMP(strata_test::compare(fresh(x, RunOptions{Backend::Cpu, 2}),
                                                fresh(x, RunOptions{Backend::Reference, 1}),
                                                4 * kUnitRoundoff),  // 2 roundings each side
                           "fresh BatchNorm2d cpu vs reference");
    }
}

TEST_CASE("batch_norm: BatchNorm2d rejects a wrong channel count with the counts in the message") {
    BatchNorm2d bn(64);
    const Tensor x = random_tensor({1, 3, 8, 8}, "bn.err.x");
    for (Backend backend : {Backend::Reference, Backend::Cpu}) {
        REQUIRE_THROWS_AS(bn(x, RunOptions{backend, 1}), Error);
        REQUIRE_THROWS_WITH(bn(x, RunOptions{backend, 1}), Catch::Contains("expected 64 channels, got 3"));
    }
}

TEST_CASE("batch_norm: BatchNorm2d rejects 3-D input and an empty batch") {
    BatchNorm2d bn(3);
    REQUIRE_THROWS_WITH(bn(random_tensor({3, 8, 8}, "bn.3d")), Catch::Contains("4-D"));
    REQUIRE_THROWS_WITH(bn(Tensor::zeros({0, 3, 8, 8})), Catch::Contains("empty batch"));
    REQUIRE_THROWS_AS(bn(Tensor::zeros({1, 3, 8, 8}, DType::BFloat16)), Error);
}

TEST_CASE("batch_norm: a non-contiguous input gives the result of its contiguous copy") {
    BatchNorm2d bn(4);
    Tensor(bn.named_buffers()[0].second).copy_from(random_tensor({4}, "bn.nc.mean"));
    Tensor(bn.named_parameters()[0].second).copy_from(random_tensor({4}, "bn.nc.w"));
    // [2, 4, 5, 7] through channel-last strides of a [2, 5, 7, 4] buffer.
    const Tensor base = random_tensor({2, 5, 7, 4}, "bn.nc.x");
    const Tensor x(base.storage(), 0, {2, 4, 5, 7}, {140, 1, 28, 4}, DType::Float32);
    REQUIRE_FALSE(x.is_contiguous());
    const Tensor copy = x.clone();
    for (Backend backend : {Backend::Reference, Backend::Cpu}) {
        INFO("backend " << backend_name(backend));
        STRATA_REQUIRE_CMP(compare_bitwise(bn(x, RunOptions{backend, 3}), bn(copy, RunOptions{backend, 3})),
                           "strided vs contiguous");
    }
}

TEST_CASE("batch_norm: the BatchNorm2d constructor rejects what inference cannot run") {
    REQUIRE_THROWS_AS(BatchNorm2d(0), Error);
    REQUIRE_THROWS_AS(BatchNorm2d(4, 0.0), Error);
    REQUIRE_THROWS_WITH(BatchNorm2d(4, 1e-5, 0.1, false), Catch::Contains("affine=true"));
    REQUIRE_THROWS_AS(BatchNorm2d(4, 1e-5, 0.1, true, false), Error);
}
