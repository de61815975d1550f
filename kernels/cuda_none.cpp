// What a build without the CUDA backend (STRATA_CUDA=OFF, or AUTO with no toolkit) links in
// place of kernels/cuda/: the same entry points, each failing with one clear message. No CUDA
// header is needed to compile it. The layers can reach the cuda:: kernels only through a
// CudaContext, which cannot be created here, so in practice the first error a caller sees is
// CudaContext::create()'s (or Tensor::to(Device::CUDA)'s).
#include <memory>
#include <string>
#include <utility>

#include "../core/device.h"
#include "../core/error.h"
#include "adaptive_avg_pool2d.h"
#include "batch_norm.h"
#include "conv2d.h"
#include "cuda_context.h"
#include "relu.h"
#include "layout.h"
#include "linear.h"
#include "max_pool2d.h"

namespace strata {

namespace {
const char* kNoCuda = "this build has no CUDA backend; rebuild with -DSTRATA_CUDA=ON";
[[noreturn]] void no_cuda() { throw Error(kNoCuda); }
}  // namespace

bool cuda_built() { return false; }
int cuda_device_count(std::string* why) {
    if (why) *why = kNoCuda;
    return 0;
}
void* device_alloc(size_t) { no_cuda(); }
void device_free(void*) noexcept {}
void device_copy(void*, const void*, size_t, CopyKind) { no_cuda(); }

struct CudaContext::Impl {};
CudaContext::CudaContext(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaContext::~CudaContext() = default;
std::shared_ptr<CudaContext> CudaContext::create(const CudaOptions&) { no_cuda(); }
const CudaOptions& CudaContext::options() const { no_cuda(); }
bool CudaContext::channels_last() const { no_cuda(); }
std::string CudaContext::device_name() const { no_cuda(); }
Tensor CudaContext::empty(const Shape&, bool) { no_cuda(); }
void CudaContext::synchronize() { no_cuda(); }
void CudaContext::release_cached_memory() {}
std::string CudaContext::summary() const { no_cuda(); }

struct CudaGraph::Impl {};
CudaGraph::CudaGraph(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaGraph::~CudaGraph() = default;
std::unique_ptr<CudaGraph> CudaGraph::capture(CudaContext&, const std::function<void()>&) { no_cuda(); }
void CudaGraph::replay() { no_cuda(); }

namespace cuda {
void conv2d(CudaContext&, const Conv2dParams&, const float*, const float*, const Conv2dEpilogue&, float*, bool) { no_cuda(); }
void batch_norm(CudaContext&, const BatchNormParams&, const float*, const float*, const float*, const float*,
                const float*, float*, bool) { no_cuda(); }
void relu(CudaContext&, const float*, float*, int64_t) { no_cuda(); }
void add(CudaContext&, const float*, const float*, float*, int64_t, bool) { no_cuda(); }
void max_pool2d(CudaContext&, const MaxPool2dParams&, const float*, float*, bool) { no_cuda(); }
void adaptive_avg_pool2d(CudaContext&, const AdaptiveAvgPool2dParams&, const float*, float*, bool) { no_cuda(); }
void linear(CudaContext&, const LinearParams&, const float*, const float*, const float*, float*) { no_cuda(); }
void convert_layout(CudaContext&, int64_t, int64_t, int64_t, int64_t, const float*, bool, float*, bool) { no_cuda(); }
}  // namespace cuda

}  // namespace strata
