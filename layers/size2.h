// Size2: a (height, width) pair that converts from one int, as torch.nn accepts `kernel_size=3`
// or `kernel_size=(3, 5)`.
#pragma once
#include <strata/export.h>
#include <cstdint>
#include <string>

namespace strata {

struct STRATA_API Size2 {
    int64_t h, w;
    Size2(int64_t both) : h(both), w(both) {}  // NOLINT: implicit on purpose, like torch's int
    Size2(int64_t h_, int64_t w_) : h(h_), w(w_) {}
    std::string str() const { return "(" + std::to_string(h) + ", " + std::to_string(w) + ")"; }  // "(3, 3)"
    bool operator==(const Size2& o) const { return h == o.h && w == o.w; }
};

}  // namespace strata
