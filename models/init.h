// Deterministic numbers that Python can reproduce bit for bit (tools/detgen.py).
//
// Element i of the stream named `key` under `seed`:
//     state = seed ^ fnv1a64(key)
//     z     = splitmix64(state + (i + 1) * 0x9E3779B97F4A7C15)      (all mod 2^64)
//     u     = (z >> 40) * 2^-24                                      (exact, in [0, 1))
// uniform(lo, hi) = float32(lo + (hi - lo) * u), computed in double then rounded once.
// Because every step is integer arithmetic or one correctly rounded double operation, numpy
// and C++ produce identical float32 values. This is how the tests get full-size ResNet-18
// weights without committing 47 MB: only inputs and PyTorch's outputs are fixtures.
#pragma once
#include <strata/export.h>
#include <cstdint>
#include <string>

#include "../core/module.h"

namespace strata {

STRATA_API uint64_t fnv1a64(const std::string& text);
STRATA_API uint64_t splitmix64(uint64_t x);

class STRATA_API DetStream {
public:
    DetStream(uint64_t seed, const std::string& key) : state_(seed ^ fnv1a64(key)) {}
    double u(uint64_t i) const;  // in [0, 1)
    // Defined in random.cpp, compiled with -ffp-contract=off: a fused multiply-add would round
    // differently from numpy.
    float uniform(uint64_t i, double lo, double hi) const;

private:
    uint64_t state_;
};

// Fills every parameter and buffer of `model` from its key, by the rule tools/detgen.py shares:
//   *.weight of rank 4 (conv):   U(-b, b), b = sqrt(6 / fan_in)      (keeps activations O(1))
//   *.weight of rank 2 (linear): U(-b, b), b = 1 / sqrt(fan_in)
//   *.bias of rank-2 owners:     U(-b, b), b = 1 / sqrt(fan_in)
//   bn  weight U(0.5, 1.5), bias U(-0.25, 0.25), running_mean U(-0.25, 0.25),
//       running_var U(0.5, 2.0), num_batches_tracked = 0
// (BatchNorm tensors are recognised by their key ending in running_mean's siblings.)
STRATA_API void fill_deterministic(Module& model, uint64_t seed);

// torchvision's ResNet initialisation under a seed: convolutions kaiming_normal_(fan_out, relu),
// BatchNorm weight 1 and bias 0, Linear as torch.nn.Linear's default (U(-1/sqrt(fan_in), ..)).
// Normal variates come from the same streams through Box-Muller; equal in distribution to
// torchvision's, not bit-equal (torch's generator is not reproduced).
STRATA_API void init_like_torchvision(Module& model, uint64_t seed);

}  // namespace strata
