// Tensor basics: shapes, views, clone, dtype conversion.
#include "test_util.h"

using namespace strata;

TEST_CASE("tensor: contiguous shape, strides, views share storage, clone copies") {
    Tensor t = Tensor::zeros({2, 3, 4});
    REQUIRE(t.numel() == 24);
    REQUIRE(t.strides() == Shape{12, 4, 1});
    REQUIRE(t.is_contiguous());
    Tensor v = t.view({6, 4});
    v.data<float>()[5] = 7.0f;
    REQUIRE(t.data<float>()[5] == 7.0f);
    Tensor c = t.clone();
    c.data<float>()[5] = 1.0f;
    REQUIRE(t.data<float>()[5] == 7.0f);
    REQUIRE_THROWS_AS(t.view({5, 5}), Error);
    REQUIRE(t.size(-1) == 4);
    REQUIRE_THROWS_AS(t.size(3), Error);
}

TEST_CASE("tensor: a strided view made contiguous gathers the right elements") {
    Tensor base = Tensor::empty({3, 4});
    for (int i = 0; i < 12; ++i) base.data<float>()[i] = static_cast<float>(i);
    // transpose view [4, 3]
    Tensor tr(base.storage(), 0, {4, 3}, {1, 4}, DType::Float32);
    REQUIRE_FALSE(tr.is_contiguous());
    Tensor c = tr.contiguous();
    REQUIRE(c.is_contiguous());
    REQUIRE(c.item_at({1, 2}) == base.item_at({2, 1}));
    REQUIRE(c.data<float>()[3 * 3 + 2] == 11.0f);
}

TEST_CASE("tensor: views past the storage are refused") {
    auto storage = Storage::allocate(16);
    REQUIRE_THROWS_AS(Tensor(storage, 0, {5}, {1}, DType::Float32), Error);
    REQUIRE_THROWS_AS(Tensor(storage, 8, {3}, {1}, DType::Float32), Error);
    REQUIRE_NOTHROW(Tensor(storage, 8, {2}, {1}, DType::Float32));
}

TEST_CASE("tensor: half and bfloat16 conversions round correctly") {
    REQUIRE(half_to_float(0x3c00) == 1.0f);
    REQUIRE(half_to_float(0xc000) == -2.0f);
    REQUIRE(half_to_float(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
    REQUIRE(float_to_half(1.0f) == 0x3c00);
    REQUIRE(float_to_half(65504.0f) == 0x7bff);
    REQUIRE(float_to_half(1e6f) == 0x7c00);
    REQUIRE(bfloat16_to_float(0x3f80) == 1.0f);
    REQUIRE(float_to_bfloat16(1.0f) == 0x3f80);
    // every half value survives half -> float -> half
    for (uint32_t h = 0; h < 0x10000; ++h) {
        const uint16_t v = static_cast<uint16_t>(h);
        if ((v & 0x7c00) == 0x7c00 && (v & 0x3ff)) continue;  // NaN payloads
        REQUIRE(float_to_half(half_to_float(v)) == v);
    }
    Tensor f = Tensor::full({3}, 1.5f);
    Tensor h = f.to(DType::Float16);
    REQUIRE(h.dtype() == DType::Float16);
    REQUIRE(h.to(DType::Float32).data<float>()[2] == 1.5f);
}

TEST_CASE("tensor: shape overflow is an error, not a wrap-around") {
    REQUIRE_THROWS_AS(shape_numel({1LL << 40, 1LL << 40}), Error);
    REQUIRE_THROWS_AS(Tensor::empty({-1, 3}), Error);
}
