#include "init.h"

#include <algorithm>
#include <cmath>
#include <set>

namespace strata {

uint64_t fnv1a64(const std::string& text) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : text) {
        h ^= c;
        h *= 0x100000001b3ull;
    }
    return h;
}

uint64_t splitmix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double DetStream::u(uint64_t i) const {
    const uint64_t z = splitmix64(state_ + (i + 1) * 0x9E3779B97F4A7C15ull);
    return static_cast<double>(z >> 40) * (1.0 / 16777216.0);
}

float DetStream::uniform(uint64_t i, double lo, double hi) const {
    return static_cast<float>(lo + (hi - lo) * u(i));
}

namespace {

// Keys "a.b.running_mean" -> owner "a.b": the set of BatchNorm owners in a state dict.
std::set<std::string> batchnorm_owners(const StateDict& state) {
    std::set<std::string> owners;
    const std::string suffix = ".running_mean";
    for (const auto& item : state) {
        const std::string& k = item.first;
        if (k.size() > suffix.size() && k.compare(k.size() - suffix.size(), suffix.size(), suffix) == 0)
            owners.insert(k.substr(0, k.size() - suffix.size()));
        else if (k == "running_mean")
            owners.insert("");
    }
    return owners;
}

void split_key(const std::string& key, std::string& owner, std::string& leaf) {
    const size_t dot = key.rfind('.');
    owner = dot == std::string::npos ? "" : key.substr(0, dot);
    leaf = dot == std::string::npos ? key : key.substr(dot + 1);
}

int64_t fan_in(const Tensor& w) {
    int64_t f = 1;
    for (int64_t d = 1; d < w.dim(); ++d) f *= w.size(d);
    return f;
}

void fill_uniform(Tensor t, const DetStream& s, double lo, double hi) {
    float* p = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = s.uniform(static_cast<uint64_t>(i), lo, hi);
}

}  // namespace

void fill_deterministic(Module& model, uint64_t seed) {
    const StateDict state = model.state_dict();
    const std::set<std::string> bn = batchnorm_owners(state);
    for (const auto& [key, t] : state) {
        std::string owner, leaf;
        split_key(key, owner, leaf);
        const DetStream s(seed, key);
        if (t.dtype() == DType::Int64) {
            std::fill(t.data<int64_t>(), t.data<int64_t>() + t.numel(), int64_t{0});
        } else if (bn.count(owner)) {
            if (leaf == "weight") fill_uniform(t, s, 0.5, 1.5);
            else if (leaf == "bias") fill_uniform(t, s, -0.25, 0.25);
            else if (leaf == "running_mean") fill_uniform(t, s, -0.25, 0.25);
            else if (leaf == "running_var") fill_uniform(t, s, 0.5, 2.0);
            else STRATA_FAIL("fill_deterministic: no rule for BatchNorm tensor '", key, "'");
        } else if (leaf == "weight" && t.dim() == 4) {
            const double b = std::sqrt(6.0 / static_cast<double>(fan_in(t)));
            fill_uniform(t, s, -b, b);
        } else if (leaf == "weight" && t.dim() == 2) {
            const double b = 1.0 / std::sqrt(static_cast<double>(fan_in(t)));
            fill_uniform(t, s, -b, b);
        } else if (leaf == "bias") {
            const Tensor* w = state.find(owner.empty() ? "weight" : owner + ".weight");
            STRATA_CHECK(w != nullptr, "fill_deterministic: bias '", key, "' without a weight");
            const double b = 1.0 / std::sqrt(static_cast<double>(fan_in(*w)));
            fill_uniform(t, s, -b, b);
        } else {
            STRATA_FAIL("fill_deterministic: no rule for '", key, "'");
        }
    }
    model.notify_weights_changed();
}

void init_like_torchvision(Module& model, uint64_t seed) {
    const StateDict state = model.state_dict();
    const std::set<std::string> bn = batchnorm_owners(state);
    const double two_pi = 6.283185307179586;
    for (const auto& [key, t] : state) {
        std::string owner, leaf;
        split_key(key, owner, leaf);
        const DetStream s(seed, key);
        if (t.dtype() == DType::Int64) {
            std::fill(t.data<int64_t>(), t.data<int64_t>() + t.numel(), int64_t{0});
        } else if (bn.count(owner)) {
            const float v = (leaf == "weight" || leaf == "running_var") ? 1.0f : 0.0f;
            std::fill(t.data<float>(), t.data<float>() + t.numel(), v);
        } else if (leaf == "weight" && t.dim() == 4) {
            // kaiming_normal_(mode="fan_out", nonlinearity="relu"): std = sqrt(2 / fan_out)
            const double fan_out = static_cast<double>(t.size(0) * t.size(2) * t.size(3));
            const double stddev = std::sqrt(2.0 / fan_out);
            float* p = t.data<float>();
            for (int64_t i = 0; i < t.numel(); ++i) {
                const double u1 = 1.0 - s.u(2 * static_cast<uint64_t>(i));  // (0, 1]
                const double u2 = s.u(2 * static_cast<uint64_t>(i) + 1);
                p[i] = static_cast<float>(stddev * std::sqrt(-2.0 * std::log(u1)) * std::cos(two_pi * u2));
            }
        } else if (leaf == "weight" || leaf == "bias") {
            const Tensor* w = state.find(owner.empty() ? "weight" : owner + ".weight");
            STRATA_CHECK(w != nullptr, "init_like_torchvision: no weight for '", key, "'");
            const double b = 1.0 / std::sqrt(static_cast<double>(fan_in(*w)));
            fill_uniform(t, s, -b, b);
        } else {
            STRATA_FAIL("init_like_torchvision: no rule for '", key, "'");
        }
    }
    model.notify_weights_changed();
}

}  // namespace strata
