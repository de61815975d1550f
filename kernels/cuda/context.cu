// CudaContext, CudaGraph, the memory pool and core's device-memory hooks (core/device.h) for
// the CUDA build. Everything here is host code calling the CUDA runtime, cuDNN and cuBLASLt.
#include <sstream>

#include "../../core/device.h"
#include "context.cuh"

namespace strata {

namespace cuda_detail {

void fail(const char* op, const char* call, const char* library, const std::string& status) {
    throw Error(std::string("cuda ") + op + ": " + library + " call " + call + " failed: " + status);
}

const char* cublas_status_name(cublasStatus_t status) {
    switch (status) {
        case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
        case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
        case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
        case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
        case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
        case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
        case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
        case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
        case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
        case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
        default: return "unknown cuBLAS status";
    }
}

// ---- MemoryPool ------------------------------------------------------------------------

namespace {
size_t round_block(size_t nbytes) {
    const size_t unit = nbytes < (size_t(1) << 20) ? 512 : (size_t(1) << 20);
    return (nbytes + unit - 1) / unit * unit;
}
}  // namespace

MemoryPool::~MemoryPool() {
    for (auto& block : owned_) cudaFree(block.first);  // errors ignored: destructors never throw
}

std::shared_ptr<void> MemoryPool::take(size_t nbytes) {
    if (nbytes == 0) return nullptr;
    if (capture) return capture->take_from_self(nbytes, this);
    return take_from_self(nbytes, nullptr);
}

std::shared_ptr<void> MemoryPool::take_from_self(size_t nbytes, MemoryPool* lender) {
    const size_t rounded = round_block(nbytes);
    void* ptr = nullptr;
    size_t size = rounded;
    // Best fit among free blocks no more than twice the size asked for.
    auto pick = [rounded](std::multimap<size_t, void*>& free) {
        auto it = free.lower_bound(rounded);
        return it != free.end() && it->first <= 2 * rounded ? it : free.end();
    };
    if (auto it = pick(free_); it != free_.end()) {
        size = it->first;
        ptr = it->second;
        free_.erase(it);
    } else if (lender) {
        if (auto jt = pick(lender->free_); jt != lender->free_.end()) {
            size = jt->first;
            ptr = jt->second;
            lender->free_.erase(jt);
            lender->owned_.erase(ptr);
            owned_.emplace(ptr, size);
        }
    }
    if (!ptr) {
        cudaError_t status = cudaMalloc(&ptr, rounded);
        if (status == cudaErrorMemoryAllocation) {  // give cached blocks back and try once more
            cudaGetLastError();
            release_cached();
            if (lender) lender->release_cached();
            status = cudaMalloc(&ptr, rounded);
        }
        STRATA_CUDA_CHECK("memory pool", status);
        owned_.emplace(ptr, rounded);
        size = rounded;
    }
    std::shared_ptr<MemoryPool> self = shared_from_this();
    return std::shared_ptr<void>(ptr, [self, size](void* p) { self->give_back(p, size); });
}

void MemoryPool::give_back(void* ptr, size_t size) noexcept {
    try {
        free_.emplace(size, ptr);
    } catch (...) {  // out of host memory: the block stays owned and is freed with the pool
    }
}

void MemoryPool::release_cached() noexcept {
    for (auto& block : free_) {
        cudaFree(block.second);
        owned_.erase(block.second);
    }
    free_.clear();
}

// ---- plans -----------------------------------------------------------------------------

ConvPlan::~ConvPlan() {
    if (x) cudnnDestroyTensorDescriptor(x);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (bias) cudnnDestroyTensorDescriptor(bias);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
    if (relu) cudnnDestroyActivationDescriptor(relu);
}

LinearPlan::~LinearPlan() {
    if (op) cublasLtMatmulDescDestroy(op);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (d) cublasLtMatrixLayoutDestroy(d);
}

CudaContext::Impl& use(CudaContext& ctx, const char*) {
    CudaContext::Impl& impl = ctx.impl();
    impl.activate();
    return impl;
}

}  // namespace cuda_detail

// ---- core/device.h ---------------------------------------------------------------------

bool cuda_built() { return true; }

int cuda_device_count(std::string* why) {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
        cudaGetLastError();
        if (why) *why = std::string("no usable CUDA device (") + cudaGetErrorName(status) + ": " +
                        cudaGetErrorString(status) + ")";
        return 0;
    }
    if (count == 0 && why) *why = "no CUDA device is present";
    return count;
}

