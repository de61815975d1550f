// Elementwise ops: cpu::relu / cpu::add (OpenMP + SIMD) against the reference loops on many
// lengths and thread counts, NaN and infinity handling, the ReLU layer and add_relu.
// Both ops are exact: relu selects a value, add is one IEEE float32 addition in both backends,
// so every comparison here is bit for bit.
#include <cmath>
#include <limits>

#include "kernels/relu.h"
#include "test_util.h"

using namespace strata;
using strata_test::compare_bitwise;
using strata_test::random_tensor;

namespace {

const int64_t kLengths[] = {1, 2, 3, 7, 15, 16, 17, 31, 33, 64, 127, 1000, 4097, 65537};

// Random values with NaN, +inf and -inf sprinkled in (never -0.0: see the note in the relu test).
Tensor values_with_specials(int64_t n, const std::string& key) {
    Tensor t = random_tensor({n}, key, -2, 2);
    float* p = t.data<float>();
    const DetStream s(5, key + ".specials");
    for (int64_t i = 0; i < n; ++i) {
        const double u = s.u(static_cast<uint64_t>(i));
        if (u < 0.02) p[i] = std::numeric_limits<float>::quiet_NaN();
        else if (u < 0.03) p[i] = std::numeric_limits<float>::infinity();
        else if (u < 0.04) p[i] = -std::numeric_limits<float>::infinity();
    }
    return t;
}

// Index of the first element for which ok(i) is false, or -1.
template <typename Ok>
int64_t first_bad(int64_t n, Ok ok) {
    for (int64_t i = 0; i < n; ++i)
        if (!ok(i)) return i;
    return -1;
}

}  // namespace

TEST_CASE("elementwise: cpu relu equals the reference bit for bit, NaN kept") {
    // relu(-0.0): torch and cpu:: return -0.0, reference:: returns +0.0. The sign of a zero
    // changes no later result, so -0.0 is left out of the inputs (not a tested property).
    for (int64_t n : kLengths) {
        const Tensor x = values_with_specials(n, "relu.x" + std::to_string(n));
        Tensor ref = Tensor::full({n}, 1.0f);
        reference::relu(x.data<float>(), ref.data<float>(), n);
        for (int threads = 1; threads <= 3; ++threads) {
            INFO("relu n " << n << ", threads " << threads);
            Tensor y = Tensor::full({n}, 12345.0f);  // an unwritten output cannot pass
            cpu::relu(x.data<float>(), y.data<float>(), n, threads);
            STRATA_REQUIRE_CMP(compare_bitwise(y, ref), "cpu vs reference");
        }
        // torch semantics, on both: NaN stays NaN, negatives become 0, the rest pass through.
        const int64_t bad = first_bad(n, [&](int64_t i) {
            const float v = x.data<float>()[i], r = ref.data<float>()[i];
            return std::isnan(v) ? std::isnan(r) : r == (v < 0 ? 0.0f : v);
        });
        INFO("relu n " << n << ": first wrong element " << bad << " (x "
                       << (bad >= 0 ? x.data<float>()[bad] : 0) << ", reference "
                       << (bad >= 0 ? ref.data<float>()[bad] : 0) << ")");
        REQUIRE(bad == -1);
    }
}

TEST_CASE("elementwise: relu of NaN is NaN on both backends, as torch.relu") {
    // torch.relu(torch.tensor([nan, -inf, inf, -1.])) == [nan, 0., inf, 0.]
    float x[4] = {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::infinity(),
                  std::numeric_limits<float>::infinity(), -1.0f};
    float ref[4], y[4];
    reference::relu(x, ref, 4);
    cpu::relu(x, y, 4, 2);
    for (const float* out : {ref, y}) {
        REQUIRE(std::isnan(out[0]));
        REQUIRE(out[1] == 0.0f);
        REQUIRE(out[2] == std::numeric_limits<float>::infinity());
        REQUIRE(out[3] == 0.0f);
    }
}

