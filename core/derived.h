// Derived<T>: a value computed from a module's weights (folded, packed, transformed weights),
// built on first use and rebuilt when the version it was built from moves (Module::
// weights_version). Safe to call from many threads: a build runs once under the lock, and a
// caller keeps the shared_ptr it got even if a later load replaces the value.
#pragma once
#include <strata/export.h>
#include <cstdint>
#include <memory>
#include <mutex>

namespace strata {

// Counts one build for derived_weight_builds() (core/module.h).
STRATA_API void count_derived_build();

template <typename T>
class Derived {
public:
    // `version`: the weights_version() of the module the value comes from (or the largest of
    // several modules' versions: a new version is greater than all earlier ones, so the largest
    // moves whenever any of them does).
    template <typename Build>
    std::shared_ptr<const T> get(uint64_t version, Build&& build) const {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!value_ || version_ != version) {
            value_ = std::make_shared<const T>(build());
            version_ = version;
            count_derived_build();
        }
        return value_;
    }

private:
    mutable std::mutex mutex_;
    mutable std::shared_ptr<const T> value_;
    mutable uint64_t version_ = 0;
};

}  // namespace strata
