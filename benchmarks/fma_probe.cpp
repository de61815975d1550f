// fma_probe: measures this machine's fp32 FMA peak (GFLOP/s) on N threads, so that benchmark
// results can be stated as a share of what the cores can do. Each thread runs chains of
// independent vector FMAs held in registers (no memory traffic); the best of a few reps counts.
//
//   fma_probe [--threads N] [--iters K] [--reps R]
//   -> {"threads": 2, "gflops": 234.1, "isa": "avx512", "lanes": 16, "accumulators": 16, ...}
//
// Built with the library's -march flag (STRATA_NATIVE), so "isa" is what strata's kernels use.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace {

#if defined(__AVX512F__)
// 16 accumulators of 16 lanes: enough independent chains to cover FMA latency (4 cycles) times
// two pipes, and 16 + 2 of the 32 zmm registers, so nothing spills.
constexpr const char* kIsa = "avx512";
constexpr int kLanes = 16;
constexpr int kAccumulators = 16;
float run_chains(long iters, float seed) {
    __m512 acc[kAccumulators];
    for (int k = 0; k < kAccumulators; ++k) acc[k] = _mm512_set1_ps(seed + 0.001f * static_cast<float>(k));
    const __m512 mul = _mm512_set1_ps(0.999999f), add = _mm512_set1_ps(1e-7f);
    for (long i = 0; i < iters; ++i)
        for (int k = 0; k < kAccumulators; ++k) acc[k] = _mm512_fmadd_ps(acc[k], mul, add);
    __m512 sum = acc[0];
    for (int k = 1; k < kAccumulators; ++k) sum = _mm512_add_ps(sum, acc[k]);
    float lanes[16];  // not _mm512_reduce_add_ps: GCC 12 warns inside it (bug 105593)
    _mm512_storeu_ps(lanes, sum);
    float s = 0;
    for (float v : lanes) s += v;
    return s;
}
#elif defined(__AVX2__) && defined(__FMA__)
// AVX2 has 16 ymm registers: 12 accumulators + 2 constants fit without spilling; 12 chains still
// cover latency 4 x 2 pipes.
constexpr const char* kIsa = "avx2";
constexpr int kLanes = 8;
constexpr int kAccumulators = 12;
float run_chains(long iters, float seed) {
    __m256 acc[kAccumulators];
    for (int k = 0; k < kAccumulators; ++k) acc[k] = _mm256_set1_ps(seed + 0.001f * static_cast<float>(k));
    const __m256 mul = _mm256_set1_ps(0.999999f), add = _mm256_set1_ps(1e-7f);
    for (long i = 0; i < iters; ++i)
        for (int k = 0; k < kAccumulators; ++k) acc[k] = _mm256_fmadd_ps(acc[k], mul, add);
    __m256 sum = acc[0];
    for (int k = 1; k < kAccumulators; ++k) sum = _mm256_add_ps(sum, acc[k]);
    float lanes[8];
    _mm256_storeu_ps(lanes, sum);
    float s = 0;
    for (float v : lanes) s += v;
    return s;
}
#else
// No vector FMA known at compile time: plain scalar chains (the compiler may vectorise them).
constexpr const char* kIsa = "scalar";
constexpr int kLanes = 1;
constexpr int kAccumulators = 16;
float run_chains(long iters, float seed) {
    float acc[kAccumulators];
    for (int k = 0; k < kAccumulators; ++k) acc[k] = seed + 0.001f * static_cast<float>(k);
    for (long i = 0; i < iters; ++i)
        for (int k = 0; k < kAccumulators; ++k) acc[k] = acc[k] * 0.999999f + 1e-7f;
    float s = 0;
    for (float v : acc) s += v;
    return s;
}
#endif

// One rep: all threads start together; the rep's time is the slowest thread's.
double timed_rep(int threads, long iters, std::atomic<float>& sink) {
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<double> seconds(static_cast<size_t>(threads));
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            ready.fetch_add(1);
            while (!go.load(std::memory_order_acquire)) {
            }
            const auto t0 = std::chrono::steady_clock::now();
            const float r = run_chains(iters, 1.0f + static_cast<float>(t));
            seconds[static_cast<size_t>(t)] =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            sink.store(sink.load() + r);  // keeps the chains alive
        });
    }
    while (ready.load() < threads) {
    }
    go.store(true, std::memory_order_release);
    for (auto& th : pool) th.join();
    return *std::max_element(seconds.begin(), seconds.end());
}

[[noreturn]] void usage(const char* msg) {
    std::fprintf(stderr, "error: %s\nusage: fma_probe [--threads N] [--iters K] [--reps R]\n", msg);
    std::exit(2);
}

long parse_positive(const char* flag, const char* value) {
    char* end = nullptr;
    const long v = std::strtol(value, &end, 10);
    if (!*value || *end || v <= 0) usage((std::string(flag) + " needs a positive integer").c_str());
    return v;
}

}  // namespace

int main(int argc, char** argv) {
    long threads = 1, iters = 20000000, reps = 5;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (i + 1 >= argc) usage(("unknown or incomplete argument '" + arg + "'").c_str());
        if (arg == "--threads") threads = parse_positive("--threads", argv[++i]);
        else if (arg == "--iters") iters = parse_positive("--iters", argv[++i]);
        else if (arg == "--reps") reps = parse_positive("--reps", argv[++i]);
        else usage(("unknown argument '" + arg + "'").c_str());
    }
    std::atomic<float> sink{0};
    timed_rep(static_cast<int>(threads), iters / 4, sink);  // warm-up: clocks up, threads placed
    double best = 1e30;
    for (long r = 0; r < reps; ++r) best = std::min(best, timed_rep(static_cast<int>(threads), iters, sink));
    const double flops = 2.0 * kLanes * kAccumulators * static_cast<double>(iters) * static_cast<double>(threads);
    std::printf("{\"threads\": %ld, \"gflops\": %.1f, \"gflops_per_thread\": %.1f, \"isa\": \"%s\", "
                "\"lanes\": %d, \"accumulators\": %d, \"iters\": %ld, \"reps\": %ld, \"best_s\": %.4f, "
                "\"sink\": %.3g}\n",
                threads, flops / best * 1e-9, flops / best * 1e-9 / static_cast<double>(threads), kIsa, kLanes,
                kAccumulators, iters, reps, best, static_cast<double>(sink.load()));
    return 0;
}
