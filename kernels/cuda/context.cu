// The plugin's contexts (stream, handles, memory pool, plan caches) and CUDA graphs: what
// libstrata's CudaContext and CudaGraph (kernels/cuda_context.h) hold handles to. Everything
// here is host code calling the CUDA runtime, cuDNN and cuBLASLt; plugin.cu exposes it.
#include <sstream>

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

Context& use(Context& ctx, const char*) {
    ctx.activate();
    return ctx;
}

// ---- contexts --------------------------------------------------------------------------

std::unique_ptr<Context> create_context(int device, bool tf32) {
    auto ctx = std::make_unique<Context>();
    ctx->tf32 = tf32;
    ctx->device = device;
    STRATA_CUDA_CHECK("context", cudaSetDevice(device));
    // A blocking stream (not cudaStreamNonBlocking): the synchronous copies of core/device.h,
    // on the legacy default stream, then wait for the work queued here.
    STRATA_CUDA_CHECK("context", cudaStreamCreateWithFlags(&ctx->stream, cudaStreamDefault));
    STRATA_CUDNN_CHECK("context", cudnnCreate(&ctx->cudnn));
    STRATA_CUDNN_CHECK("context", cudnnSetStream(ctx->cudnn, ctx->stream));
    STRATA_CUBLAS_CHECK("context", cublasLtCreate(&ctx->cublaslt));
    ctx->pool = std::make_shared<MemoryPool>();

    cudaDeviceProp prop{};
    STRATA_CUDA_CHECK("context", cudaGetDeviceProperties(&prop, device));
    int runtime = 0, driver = 0;
    cudaRuntimeGetVersion(&runtime);
    cudaDriverGetVersion(&driver);
    const size_t cudnn_version = cudnnGetVersion();
    std::ostringstream name;
    name << prop.name << " (sm_" << prop.major << prop.minor << ", " << prop.multiProcessorCount
         << " SMs, " << (prop.totalGlobalMem >> 20) << " MiB), cuDNN " << cudnn_version / 10000 << "."
         << (cudnn_version / 100) % 100 << "." << cudnn_version % 100 << ", CUDA runtime "
         << runtime / 1000 << "." << (runtime % 1000) / 10 << ", driver " << driver / 1000 << "."
         << (driver % 1000) / 10;
    ctx->name = name.str();
    return ctx;
}

std::string summary(const Context& ctx) {
    static const char* names[] = {"IMPLICIT_GEMM", "IMPLICIT_PRECOMP_GEMM", "GEMM", "DIRECT", "FFT",
                                  "FFT_TILING", "WINOGRAD", "WINOGRAD_NONFUSED"};
    std::map<std::string, int> algos, refusals;
    int fused = 0;
    for (const auto& item : ctx.conv_plans) {
        const auto& plan = *item.second;
        const int a = static_cast<int>(plan.algo);
        algos[a >= 0 && a < 8 ? names[a] : std::to_string(a)]++;
        fused += plan.fused_used;
        if (!plan.fused_refusal.empty()) refusals[plan.fused_refusal]++;
    }
    std::ostringstream os;
    os << ctx.conv_plans.size() << " convolution shapes (" << fused << " with cuDNN's fused bias+ReLU), algorithms";
    for (const auto& [name, n] : algos) os << " " << name << " x" << n;
    for (const auto& [status, n] : refusals) os << "; fused call refused (" << status << ") x" << n;
    os << "; " << ctx.linear_plans.size() << " matrix product shapes";
    return os.str();
}

void synchronize(Context& ctx) {
    ctx.activate();
    STRATA_CUDA_CHECK("synchronize", cudaStreamSynchronize(ctx.stream));
    STRATA_CUDA_CHECK("synchronize", cudaGetLastError());
}

}  // namespace cuda_detail
}  // namespace strata

StrataCudaContext::~StrataCudaContext() {
    conv_plans.clear();
    linear_plans.clear();
    if (stream) cudaStreamSynchronize(stream);
    if (cublaslt) cublasLtDestroy(cublaslt);
    if (cudnn) cudnnDestroy(cudnn);
    if (stream) cudaStreamDestroy(stream);
}

void StrataCudaContext::activate() {
    int current = -1;
    STRATA_CUDA_CHECK("activate", cudaGetDevice(&current));
    if (current != device) STRATA_CUDA_CHECK("activate", cudaSetDevice(device));
}

std::shared_ptr<void> StrataCudaContext::scratch(size_t nbytes) { return pool->take(nbytes); }

// ---- CUDA graphs -------------------------------------------------------------------------
// libstrata's CudaGraph::capture runs the call once eagerly, then begin_graph, the call again
// (recorded, not run), then end_graph; abort_graph when the recorded call throws.

struct StrataCudaGraph {
    StrataCudaContext* ctx = nullptr;
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    std::shared_ptr<strata::cuda_detail::MemoryPool> pool;  // the memory the graph replays into
    ~StrataCudaGraph() {
        if (exec) cudaGraphExecDestroy(exec);
        if (graph) cudaGraphDestroy(graph);
    }
};

namespace strata {
namespace cuda_detail {

namespace {
// Back to normal allocation: the context's pool serves requests again.
void stop_capturing(Context& ctx) noexcept {
    ctx.pool->capture.reset();
    ctx.capture_pool.reset();
    ctx.capturing = false;
}
}  // namespace

void begin_graph(Context& ctx) {
    use(ctx, "graph capture");
    STRATA_CHECK(!ctx.capturing, "cuda graph capture: this context is already capturing");
    ctx.capture_pool = std::make_shared<MemoryPool>();
    ctx.pool->capture = ctx.capture_pool;
    ctx.capturing = true;
    // Relaxed: the pool may still need a cudaMalloc while capturing.
    const cudaError_t status = cudaStreamBeginCapture(ctx.stream, cudaStreamCaptureModeRelaxed);
    if (status != cudaSuccess) stop_capturing(ctx);
    STRATA_CUDA_CHECK("graph capture", status);
}

StrataCudaGraph* end_graph(Context& ctx) {
    STRATA_CHECK(ctx.capturing, "cuda graph capture: this context is not capturing");
    auto graph = std::make_unique<StrataCudaGraph>();
    graph->ctx = &ctx;
    graph->pool = ctx.capture_pool;
    const cudaError_t status = cudaStreamEndCapture(ctx.stream, &graph->graph);
    stop_capturing(ctx);
    STRATA_CUDA_CHECK("graph capture", status);
    STRATA_CUDA_CHECK("graph capture", cudaGraphInstantiate(&graph->exec, graph->graph, 0));
    return graph.release();
}

void abort_graph(Context& ctx) noexcept {
    if (!ctx.capturing) return;
    cudaGraph_t broken = nullptr;
    cudaStreamEndCapture(ctx.stream, &broken);
    if (broken) cudaGraphDestroy(broken);
    cudaGetLastError();
    stop_capturing(ctx);
}

void replay(StrataCudaGraph& graph) {
    graph.ctx->activate();
    STRATA_CUDA_CHECK("graph replay", cudaGraphLaunch(graph.exec, graph.ctx->stream));
}

void destroy(StrataCudaGraph* graph) noexcept { delete graph; }

}  // namespace cuda_detail
}  // namespace strata
