// The boundary between libstrata and its CUDA backend, libstrata_cuda.so.0 (kernels/cuda/).
//
// Why a plugin: the CUDA backend needs cuDNN and cuBLASLt, over half a gigabyte of shared
// libraries. Linked into libstrata they would be loaded (and must exist) in every process, CPU
// users included. So kernels/cuda/ is its own shared library, which libstrata opens with dlopen
// the first time a CUDA backend is asked for (kernels/cuda_loader.cpp), and nothing else.
//
// The boundary is one C function, strata_cuda_plugin(), returning the table below. It is kept
// narrow and checked on load:
//   - abi_version must equal STRATA_CUDA_PLUGIN_ABI and the parameter structs must have the
//     sizes libstrata was compiled with; otherwise the plugin is refused with a clear error.
//     Bump STRATA_CUDA_PLUGIN_ABI whenever this table or one of those structs changes.
//   - no C++ exception crosses it: a function that can fail returns nullptr on success or an
//     error message, owned by the plugin and valid until the same thread's next call into the
//     plugin; libstrata copies it into a strata::Error at once.
//   - objects cross it as opaque handles (StrataCudaContext, ...), created and destroyed by the
//     plugin; memory blocks and tensors stay owned by whoever allocated them.
// Plain data (the kernel parameter structs, pointers, integers) crosses as is: both sides are
// built from the same headers, in the same build, and installed together.
#pragma once
#include <cstddef>
#include <cstdint>

namespace strata {
struct Conv2dParams;
struct Conv2dEpilogue;
struct BatchNormParams;
struct MaxPool2dParams;
struct AdaptiveAvgPool2dParams;
struct LinearParams;
}  // namespace strata

#define STRATA_CUDA_PLUGIN_ABI 1u
// The one symbol the plugin exports, looked up with dlsym.
#define STRATA_CUDA_PLUGIN_ENTRY "strata_cuda_plugin"

extern "C" {

typedef struct StrataCudaContext StrataCudaContext;  // a stream, cuDNN/cuBLASLt handles, pool, plans
typedef struct StrataCudaGraph StrataCudaGraph;      // an instantiated CUDA graph
typedef struct StrataCudaBlock StrataCudaBlock;      // a block of a context's memory pool

// nullptr: success. Otherwise the error, as described above.
typedef const char* StrataCudaStatus;

enum StrataCudaCopyKind { STRATA_CUDA_HOST_TO_DEVICE = 0, STRATA_CUDA_DEVICE_TO_HOST = 1, STRATA_CUDA_DEVICE_TO_DEVICE = 2 };

struct StrataCudaPlugin {
    uint32_t abi_version;  // STRATA_CUDA_PLUGIN_ABI as the plugin was built
    // sizeof of each struct passed by pointer, as the plugin was built (checked by the loader)
    uint32_t sizeof_conv2d_params, sizeof_conv2d_epilogue, sizeof_batch_norm_params,
        sizeof_max_pool2d_params, sizeof_adaptive_avg_pool2d_params, sizeof_linear_params;
    const char* built_with;  // "CUDA 13.0, cuDNN 9.13.0", for messages

    // ---- devices and plain device memory (core/device.h) ----
    // *count = usable devices; when 0, returns why ("no CUDA device is present", the driver's error).
    StrataCudaStatus (*device_count)(int* count);
    StrataCudaStatus (*device_alloc)(size_t nbytes, void** ptr);
    void (*device_free)(void* ptr);
    StrataCudaStatus (*device_copy)(void* dst, const void* src, size_t nbytes, int kind);  // StrataCudaCopyKind

    // ---- contexts (kernels/cuda_context.h) ----
    // device: an existing device (the caller checked); tf32: 0 or 1. *name: the device's
    // description ("NVIDIA H100 (sm_90, ...), cuDNN 9.13.0, CUDA runtime 13.0, driver 13.0"),
    // owned by the context.
    StrataCudaStatus (*context_create)(int device, int tf32, StrataCudaContext** ctx, const char** name);
    void (*context_destroy)(StrataCudaContext* ctx);  // waits for the context's stream first
    StrataCudaStatus (*context_synchronize)(StrataCudaContext* ctx);
    StrataCudaStatus (*context_release_cached)(StrataCudaContext* ctx);  // synchronizes first
    StrataCudaStatus (*context_summary)(StrataCudaContext* ctx, const char** text);  // valid as a status is
    // nbytes of device memory from the context's pool (*ptr = nullptr, *block = nullptr for 0).
    // The block keeps the pool alive; block_release gives it back (and never fails).
    StrataCudaStatus (*context_take)(StrataCudaContext* ctx, size_t nbytes, void** ptr, StrataCudaBlock** block);
    void (*block_release)(StrataCudaBlock* block);

    // ---- CUDA graphs: libstrata runs the recorded call between begin and end ----
    StrataCudaStatus (*graph_begin)(StrataCudaContext* ctx);
    StrataCudaStatus (*graph_end)(StrataCudaContext* ctx, StrataCudaGraph** graph);
    void (*graph_abort)(StrataCudaContext* ctx);  // the call failed: stop capturing, drop the graph
    StrataCudaStatus (*graph_replay)(StrataCudaGraph* graph);
    void (*graph_destroy)(StrataCudaGraph* graph);

    // ---- kernels (kernels/*.h, namespace cuda); flags are 0 or 1 ----
    StrataCudaStatus (*conv2d)(StrataCudaContext* ctx, const strata::Conv2dParams* p, const float* x,
                               const float* weight, const strata::Conv2dEpilogue* epilogue, float* y,
                               int channels_last);
    StrataCudaStatus (*batch_norm)(StrataCudaContext* ctx, const strata::BatchNormParams* p, const float* x,
                                   const float* weight, const float* bias, const float* mean, const float* var,
                                   float* y, int channels_last);
    StrataCudaStatus (*relu)(StrataCudaContext* ctx, const float* x, float* y, int64_t n);
    StrataCudaStatus (*add)(StrataCudaContext* ctx, const float* a, const float* b, float* y, int64_t n,
                            int relu_after);
    StrataCudaStatus (*max_pool2d)(StrataCudaContext* ctx, const strata::MaxPool2dParams* p, const float* x,
                                   float* y, int channels_last);
    StrataCudaStatus (*adaptive_avg_pool2d)(StrataCudaContext* ctx, const strata::AdaptiveAvgPool2dParams* p,
                                            const float* x, float* y, int channels_last);
    StrataCudaStatus (*linear)(StrataCudaContext* ctx, const strata::LinearParams* p, const float* x,
                               const float* weight, const float* bias, float* y);
    StrataCudaStatus (*convert_layout)(StrataCudaContext* ctx, int64_t n, int64_t c, int64_t h, int64_t w,
                                       const float* x, int x_channels_last, float* y, int y_channels_last);
};

// The entry point's type: returns the plugin's table (static storage, never freed).
typedef const StrataCudaPlugin* (*StrataCudaPluginEntry)(void);

}  // extern "C"
