// libstrata's side of the CUDA backend: finds and opens the plugin (libstrata_cuda.so.0, see
// kernels/cuda_plugin.h) the first time CUDA is asked for, and implements core/device.h,
// CudaContext, CudaGraph and the cuda:: kernels by calling through the plugin's table.
// Nothing CUDA is linked into libstrata: a CPU-only process never opens cuDNN or cuBLASLt.
//
// In a build without the CUDA backend (STRATA_CUDA=OFF: STRATA_CUDA_PLUGIN_FILE undefined) the
// same code is compiled but there is nothing to load: every entry point fails with
// "this build has no CUDA backend; rebuild with -DSTRATA_CUDA=ON", and no dlopen is linked.
#include "cuda_loader.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../core/device.h"
#include "../core/error.h"
#include "adaptive_avg_pool2d.h"
#include "batch_norm.h"
#include "conv2d.h"
#include "cuda_context.h"
#include "layout.h"
#include "linear.h"
#include "max_pool2d.h"
#include "relu.h"

#ifdef STRATA_CUDA_PLUGIN_FILE
#include <dlfcn.h>
#include <link.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#endif

namespace strata {

namespace {

#ifndef STRATA_CUDA_PLUGIN_FILE
const char* const kNoCuda = "this build has no CUDA backend; rebuild with -DSTRATA_CUDA=ON";
#endif

// A failed plugin call: its message becomes the Error libstrata callers see.
void check(StrataCudaStatus status) {
    if (status) throw Error(status);
}

#ifdef STRATA_CUDA_PLUGIN_FILE

std::string directory_of(const std::string& path) {
    const size_t slash = path.rfind('/');
    return slash == std::string::npos ? std::string(".") : path.substr(0, slash);
}

// The directory holding the file this code was loaded from, symlinks resolved: libstrata.so's,
// or the executable's when libstrata.a is linked into it ("" if it cannot be told).
std::string own_directory() {
    static const char anchor = 0;  // any object of libstrata will do
    Dl_info info{};
    link_map* map = nullptr;
    std::string file;
    if (dladdr1(&anchor, &info, reinterpret_cast<void**>(&map), RTLD_DL_LINKMAP) && map && map->l_name &&
        map->l_name[0])
        file = map->l_name;
    else
        file = "/proc/self/exe";  // the main program has no name in its link map
    char resolved[PATH_MAX];
    if (!realpath(file.c_str(), resolved)) return "";
    return directory_of(resolved);
}

std::vector<std::string> candidate_paths() {
    std::vector<std::string> paths;
    const std::string dir = own_directory();
    if (dir.empty()) return paths;
    paths.push_back(dir + "/" STRATA_CUDA_PLUGIN_FILE);
    const std::string libdir = STRATA_INSTALL_LIBDIR;
    if (!libdir.empty() && libdir[0] != '/') paths.push_back(dir + "/../" + libdir + "/" STRATA_CUDA_PLUGIN_FILE);
    return paths;
}

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

std::string last_dl_error() {
    const char* e = dlerror();
    return e ? e : "unknown dlopen error";
}

CudaPluginLoad find_and_load() {
    const char* env = std::getenv("STRATA_CUDA_LIBRARY");
    if (env && *env) {
        CudaPluginLoad load = load_cuda_plugin(env);
        if (!load.plugin) load.error += "; STRATA_CUDA_LIBRARY names that file";
        return load;
    }
    // The first candidate that exists is the one: if it fails (a dependency such as cuDNN is
    // missing), that is the error to report, not "not found" from a later place.
    for (const std::string& path : candidate_paths())
        if (exists(path)) return load_cuda_plugin(path);
    // Nothing beside libstrata: the dynamic loader's search, by file name.
    dlerror();
    if (void* handle = dlopen(STRATA_CUDA_PLUGIN_FILE, RTLD_NOW | RTLD_LOCAL)) {
        dlclose(handle);  // found; load_cuda_plugin opens it again (a reference count) and checks it
        return load_cuda_plugin(STRATA_CUDA_PLUGIN_FILE);
    }
    const std::string why = last_dl_error();
    CudaPluginLoad load;
    load.path = STRATA_CUDA_PLUGIN_FILE;
    // A plugin found by the search whose dependency is missing names that dependency first.
    if (why.rfind(STRATA_CUDA_PLUGIN_FILE ":", 0) != 0)
        load.error = "CUDA backend unavailable: " + why + " (loading " STRATA_CUDA_PLUGIN_FILE ")";
    else
        load.error = "CUDA backend unavailable: " STRATA_CUDA_PLUGIN_FILE " was not found (looked in " +
                     cuda_plugin_search_path() + "); set STRATA_CUDA_LIBRARY to its path";
    return load;
}

#endif  // STRATA_CUDA_PLUGIN_FILE

// The loaded plugin, or an Error saying why there is none.
const StrataCudaPlugin& plugin() {
    const CudaPluginLoad& load = cuda_backend();
    if (!load.plugin) throw Error(load.error);
    return *load.plugin;
}

}  // namespace

CudaPluginLoad load_cuda_plugin(const std::string& path) {
    CudaPluginLoad load;
    load.path = path;
#ifndef STRATA_CUDA_PLUGIN_FILE
    load.error = kNoCuda;
#else
    const std::string where = " (loading " + path + ")";
    dlerror();
    // RTLD_NOW: a missing symbol fails here, with a message, rather than later in the middle of a
    // forward call. RTLD_LOCAL: the plugin's CUDA libraries stay out of everyone else's way.
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        load.error = "CUDA backend unavailable: " + last_dl_error() + where;
        return load;
    }
    const auto entry = reinterpret_cast<StrataCudaPluginEntry>(dlsym(handle, STRATA_CUDA_PLUGIN_ENTRY));
    if (!entry) {
        load.error = "CUDA backend unavailable: " + path + " is not a strata CUDA plugin (it has no " +
                     STRATA_CUDA_PLUGIN_ENTRY + ")";
        dlclose(handle);  // nothing of it was used
        return load;
    }
    const StrataCudaPlugin* table = entry();
    if (!table || table->abi_version != STRATA_CUDA_PLUGIN_ABI) {
        load.error = "CUDA backend unavailable: " + path + " is a strata CUDA plugin for ABI version " +
                     (table ? std::to_string(table->abi_version) : std::string("(none)")) +
                     ", this libstrata needs version " + std::to_string(STRATA_CUDA_PLUGIN_ABI) +
                     "; install the libstrata_cuda built with this libstrata";
        dlclose(handle);
        return load;
    }
    // Same version, different structs: a plugin built from other sources. Refused rather than
    // trusted with parameters it would read wrongly.
    const bool sizes_match = table->sizeof_conv2d_params == sizeof(Conv2dParams) &&
                             table->sizeof_conv2d_epilogue == sizeof(Conv2dEpilogue) &&
                             table->sizeof_batch_norm_params == sizeof(BatchNormParams) &&
                             table->sizeof_max_pool2d_params == sizeof(MaxPool2dParams) &&
                             table->sizeof_adaptive_avg_pool2d_params == sizeof(AdaptiveAvgPool2dParams) &&
                             table->sizeof_linear_params == sizeof(LinearParams);
    if (!sizes_match) {
        load.error = "CUDA backend unavailable: " + path +
                     " was built from other strata sources (its kernel parameter structs differ from this "
                     "libstrata's); install the libstrata_cuda built with this libstrata";
        dlclose(handle);
        return load;
    }
    load.plugin = table;  // and `handle` stays open for the rest of the process
#endif
    return load;
}