void* device_alloc(size_t nbytes) {
    void* ptr = nullptr;
    STRATA_CUDA_CHECK("alloc", cudaMalloc(&ptr, nbytes));
    return ptr;
}

void device_free(void* ptr) noexcept {
    if (ptr) cudaFree(ptr);
}

void device_copy(void* dst, const void* src, size_t nbytes, CopyKind kind) {
    const cudaMemcpyKind k = kind == CopyKind::HostToDevice   ? cudaMemcpyHostToDevice
                             : kind == CopyKind::DeviceToHost ? cudaMemcpyDeviceToHost
                                                              : cudaMemcpyDeviceToDevice;
    // The legacy default stream waits for the contexts' (blocking) streams, and a copy to the
    // host returns once the bytes are there: results of queued work are complete.
    STRATA_CUDA_CHECK("copy", cudaMemcpy(dst, src, nbytes, k));
    if (kind == CopyKind::DeviceToDevice) STRATA_CUDA_CHECK("copy", cudaDeviceSynchronize());
}

// ---- CudaContext -----------------------------------------------------------------------

CudaContext::Impl::~Impl() {
    conv_plans.clear();
    linear_plans.clear();
    if (stream) cudaStreamSynchronize(stream);
    if (cublaslt) cublasLtDestroy(cublaslt);
    if (cudnn) cudnnDestroy(cudnn);
    if (stream) cudaStreamDestroy(stream);
}

void CudaContext::Impl::activate() {
    int current = -1;
    STRATA_CUDA_CHECK("activate", cudaGetDevice(&current));
    if (current != device) STRATA_CUDA_CHECK("activate", cudaSetDevice(device));
}

std::shared_ptr<void> CudaContext::Impl::scratch(size_t nbytes) { return pool->take(nbytes); }

