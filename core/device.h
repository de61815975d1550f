// Device memory as core sees it: allocate, free and copy bytes on a CUDA device, with no CUDA
// header in sight. kernels/cuda_loader.cpp implements these by calling the CUDA backend plugin
// (libstrata_cuda.so.0), opened on first use; where it cannot be opened they throw (or, for
// cuda_device_count, report) why: a missing library named by the dynamic loader, or, in a
// CPU-only build, "this build has no CUDA backend".
// Copies are synchronous (they return when the bytes have arrived) and go through the default
// stream, which waits for the work a CudaContext queued on its stream before.
#pragma once
#include <strata/export.h>
#include <cstddef>
#include <string>

namespace strata {

// True when this library was built with the CUDA backend (STRATA_CUDA).
STRATA_API bool cuda_built();
// Number of CUDA devices usable now: 0 in a CPU-only build, with no driver or no GPU. When 0 and
// `why` is given, it receives the reason ("this build has no CUDA backend", the driver's error).
STRATA_API int cuda_device_count(std::string* why = nullptr);

STRATA_API void* device_alloc(size_t nbytes);  // cudaMalloc on the current device; throws Error
STRATA_API void device_free(void* ptr) noexcept;

enum class CopyKind { HostToDevice, DeviceToHost, DeviceToDevice };
STRATA_API void device_copy(void* dst, const void* src, size_t nbytes, CopyKind kind);

}  // namespace strata
