// ParallelErrors: exceptions inside an OpenMP parallel region. An exception that leaves a
// region ends the process (std::terminate), so a scratch buffer that cannot be allocated inside
// one (std::bad_alloc from a per-thread vector, or from Eigen's GEMM workspace) would kill the
// caller instead of failing the call. Work inside a region runs through run(): the first
// exception is kept, later work is skipped (every thread still reaches every barrier and
// worksharing loop, so nothing deadlocks), and rethrow() after the region throws it in the
// calling thread, where the layer turns a bad_alloc into strata::Error with the module path.
//   ParallelErrors errors;
//   #pragma omp parallel
//   {
//       std::vector<float> scratch;
//       errors.run([&] { scratch.resize(n); });
//       #pragma omp for
//       for (...) errors.run([&] { ... });
//   }
//   errors.rethrow();
#pragma once
#include <atomic>
#include <exception>
#include <mutex>

namespace strata {
namespace cpu {

class ParallelErrors {
public:
    template <class Work>
    void run(Work&& work) noexcept {
        if (failed()) return;
        try {
            work();
        } catch (...) {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!first_) first_ = std::current_exception();
            failed_.store(true, std::memory_order_relaxed);
        }
    }
    bool failed() const { return failed_.load(std::memory_order_relaxed); }
    void rethrow() const {
        if (first_) std::rethrow_exception(first_);
    }

private:
    std::atomic<bool> failed_{false};
    std::mutex mutex_;
    std::exception_ptr first_;
};

}  // namespace cpu
}  // namespace strata
