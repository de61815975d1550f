// Fully connected: cpu::linear (Eigen GEMM, output features split across threads) against
// reference::linear (double dot products) on random sizes, the Linear layer with both backends
// and inputs of rank 1 to 3, and its input checks.
#include <cmath>
#include <sstream>

#include "kernels/linear.h"
#include "test_util.h"

using namespace strata;
using strata_test::compare_bitwise;
using strata_test::compare_bounded;
using strata_test::random_tensor;

namespace {

constexpr double kUnitRoundoff = 1.0 / 16777216.0;  // 2^-24, float32

Tensor abs_of(const Tensor& t) {
    Tensor out = t.clone();
    for (int64_t i = 0; i < out.numel(); ++i) out.data<float>()[i] = std::fabs(out.data<float>()[i]);
    return out;
}

// Tolerance, per element: as for convolution (test_conv2d.cpp), a float32 dot product of length
// K = in plus the bias is off by at most gamma_{K+1} * (sum|w*x| + |b|), u = 2^-24, and the
// reference (double, rounded once) by at most u times the same sum: (K + 3) * u * M in all,
// M being the reference linear layer applied to |x|, |w|, |b|.
Tensor linear_error_bound(const LinearParams& p, const Tensor& x, const Tensor& w, const Tensor& b) {
    const Tensor ax = abs_of(x), aw = abs_of(w);
    const Tensor ab = b.defined() ? abs_of(b) : Tensor();
    Tensor m = Tensor::empty({p.batch, p.out});
    reference::linear(p, ax.data<float>(), aw.data<float>(), ab.defined() ? ab.data<float>() : nullptr,
                      m.data<float>());
    for (int64_t i = 0; i < m.numel(); ++i)
        m.data<float>()[i] = static_cast<float>((p.in + 3) * kUnitRoundoff * m.data<float>()[i] * (1 + 1e-6));
    return m;
}

int64_t draw(const DetStream& s, uint64_t* i, int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(s.u((*i)++) * static_cast<double>(hi - lo + 1));
}

}  // namespace

TEST_CASE("linear: cpu kernel matches the reference on 150 random sizes") {
    const DetStream stream(23, "test_linear configurations");
    uint64_t i = 0;
    for (int index = 0; index < 150; ++index) {
        LinearParams p{};
        p.batch = draw(stream, &i, 1, 5);
        p.in = index % 10 == 0 ? 512 : draw(stream, &i, 1, 300);  // 512: ResNet-18's fc
        p.out = draw(stream, &i, 1, 40);                            // 1 and 2: fewer than threads
        const bool bias = draw(stream, &i, 0, 1) == 1;
        const std::string key = "linear#" + std::to_string(index);
        INFO("linear " << key << ": x [" << p.batch << ", " << p.in << "], out " << p.out << ", bias " << bias);
        const Tensor x = random_tensor({p.batch, p.in}, key + ".x");
        const Tensor w = random_tensor({p.out, p.in}, key + ".w");
        const Tensor b = bias ? random_tensor({p.out}, key + ".b") : Tensor();
        const float* pb = bias ? b.data<float>() : nullptr;
        Tensor ref = Tensor::empty({p.batch, p.out});
        reference::linear(p, x.data<float>(), w.data<float>(), pb, ref.data<float>());
        const Tensor bound = linear_error_bound(p, x, w, b);
        for (int threads = 1; threads <= 3; ++threads) {
            INFO("threads " << threads);
            Tensor y = Tensor::full({p.batch, p.out}, NAN);  // an unwritten output cannot pass
            cpu::linear(p, x.data<float>(), w.data<float>(), pb, y.data<float>(), threads);
            STRATA_REQUIRE_CMP(compare_bounded(y, ref, bound), "cpu vs reference");
        }
    }
}

TEST_CASE("linear: the Linear layer gives the same result on both backends, any leading shape") {
    struct Case {
        int64_t in, out;
        bool bias;
        Shape x;
    };
    const Case cases[] = {{512, 1000, true, {2, 512}}, {7, 3, false, {7}}, {13, 5, true, {2, 3, 13}}, {1, 1, true, {4, 1}}};
    int index = 0;
    for (const Case& c : cases) {
        const std::string key = "linearlayer#" + std::to_string(index++);
        Linear fc(c.in, c.out, c.bias);
        INFO("Linear(" << fc.extra_repr() << ") on " << shape_str(c.x));
        for (auto& [name, t] : fc.named_parameters()) Tensor(t).copy_from(random_tensor(t.shape(), key + "." + name));
        const Tensor x = random_tensor(c.x, key + ".x");
        const Tensor ref = fc(x, RunOptions{Backend::Reference, 1});
        Shape expected_shape = c.x;
        expected_shape.back() = c.out;
        REQUIRE(ref.shape() == expected_shape);
        const LinearParams p{x.numel() / c.in, c.in, c.out};
        const auto params = fc.named_parameters();
        const Tensor bound = linear_error_bound(p, x, params[0].second, c.bias ? params[1].second : Tensor());
        for (int threads = 1; threads <= 3; ++threads) {
            INFO("threads " << threads);
            const Tensor y = fc(x, RunOptions{Backend::Cpu, threads});
            STRATA_REQUIRE_CMP(compare_bounded(y.view({p.batch, p.out}), ref.view({p.batch, p.out}), bound),
                               "Linear cpu vs reference");
        }
    }
}

TEST_CASE("linear: Linear rejects a wrong feature count, naming the shapes") {
    Linear fc(512, 10);
    REQUIRE_THROWS_WITH(fc(random_tensor({1, 3}, "linear.err")),
                        Catch::Contains("expected input of shape [..., 512], got [1, 3]"));
    // A pooled [N, 512, 1, 1] tensor fed without flatten: the message says what to do.
    REQUIRE_THROWS_WITH(fc(Tensor::zeros({1, 512, 1, 1})), Catch::Contains("needs a flatten first"));
    REQUIRE_THROWS_AS(fc(Tensor::zeros({1, 512}, DType::Float16)), Error);
    REQUIRE_THROWS_AS(Linear(0, 3), Error);
}

TEST_CASE("linear: a non-contiguous input gives the result of its contiguous copy") {
    Linear fc(6, 4);
    for (auto& [name, t] : fc.named_parameters()) Tensor(t).copy_from(random_tensor(t.shape(), "linear.nc." + name));
    const Tensor base = random_tensor({6, 5}, "linear.nc.x");
    const Tensor x(base.storage(), 0, {5, 6}, {1, 5}, DType::Float32);  // the transpose
    REQUIRE_FALSE(x.is_contiguous());
    for (Backend backend : {Backend::Reference, Backend::Cpu}) {
        INFO("backend " << backend_name(backend));
        STRATA_REQUIRE_CMP(compare_bitwise(fc(x, RunOptions{backend, 2}), fc(x.clone(), RunOptions{backend, 2})),
                           "strided vs contiguous");
    }
}