std::string cuda_plugin_search_path() {
#ifndef STRATA_CUDA_PLUGIN_FILE
    return "";
#else
    std::string text;
    for (const std::string& path : candidate_paths()) text += directory_of(path) + ", ";
    return text + "the system library path";
#endif
}

const CudaPluginLoad& cuda_backend() {
#ifndef STRATA_CUDA_PLUGIN_FILE
    static const CudaPluginLoad none{nullptr, "", kNoCuda};
    return none;
#else
    static const CudaPluginLoad loaded = find_and_load();  // once, thread-safe (a function static)
    return loaded;
#endif
}

// ---- core/device.h -----------------------------------------------------------------------------

bool cuda_built() {
#ifdef STRATA_CUDA_PLUGIN_FILE
    return true;
#else
    return false;
#endif
}

int cuda_device_count(std::string* why) {
    const CudaPluginLoad& load = cuda_backend();
    if (!load.plugin) {
        if (why) *why = load.error;
        return 0;
    }
    int count = 0;
    const StrataCudaStatus status = load.plugin->device_count(&count);
    if (status && why) *why = status;
    return status ? 0 : count;
}

void* device_alloc(size_t nbytes) {
    void* ptr = nullptr;
    check(plugin().device_alloc(nbytes, &ptr));
    return ptr;
}