TEST_CASE("elementwise: cpu add and add+relu equal the reference bit for bit") {
    for (int64_t n : kLengths) {
        // NaN only on the `a` side: with one NaN operand IEEE returns that NaN, so payloads agree
        // whatever operand order the compiler picks.
        const Tensor a = values_with_specials(n, "add.a" + std::to_string(n));
        const Tensor b = random_tensor({n}, "add.b" + std::to_string(n), -2, 2);
        for (bool relu_after : {false, true}) {
            Tensor ref = Tensor::empty({n});
            reference::add(a.data<float>(), b.data<float>(), ref.data<float>(), n, relu_after);
            for (int threads = 1; threads <= 3; ++threads) {
                INFO("add n " << n << ", relu_after " << relu_after << ", threads " << threads);
                Tensor y = Tensor::full({n}, 12345.0f);
                cpu::add(a.data<float>(), b.data<float>(), y.data<float>(), n, relu_after, threads);
                STRATA_REQUIRE_CMP(compare_bitwise(y, ref), "cpu vs reference");
            }
            const int64_t bad = first_bad(n, [&](int64_t i) {
                const float s = a.data<float>()[i] + b.data<float>()[i], r = ref.data<float>()[i];
                return std::isnan(s) ? std::isnan(r) : r == (relu_after && s < 0 ? 0.0f : s);
            });
            INFO("add n " << n << ", relu_after " << relu_after << ": first wrong element " << bad);
            REQUIRE(bad == -1);
        }
    }
}

TEST_CASE("elementwise: the ReLU layer and add_relu agree across backends and accept strided input") {
    const Tensor base = random_tensor({2, 3, 5, 7}, "relu.layer.x");
    // The same values as a [2, 3, 7, 5] tensor read through swapped strides.
    const Tensor x(base.storage(), 0, {2, 3, 7, 5}, {105, 35, 1, 7}, DType::Float32);
    REQUIRE_FALSE(x.is_contiguous());
    ReLU relu;
    const Tensor ref = relu(x.clone(), RunOptions{Backend::Reference, 1});
    REQUIRE(ref.shape() == Shape{2, 3, 7, 5});
    for (int threads = 1; threads <= 3; ++threads) {
        INFO("threads " << threads);
        STRATA_REQUIRE_CMP(compare_bitwise(relu(x, RunOptions{Backend::Cpu, threads}), ref), "ReLU cpu, strided");
        STRATA_REQUIRE_CMP(compare_bitwise(relu(x, RunOptions{Backend::Reference, threads}), ref),
                           "ReLU reference, strided");
    }
    const Tensor y = random_tensor({2, 3, 7, 5}, "relu.layer.y");
    const Tensor sum_ref = add_relu(x, y, RunOptions{Backend::Reference, 1});
    STRATA_REQUIRE_CMP(compare_bitwise(add_relu(x.clone(), y, RunOptions{Backend::Cpu, 3}), sum_ref),
                       "add_relu cpu vs reference");
    STRATA_REQUIRE_CMP(compare_bitwise(add_relu(x, y, RunOptions{Backend::Cpu, 2}), sum_ref),
                       "add_relu cpu strided vs reference");
}

TEST_CASE("elementwise: add_relu refuses to broadcast and ReLU refuses non-float32") {
    const Tensor a = Tensor::zeros({1, 4, 3, 3});
    REQUIRE_THROWS_WITH(add_relu(a, Tensor::zeros({1, 4, 1, 1}), RunOptions{}),
                        Catch::Contains("does not broadcast"));
    REQUIRE_THROWS_AS(add_relu(a, Tensor::zeros({1, 4, 3}), RunOptions{}), Error);
    REQUIRE_THROWS_AS(ReLU()(Tensor::zeros({2}, DType::Int64)), Error);
    REQUIRE_THROWS_AS(ReLU()(Tensor()), Error);
}
