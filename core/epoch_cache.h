// EpochCache<T>: a value derived from a module's weights (packed or folded weights), built on
// first use and rebuilt when weights_epoch() moves. Safe to call from many threads: the build
// runs once under a lock, and callers keep the shared_ptr they got even if it is replaced.
#pragma once
#include <memory>
#include <mutex>

#include "module.h"

namespace strata {

template <typename T>
class EpochCache {
public:
    template <typename Build>
    std::shared_ptr<const T> get(Build&& build) const {
        const uint64_t now = weights_epoch();
        std::lock_guard<std::mutex> lock(mutex_);
        if (!value_ || epoch_ != now) {
            value_ = std::make_shared<const T>(build());
            epoch_ = now;
        }
        return value_;
    }

private:
    mutable std::mutex mutex_;
    mutable std::shared_ptr<const T> value_;
    mutable uint64_t epoch_ = 0;
};

}  // namespace strata
