// Small pieces shared by the layers: a (height, width) pair that converts from one int, as
// torch.nn accepts `kernel_size=3` or `kernel_size=(3, 5)`, and input checks.
#pragma once
#include <cstdint>
#include <string>

#include "../core/tensor.h"

namespace strata {

struct Size2 {
    int64_t h, w;
    Size2(int64_t both) : h(both), w(both) {}  // NOLINT: implicit on purpose, like torch's int
    Size2(int64_t h_, int64_t w_) : h(h_), w(w_) {}
    std::string str() const;  // "(3, 3)"
    bool operator==(const Size2& o) const { return h == o.h && w == o.w; }
};

// Checks that x is a defined float32 CPU tensor of shape [N, C, H, W] with N >= 1, and returns
// it contiguous (a non-contiguous input is copied, not refused).
Tensor expect_nchw(const Tensor& x, const char* layer);

}  // namespace strata