void device_free(void* ptr) noexcept {
    // Device memory exists only if the plugin loaded, so a non-null pointer implies it.
    if (ptr && cuda_backend().plugin) cuda_backend().plugin->device_free(ptr);
}

void device_copy(void* dst, const void* src, size_t nbytes, CopyKind kind) {
    const int k = kind == CopyKind::HostToDevice   ? STRATA_CUDA_HOST_TO_DEVICE
                  : kind == CopyKind::DeviceToHost ? STRATA_CUDA_DEVICE_TO_HOST
                                                   : STRATA_CUDA_DEVICE_TO_DEVICE;
    check(plugin().device_copy(dst, src, nbytes, k));
}

// ---- CudaContext ---------------------------------------------------------------------------

// libstrata's view of a context: the plugin's handle, and the options as resolved here.
struct CudaContext::Impl {
    const StrataCudaPlugin* plugin = nullptr;
    StrataCudaContext* handle = nullptr;
    CudaOptions options;
    bool channels_last = false;
    std::string name;
    ~Impl() {
        if (handle) plugin->context_destroy(handle);
    }
};

CudaContext::CudaContext(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaContext::~CudaContext() = default;

std::shared_ptr<CudaContext> CudaContext::create(const CudaOptions& options) {
    const StrataCudaPlugin& api = plugin();
    std::string why;
    const int count = cuda_device_count(&why);
    STRATA_CHECK(count > 0, "CUDA was asked for but ", why);
    STRATA_CHECK(options.device >= 0 && options.device < count, "CUDA device ", options.device,
                 " does not exist; this machine has ", count, " (0..", count - 1, ")");
    auto impl = std::make_unique<Impl>();
    impl->plugin = &api;
    impl->options = options;
    impl->channels_last = options.channels_last < 0 ? options.tf32 : options.channels_last != 0;
    const char* device = nullptr;
    check(api.context_create(options.device, options.tf32 ? 1 : 0, &impl->handle, &device));
    impl->name = std::string(device) + ", " + (options.tf32 ? "TF32 on" : "TF32 off") + ", " +
                 (impl->channels_last ? "NHWC" : "NCHW") + " activations";
    return std::shared_ptr<CudaContext>(new CudaContext(std::move(impl)));
}

const CudaOptions& CudaContext::options() const { return impl_->options; }
bool CudaContext::channels_last() const { return impl_->channels_last; }
std::string CudaContext::device_name() const { return impl_->name; }

Tensor CudaContext::empty(const Shape& shape, bool channels_last) {
    const int64_t n = shape_numel(shape);
    const size_t nbytes = static_cast<size_t>(n) * sizeof(float);
    void* ptr = nullptr;
    StrataCudaBlock* block = nullptr;
    check(impl_->plugin->context_take(impl_->handle, nbytes, &ptr, &block));
    // The storage owns the block: when the last tensor on it goes, the block returns to its pool
    // (which outlives the context if need be).
    const StrataCudaPlugin* api = impl_->plugin;
    std::shared_ptr<void> owner(block, [api](StrataCudaBlock* b) {
        if (b) api->block_release(b);
    });
    auto storage = Storage::borrow(ptr, nbytes, std::move(owner), Device::CUDA);
    return Tensor(std::move(storage), 0, shape,
                  channels_last ? channels_last_strides(shape) : contiguous_strides(shape), DType::Float32);
}

void CudaContext::synchronize() { check(impl_->plugin->context_synchronize(impl_->handle)); }

void CudaContext::release_cached_memory() { check(impl_->plugin->context_release_cached(impl_->handle)); }

std::string CudaContext::summary() const {
    const char* text = nullptr;
    check(impl_->plugin->context_summary(impl_->handle, &text));
    return text;
}

// ---- CudaGraph -------------------------------------------------------------------------------

struct CudaGraph::Impl {
    const StrataCudaPlugin* plugin = nullptr;
    StrataCudaGraph* handle = nullptr;
    ~Impl() {
        if (handle) plugin->graph_destroy(handle);
    }
};

CudaGraph::CudaGraph(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaGraph::~CudaGraph() = default;

std::unique_ptr<CudaGraph> CudaGraph::capture(CudaContext& ctx, const std::function<void()>& call) {
    const StrataCudaPlugin& api = *ctx.impl().plugin;
    StrataCudaContext* handle = ctx.impl().handle;
    // Once eagerly: algorithm searches, weight folding and layout caches happen outside capture.
    call();
    ctx.synchronize();
    // Then recorded: the plugin puts the stream in capture mode, the call queues its work there
    // (through the plugin again), and the plugin turns what was queued into a graph.
    check(api.graph_begin(handle));
    try {
        call();
    } catch (...) {
        api.graph_abort(handle);
        throw;
    }
    auto graph = std::make_unique<Impl>();
    graph->plugin = &api;
    check(api.graph_end(handle, &graph->handle));
    return std::make_unique<CudaGraph>(std::move(graph));
}

void CudaGraph::replay() { check(impl_->plugin->graph_replay(impl_->handle)); }

// ---- the kernels (kernels/*.h, namespace cuda) ----------------------------------------------------

namespace cuda {

void conv2d(CudaContext& ctx, const Conv2dParams& p, const float* x, const float* weight,
            const Conv2dEpilogue& epilogue, float* y, bool channels_last) {
    auto& im = ctx.impl();
    check(im.plugin->conv2d(im.handle, &p, x, weight, &epilogue, y, channels_last));
}

void batch_norm(CudaContext& ctx, const BatchNormParams& p, const float* x, const float* weight, const float* bias,
                const float* mean, const float* var, float* y, bool channels_last) {
    auto& im = ctx.impl();
    check(im.plugin->batch_norm(im.handle, &p, x, weight, bias, mean, var, y, channels_last));
}

void relu(CudaContext& ctx, const float* x, float* y, int64_t n) {
    auto& im = ctx.impl();
    check(im.plugin->relu(im.handle, x, y, n));
}

void add(CudaContext& ctx, const float* a, const float* b, float* y, int64_t n, bool relu_after) {
    auto& im = ctx.impl();
    check(im.plugin->add(im.handle, a, b, y, n, relu_after));
}

void max_pool2d(CudaContext& ctx, const MaxPool2dParams& p, const float* x, float* y, bool channels_last) {
    auto& im = ctx.impl();
    check(im.plugin->max_pool2d(im.handle, &p, x, y, channels_last));
}

void adaptive_avg_pool2d(CudaContext& ctx, const AdaptiveAvgPool2dParams& p, const float* x, float* y,
                         bool channels_last) {
    auto& im = ctx.impl();
    check(im.plugin->adaptive_avg_pool2d(im.handle, &p, x, y, channels_last));
}

void linear(CudaContext& ctx, const LinearParams& p, const float* x, const float* weight, const float* bias, float* y) {
    auto& im = ctx.impl();
    check(im.plugin->linear(im.handle, &p, x, weight, bias, y));
}

void convert_layout(CudaContext& ctx, int64_t n, int64_t c, int64_t h, int64_t w, const float* x,
                    bool x_channels_last, float* y, bool y_channels_last) {
    auto& im = ctx.impl();
    check(im.plugin->convert_layout(im.handle, n, c, h, w, x, x_channels_last, y, y_channels_last));
}

}  // namespace cuda

}  // namespace strata
