// Finding and opening the CUDA backend plugin (libstrata_cuda.so.0, kernels/cuda_plugin.h), on
// libstrata's side. Private: core/device.h, CudaContext and the cuda:: kernels (all implemented
// in kernels/cuda_loader.cpp) are the public face; the tests call load_cuda_plugin directly.
#pragma once
#include <string>

#include "cuda_plugin.h"

namespace strata {

struct CudaPluginLoad {
    const StrataCudaPlugin* plugin = nullptr;  // nullptr when the load failed
    std::string path;                          // the file opened (or the last one tried)
    std::string error;                         // why it failed: one line, "" on success
};

// Opens the plugin at `path` (no search) and checks it: the entry point, the ABI version and the
// parameter structs' sizes. A plugin that loads is never closed again (contexts, tensors and
// their deleters point into it until the process ends). Not cached: each call opens anew.
CudaPluginLoad load_cuda_plugin(const std::string& path);

// Where the plugin is looked for, in order, when STRATA_CUDA_LIBRARY is not set: beside the
// file holding libstrata's code (libstrata.so, or the executable libstrata.a is linked into),
// then in ../<libdir> from there (bin/ -> lib/ of an install, apps/ -> lib/ of the build tree).
// After these, load_cuda_backend() tries the bare file name through the dynamic loader's own
// search (LD_LIBRARY_PATH, /etc/ld.so.cache, the system directories).
std::string cuda_plugin_search_path();

// The plugin this process uses: found and loaded the first time it is asked for, then the same
// answer (success or failure) every time after. STRATA_CUDA_LIBRARY, when set and not empty,
// names the file and nothing else is tried; it is read once, on that first call.
// In a build without the CUDA backend (STRATA_CUDA=OFF) the answer is always that failure.
const CudaPluginLoad& cuda_backend();

}  // namespace strata
