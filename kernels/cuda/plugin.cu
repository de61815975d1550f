// The plugin's side of the boundary (kernels/cuda_plugin.h): the one exported function,
// strata_cuda_plugin(), and the table it returns. Each entry wraps the C++ code of kernels/cuda/
// in guarded(), which turns any exception into an error message, so nothing is ever thrown
// into libstrata; libstrata turns the message back into a strata::Error.
#include <exception>
#include <new>
#include <string>

#include "context.cuh"

struct StrataCudaBlock {
    std::shared_ptr<void> memory;  // gives the block back to its pool when released
};

namespace strata {
namespace cuda_detail {
namespace {

// The message an entry point returns; one per thread, so concurrent contexts do not clobber
// each other's errors. Valid until the thread's next call into the plugin.
thread_local std::string last_error;
// The same for a text that is not an error (context_summary's).
thread_local std::string last_text;

StrataCudaStatus remember(const char* what) noexcept {
    try {
        last_error = what;
        return last_error.c_str();
    } catch (...) {
        return "the CUDA backend failed and ran out of host memory reporting why";
    }
}

// Runs `body`; nullptr when it returned, its exception's message when it threw.
template <typename Body>
StrataCudaStatus guarded(Body&& body) noexcept {
    try {
        body();
        return nullptr;
    } catch (const std::bad_alloc&) {
        return remember("out of host memory in the CUDA backend");
    } catch (const std::exception& e) {
        return remember(e.what());
    } catch (...) {
        return remember("the CUDA backend failed with an unknown exception");
    }
}

// ---- devices and device memory -----------------------------------------------------------

// No device is reported like a failure: *count stays 0 and the reason is returned.
StrataCudaStatus device_count(int* count) noexcept {
    *count = 0;
    int n = 0;
    const StrataCudaStatus why = guarded([&] {
        const cudaError_t status = cudaGetDeviceCount(&n);
        if (status != cudaSuccess) {
            cudaGetLastError();  // clear it: it is not a sticky error, nothing else should see it
            throw Error(std::string("no usable CUDA device (") + cudaGetErrorName(status) + ": " +
                        cudaGetErrorString(status) + ")");
        }
        if (n == 0) throw Error("no CUDA device is present");
    });
    if (!why) *count = n;
    return why;
}

StrataCudaStatus device_alloc(size_t nbytes, void** ptr) noexcept {
    *ptr = nullptr;
    return guarded([&] { STRATA_CUDA_CHECK("alloc", cudaMalloc(ptr, nbytes)); });
}

void device_free(void* ptr) noexcept {
    if (ptr) cudaFree(ptr);
}

StrataCudaStatus device_copy(void* dst, const void* src, size_t nbytes, int kind) noexcept {
    return guarded([&] {
        const cudaMemcpyKind k = kind == STRATA_CUDA_HOST_TO_DEVICE   ? cudaMemcpyHostToDevice
                                 : kind == STRATA_CUDA_DEVICE_TO_HOST ? cudaMemcpyDeviceToHost
                                                                      : cudaMemcpyDeviceToDevice;
        // The legacy default stream waits for the contexts' (blocking) streams, and a copy to the
        // host returns once the bytes are there: results of queued work are complete.
        STRATA_CUDA_CHECK("copy", cudaMemcpy(dst, src, nbytes, k));
        if (kind == STRATA_CUDA_DEVICE_TO_DEVICE) STRATA_CUDA_CHECK("copy", cudaDeviceSynchronize());
    });
}

// ---- contexts ------------------------------------------------------------------------------

StrataCudaStatus context_create(int device, int tf32, StrataCudaContext** ctx, const char** name) noexcept {
    *ctx = nullptr;
    *name = nullptr;
    return guarded([&] {
        std::unique_ptr<Context> created = create_context(device, tf32 != 0);
        *name = created->name.c_str();
        *ctx = created.release();
    });
}

void context_destroy(StrataCudaContext* ctx) noexcept { delete ctx; }

StrataCudaStatus context_synchronize(StrataCudaContext* ctx) noexcept {
    return guarded([&] { synchronize(*ctx); });
}

StrataCudaStatus context_release_cached(StrataCudaContext* ctx) noexcept {
    return guarded([&] {
        synchronize(*ctx);
        ctx->pool->release_cached();
    });
}

StrataCudaStatus context_summary(StrataCudaContext* ctx, const char** text) noexcept {
    *text = nullptr;
    return guarded([&] {
        last_text = summary(*ctx);
        *text = last_text.c_str();
    });
}

StrataCudaStatus context_take(StrataCudaContext* ctx, size_t nbytes, void** ptr, StrataCudaBlock** block) noexcept {
    *ptr = nullptr;
    *block = nullptr;
    if (nbytes == 0) return nullptr;
    return guarded([&] {
        use(*ctx, "alloc");
        auto taken = std::make_unique<StrataCudaBlock>();
        taken->memory = ctx->pool->take(nbytes);
        *ptr = taken->memory.get();
        *block = taken.release();
    });
}

void block_release(StrataCudaBlock* block) noexcept { delete block; }

// ---- graphs --------------------------------------------------------------------------------

StrataCudaStatus graph_begin(StrataCudaContext* ctx) noexcept {
    return guarded([&] { begin_graph(*ctx); });
}

StrataCudaStatus graph_end(StrataCudaContext* ctx, StrataCudaGraph** graph) noexcept {
    *graph = nullptr;
    return guarded([&] { *graph = end_graph(*ctx); });
}

void graph_abort(StrataCudaContext* ctx) noexcept { abort_graph(*ctx); }

StrataCudaStatus graph_replay(StrataCudaGraph* graph) noexcept {
    return guarded([&] { replay(*graph); });
}

void graph_destroy(StrataCudaGraph* graph) noexcept { destroy(graph); }

// ---- kernels -------------------------------------------------------------------------------

StrataCudaStatus conv2d(StrataCudaContext* ctx, const Conv2dParams* p, const float* x, const float* weight,
                        const Conv2dEpilogue* epilogue, float* y, int channels_last) noexcept {
    return guarded([&] { cuda::conv2d(*ctx, *p, x, weight, *epilogue, y, channels_last != 0); });
}

StrataCudaStatus batch_norm(StrataCudaContext* ctx, const BatchNormParams* p, const float* x, const float* weight,
                            const float* bias, const float* mean, const float* var, float* y,
                            int channels_last) noexcept {
    return guarded([&] { cuda::batch_norm(*ctx, *p, x, weight, bias, mean, var, y, channels_last != 0); });
}

StrataCudaStatus relu(StrataCudaContext* ctx, const float* x, float* y, int64_t n) noexcept {
    return guarded([&] { cuda::relu(*ctx, x, y, n); });
}

StrataCudaStatus add(StrataCudaContext* ctx, const float* a, const float* b, float* y, int64_t n,
                     int relu_after) noexcept {
    return guarded([&] { cuda::add(*ctx, a, b, y, n, relu_after != 0); });
}

StrataCudaStatus max_pool2d(StrataCudaContext* ctx, const MaxPool2dParams* p, const float* x, float* y,
                            int channels_last) noexcept {
    return guarded([&] { cuda::max_pool2d(*ctx, *p, x, y, channels_last != 0); });
}

StrataCudaStatus adaptive_avg_pool2d(StrataCudaContext* ctx, const AdaptiveAvgPool2dParams* p, const float* x,
                                     float* y, int channels_last) noexcept {
    return guarded([&] { cuda::adaptive_avg_pool2d(*ctx, *p, x, y, channels_last != 0); });
}

StrataCudaStatus linear(StrataCudaContext* ctx, const LinearParams* p, const float* x, const float* weight,
                        const float* bias, float* y) noexcept {
    return guarded([&] { cuda::linear(*ctx, *p, x, weight, bias, y); });
}

StrataCudaStatus convert_layout(StrataCudaContext* ctx, int64_t n, int64_t c, int64_t h, int64_t w, const float* x,
                                int x_channels_last, float* y, int y_channels_last) noexcept {
    return guarded([&] { cuda::convert_layout(*ctx, n, c, h, w, x, x_channels_last != 0, y, y_channels_last != 0); });
}

#define STRATA_STRINGIFY_(x) #x
#define STRATA_STRINGIFY(x) STRATA_STRINGIFY_(x)

const StrataCudaPlugin kPlugin = {
    STRATA_CUDA_PLUGIN_ABI,
    sizeof(Conv2dParams),
    sizeof(Conv2dEpilogue),
    sizeof(BatchNormParams),
    sizeof(MaxPool2dParams),
    sizeof(AdaptiveAvgPool2dParams),
    sizeof(LinearParams),
    "CUDA " STRATA_STRINGIFY(__CUDACC_VER_MAJOR__) "." STRATA_STRINGIFY(__CUDACC_VER_MINOR__) ", cuDNN " STRATA_STRINGIFY(
        CUDNN_MAJOR) "." STRATA_STRINGIFY(CUDNN_MINOR) "." STRATA_STRINGIFY(CUDNN_PATCHLEVEL),
    device_count,
    device_alloc,
    device_free,
    device_copy,
    context_create,
    context_destroy,
    context_synchronize,
    context_release_cached,
    context_summary,
    context_take,
    block_release,
    graph_begin,
    graph_end,
    graph_abort,
    graph_replay,
    graph_destroy,
    conv2d,
    batch_norm,
    relu,
    add,
    max_pool2d,
    adaptive_avg_pool2d,
    linear,
    convert_layout,
};

}  // namespace
}  // namespace cuda_detail
}  // namespace strata

// The plugin's only exported symbol (everything else is hidden: -fvisibility=hidden).
extern "C" __attribute__((visibility("default"))) const StrataCudaPlugin* strata_cuda_plugin(void) {
    return &strata::cuda_detail::kPlugin;
}
