// One loaded model and one getter called from many threads at once: every result equals, bit for
// bit, what a serial run gives for the same input and options. The model is fresh when the
// threads start, so the weight caches built on first use (BatchNorm folding, packed and Winograd
// weights) are built under contention too. Run once under ThreadSanitizer with OMP_NUM_THREADS=1
// (see README, Threading); libgomp is not instrumented, so OpenMP teams would report false races.
#include <atomic>
#include <thread>

#include "test_util.h"

using namespace strata;

namespace {

constexpr int kThreads = 8;
constexpr int kCallsPerThread = 50;

// Distinct inputs whose sizes send the same 3x3 convolutions down Winograd F(2,3), F(4,3) or the
// direct kernel (layer1: F(2,3) at 32x32, F(4,3) at 48x48; layer3: direct), so the packings of
// one convolution are built concurrently; batch 1 and 2.
std::vector<Tensor> distinct_inputs() {
    const Shape shapes[] = {{1, 3, 32, 32}, {2, 3, 24, 40}, {1, 3, 45, 37}, {1, 3, 48, 48}, {2, 3, 33, 29}, {1, 3, 64, 56}};
    std::vector<Tensor> inputs;
    for (size_t i = 0; i < std::size(shapes); ++i)
        inputs.push_back(strata_test::random_tensor(shapes[i], "concurrency." + std::to_string(i), 0.0, 1.0));
    return inputs;
}

// Half the threads ask for 1 OpenMP thread per call, half for OpenMP's default (all cores, or
// OMP_NUM_THREADS): callers' threads and OpenMP teams nest.
RunOptions options_for_thread(int t) { return RunOptions{Backend::Cpu, t % 2 == 0 ? 1 : 0}; }

const ReturnLayers kRequest{{"bn1", "stem"}, {"layer1", "feat1"}, {"layer3", "feat3"}};

struct Expected {
    Tensor logits;                  // model.forward
    OrderedDict<Tensor> features;   // getter
};

}  // namespace

TEST_CASE("concurrency: 8 threads x 50 forwards on one model and one getter equal a serial run bit for bit") {
    const std::vector<Tensor> inputs = distinct_inputs();

    // The serial answers, per input and per options, from a model with the same weights.
    std::vector<Expected> expected[2];
    {
        auto serial_model = models::resnet18();
        const IntermediateLayerGetter serial_getter(*serial_model, kRequest);
        for (int t = 0; t < 2; ++t)
            for (const Tensor& x : inputs)
                expected[t].push_back({serial_model->forward(x, options_for_thread(t)),
                                       serial_getter(x, options_for_thread(t))});
    }

    auto model = models::resnet18();  // fresh: no cache built yet
    const IntermediateLayerGetter getter(*model, kRequest);
    std::atomic<int> ready{0};
    std::vector<std::string> failures(kThreads);  // Catch's REQUIRE is not thread-safe
    std::vector<int> calls_done(kThreads, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            const RunOptions options = options_for_thread(t);
            ready.fetch_add(1);
            while (ready.load() < kThreads) std::this_thread::yield();  // start together
            try {
                for (int i = 0; i < kCallsPerThread && failures[t].empty(); ++i) {
                    // Each thread walks the inputs from a different start and alternates model
                    // and getter calls, so all combinations overlap.
                    const size_t k = static_cast<size_t>(t + i) % inputs.size();
                    const Expected& want = expected[t % 2][k];
                    const std::string where = "thread " + std::to_string(t) + ", call " + std::to_string(i) +
                                              ", input " + shape_str(inputs[k].shape()) + ", num_threads " +
                                              std::to_string(options.num_threads);
                    if ((t + i) % 2 == 0) {
                        const auto cmp = strata_test::compare_bitwise(model->forward(inputs[k], options), want.logits);
                        if (!cmp.ok) failures[t] = where + ", model: " + cmp.message;
                    } else {
                        const OrderedDict<Tensor> got = getter(inputs[k], options);
                        if (got.keys() != want.features.keys()) failures[t] = where + ", getter: other keys";
                        for (const auto& [name, tensor] : got) {
                            const auto cmp = strata_test::compare_bitwise(tensor, want.features.at(name));
                            if (!cmp.ok && failures[t].empty()) failures[t] = where + ", getter " + name + ": " + cmp.message;
                        }
                    }
                    ++calls_done[t];
                }
            } catch (const std::exception& e) {
                failures[t] = "thread " + std::to_string(t) + " threw: " + e.what();
            }
        });
    }
    for (auto& thread : threads) thread.join();
    for (int t = 0; t < kThreads; ++t) {
        INFO(failures[t]);
        REQUIRE(failures[t].empty());
        REQUIRE(calls_done[t] == kCallsPerThread);
    }
}

TEST_CASE("concurrency: weights loaded between bursts of concurrent calls are seen by every later call") {
    // Loading is not concurrent with forward (README, Threading), but a load between bursts must
    // invalidate the folded and packed weights that the previous burst built on every thread.
    auto model = models::resnet18();
    auto other = models::resnet18(1000, 99);  // different weights
    const Tensor x = strata_test::random_tensor({1, 3, 40, 40}, "concurrency.reload", 0.0, 1.0);
    const Tensor want_before = model->forward(x, {Backend::Cpu, 1});
    const Tensor want_after = other->forward(x, {Backend::Cpu, 1});
    REQUIRE_FALSE(strata_test::compare_bitwise(want_before, want_after).ok);

    auto burst = [&](const Tensor& want) {
        std::vector<std::string> failures(4);
        std::vector<std::thread> threads;
        for (int t = 0; t < 4; ++t)
            threads.emplace_back([&, t] {
                for (int i = 0; i < 5; ++i) {
                    const auto cmp = strata_test::compare_bitwise(model->forward(x, {Backend::Cpu, 1}), want);
                    if (!cmp.ok && failures[t].empty()) failures[t] = "thread " + std::to_string(t) + ": " + cmp.message;
                }
            });
        for (auto& thread : threads) thread.join();
        for (const auto& f : failures) {
            INFO(f);
            REQUIRE(f.empty());
        }
    };
    burst(want_before);
    model->load_state_dict(other->state_dict());
    burst(want_after);
}
