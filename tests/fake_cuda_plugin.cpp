// Stand-ins for the CUDA backend plugin (kernels/cuda_plugin.h), built by tests/CMakeLists.txt
// only to be refused by kernels/cuda_loader.cpp (tests/test_cuda_loader.cpp). One source, four
// libraries, by the macro each is compiled with:
//   (none)                 a shared library without the entry point (any other library);
//   FAKE_PLUGIN_ABI=N      the entry point, returning a table of ABI version N and no functions;
//   FAKE_DEPENDENCY        a library the next one needs, kept out of the loader's reach;
//   FAKE_NEEDS_DEPENDENCY  a library whose dependency cannot be found (as cuDNN missing would be).
// No CUDA is needed to build them, so the loader's refusals are tested on every machine.
#include "kernels/cuda_plugin.h"

#define FAKE_EXPORT extern "C" __attribute__((visibility("default")))

#if defined(FAKE_PLUGIN_ABI)
FAKE_EXPORT const StrataCudaPlugin* strata_cuda_plugin(void) {
    static StrataCudaPlugin table{};  // every function pointer null: the loader must not get that far
    table.abi_version = FAKE_PLUGIN_ABI;
    return &table;
}
#elif defined(FAKE_DEPENDENCY)
FAKE_EXPORT int strata_fake_dependency_answer(void) { return 42; }
#elif defined(FAKE_NEEDS_DEPENDENCY)
extern "C" int strata_fake_dependency_answer(void);
FAKE_EXPORT int strata_fake_plugin_answer(void) { return strata_fake_dependency_answer(); }
#else
FAKE_EXPORT int strata_fake_plugin_answer(void) { return 42; }
#endif