CudaContext::CudaContext(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaContext::~CudaContext() = default;

std::shared_ptr<CudaContext> CudaContext::create(const CudaOptions& options) {
    std::string why;
    const int count = cuda_device_count(&why);
    STRATA_CHECK(count > 0, "CUDA was asked for but ", why);
    STRATA_CHECK(options.device >= 0 && options.device < count, "CUDA device ", options.device,
                 " does not exist; this machine has ", count, " (0..", count - 1, ")");
    auto impl = std::make_unique<Impl>();
    impl->options = options;
    impl->device = options.device;
    impl->channels_last = options.channels_last < 0 ? options.tf32 : options.channels_last != 0;
    STRATA_CUDA_CHECK("context", cudaSetDevice(options.device));
    // A blocking stream (not cudaStreamNonBlocking): the synchronous copies of core/device.h,
    // on the legacy default stream, then wait for the work queued here.
    STRATA_CUDA_CHECK("context", cudaStreamCreateWithFlags(&impl->stream, cudaStreamDefault));
    STRATA_CUDNN_CHECK("context", cudnnCreate(&impl->cudnn));
    STRATA_CUDNN_CHECK("context", cudnnSetStream(impl->cudnn, impl->stream));
    STRATA_CUBLAS_CHECK("context", cublasLtCreate(&impl->cublaslt));
    impl->pool = std::make_shared<cuda_detail::MemoryPool>();

    cudaDeviceProp prop{};
    STRATA_CUDA_CHECK("context", cudaGetDeviceProperties(&prop, options.device));
    int runtime = 0, driver = 0;
    cudaRuntimeGetVersion(&runtime);
    cudaDriverGetVersion(&driver);
    const size_t cudnn_version = cudnnGetVersion();
    std::ostringstream name;
    name << prop.name << " (sm_" << prop.major << prop.minor << ", " << prop.multiProcessorCount
         << " SMs, " << (prop.totalGlobalMem >> 20) << " MiB), cuDNN " << cudnn_version / 10000 << "."
         << (cudnn_version / 100) % 100 << "." << cudnn_version % 100 << ", CUDA runtime "
         << runtime / 1000 << "." << (runtime % 1000) / 10 << ", driver " << driver / 1000 << "."
         << (driver % 1000) / 10 << ", " << (options.tf32 ? "TF32 on" : "TF32 off") << ", "
         << (impl->channels_last ? "NHWC" : "NCHW") << " activations";
    impl->name = name.str();
    return std::shared_ptr<CudaContext>(new CudaContext(std::move(impl)));
}

std::string CudaContext::summary() const {
    static const char* names[] = {"IMPLICIT_GEMM", "IMPLICIT_PRECOMP_GEMM", "GEMM", "DIRECT", "FFT",
                                  "FFT_TILING", "WINOGRAD", "WINOGRAD_NONFUSED"};
    std::map<std::string, int> algos, refusals;
    int fused = 0;
    for (const auto& item : impl_->conv_plans) {
        const auto& plan = *item.second;
        const int a = static_cast<int>(plan.algo);
        algos[a >= 0 && a < 8 ? names[a] : std::to_string(a)]++;
        fused += plan.fused_used;
        if (!plan.fused_refusal.empty()) refusals[plan.fused_refusal]++;
    }
    std::ostringstream os;
    os << impl_->conv_plans.size() << " convolution shapes (" << fused << " with cuDNN's fused bias+ReLU), algorithms";
    for (const auto& [name, n] : algos) os << " " << name << " x" << n;
    for (const auto& [status, n] : refusals) os << "; fused call refused (" << status << ") x" << n;
    os << "; " << impl_->linear_plans.size() << " matrix product shapes";
    return os.str();
}

const CudaOptions& CudaContext::options() const { return impl_->options; }
bool CudaContext::channels_last() const { return impl_->channels_last; }
std::string CudaContext::device_name() const { return impl_->name; }

Tensor CudaContext::empty(const Shape& shape, bool channels_last) {
    impl_->activate();
    const int64_t n = shape_numel(shape);
    const size_t nbytes = static_cast<size_t>(n) * sizeof(float);
    std::shared_ptr<void> block = impl_->pool->take(nbytes);
    void* ptr = block.get();
    auto storage = Storage::borrow(ptr, nbytes, std::move(block), Device::CUDA);
    return Tensor(std::move(storage), 0, shape,
                  channels_last ? channels_last_strides(shape) : contiguous_strides(shape), DType::Float32);
}

void CudaContext::synchronize() {
    impl_->activate();
    STRATA_CUDA_CHECK("synchronize", cudaStreamSynchronize(impl_->stream));
    STRATA_CUDA_CHECK("synchronize", cudaGetLastError());
}

void CudaContext::release_cached_memory() {
    synchronize();
    impl_->pool->release_cached();
}

// ---- CudaGraph -------------------------------------------------------------------------

struct CudaGraph::Impl {
    CudaContext::Impl* ctx = nullptr;
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    std::shared_ptr<cuda_detail::MemoryPool> pool;  // the memory the graph replays into
    ~Impl() {
        if (exec) cudaGraphExecDestroy(exec);
        if (graph) cudaGraphDestroy(graph);
    }
};

CudaGraph::CudaGraph(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaGraph::~CudaGraph() = default;

std::unique_ptr<CudaGraph> CudaGraph::capture(CudaContext& ctx, const std::function<void()>& call) {
    CudaContext::Impl& im = cuda_detail::use(ctx, "graph capture");
    STRATA_CHECK(!im.capturing, "cuda graph capture: this context is already capturing");
    // Once eagerly: algorithm searches, weight folding and layout caches happen outside capture.
    call();
    ctx.synchronize();

    auto graph = std::make_unique<Impl>();
    graph->ctx = &im;
    graph->pool = std::make_shared<cuda_detail::MemoryPool>();
    im.pool->capture = graph->pool;
    im.capturing = true;
    auto end_capture = [&im] {
        im.pool->capture.reset();
        im.capturing = false;
    };
    // Relaxed: the pool may still need a cudaMalloc while capturing.
    STRATA_CUDA_CHECK("graph capture", cudaStreamBeginCapture(im.stream, cudaStreamCaptureModeRelaxed));
    try {
        call();
    } catch (...) {
        cudaGraph_t broken = nullptr;
        cudaStreamEndCapture(im.stream, &broken);
        if (broken) cudaGraphDestroy(broken);
        cudaGetLastError();
        end_capture();
        throw;
    }
    const cudaError_t status = cudaStreamEndCapture(im.stream, &graph->graph);
    end_capture();
    STRATA_CUDA_CHECK("graph capture", status);
    STRATA_CUDA_CHECK("graph capture", cudaGraphInstantiate(&graph->exec, graph->graph, 0));
    return std::make_unique<CudaGraph>(std::move(graph));
}

void CudaGraph::replay() {
    impl_->ctx->activate();
    STRATA_CUDA_CHECK("graph replay", cudaGraphLaunch(impl_->exec, impl_->ctx->stream));
}

}  // namespace strata
