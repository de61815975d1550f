// The CUDA backend as a plugin (kernels/cuda_plugin.h, kernels/cuda_loader.cpp): found beside the
// tests in a CUDA build, refused with one clear line when the file is missing, is not a library,
// is a library without the entry point or speaks another ABI version; STRATA_CUDA_LIBRARY obeyed;
// the CLI's `--backend cuda` failing with one line. None of this needs a GPU: it runs everywhere
// (in a build without the CUDA backend, where there is nothing to load, it checks that message).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <unistd.h>

#include "kernels/cuda_context.h"
#include "kernels/cuda_loader.h"
#include "test_util.h"

using namespace strata;

namespace {

const char* kNoCuda = "this build has no CUDA backend; rebuild with -DSTRATA_CUDA=ON";

// In a build without the CUDA backend there is no loader to test: says so (ctest: skipped).
bool skip_without_cuda_build() {
    if (cuda_built()) return false;
    WARN("skipped: " << kNoCuda);
    REQUIRE(load_cuda_plugin(STRATA_FAKE_WRONG_ABI).error == kNoCuda);
    return true;
}

// The loader's refusal of `path`: no plugin, one line, saying where.
std::string refusal(const std::string& path) {
    const CudaPluginLoad load = load_cuda_plugin(path);
    INFO("error: " << load.error);
    REQUIRE(load.plugin == nullptr);
    REQUIRE(load.path == path);
    REQUIRE(load.error.find('\n') == std::string::npos);
    REQUIRE_THAT(load.error, Catch::StartsWith("CUDA backend unavailable: ") && Catch::Contains(path));
    return load.error;
}

}  // namespace

TEST_CASE("cuda loader: a plugin path that does not exist is refused naming it", "[cuda][loader]") {
    if (skip_without_cuda_build()) return;
    const std::string error = refusal("/nonexistent/strata/libstrata_cuda.so.0");
    REQUIRE_THAT(error, Catch::Contains("No such file or directory"));
}

TEST_CASE("cuda loader: a file that is not a shared library is refused", "[cuda][loader]") {
    if (skip_without_cuda_build()) return;
    const std::string path = "loader_" + std::to_string(::getpid()) + "_not_a_library.so";
    std::ofstream(path) << "this is text, not an ELF file\n";
    const std::string error = refusal(path);
    std::remove(path.c_str());
    (void)error;
}

TEST_CASE("cuda loader: a library without the entry point is not a plugin", "[cuda][loader]") {
    if (skip_without_cuda_build()) return;
    REQUIRE_THAT(refusal(STRATA_FAKE_NO_ENTRY), Catch::Contains("is not a strata CUDA plugin (it has no strata_cuda_plugin)"));
}

TEST_CASE("cuda loader: a plugin of another ABI version is refused with both versions", "[cuda][loader]") {
    if (skip_without_cuda_build()) return;
    REQUIRE_THAT(refusal(STRATA_FAKE_WRONG_ABI),
                 Catch::Contains("ABI version 999, this libstrata needs version " + std::to_string(STRATA_CUDA_PLUGIN_ABI)));
}

TEST_CASE("cuda loader: a plugin whose dependency is missing names that dependency", "[cuda][loader]") {
    if (skip_without_cuda_build()) return;
    // What a machine without cuDNN sees: "libcudnn.so.9: cannot open shared object file ...".
    REQUIRE_THAT(refusal(STRATA_FAKE_MISSING_DEPENDENCY),
                 Catch::Contains("libstrata_fake_dependency.so: cannot open shared object file"));
}

#ifdef STRATA_CUDA_PLUGIN_PATH
TEST_CASE("cuda loader: the plugin of this build loads and is found beside the tests", "[cuda][loader]") {
    const CudaPluginLoad load = load_cuda_plugin(STRATA_CUDA_PLUGIN_PATH);
    INFO("error: " << load.error);
    REQUIRE(load.plugin != nullptr);
    REQUIRE(load.plugin->abi_version == STRATA_CUDA_PLUGIN_ABI);
    INFO("built with " << load.plugin->built_with);
    // The search (STRATA_CUDA_LIBRARY unset): tests/../lib of the build tree, as bin/../lib installed.
    const char* env = std::getenv("STRATA_CUDA_LIBRARY");
    if (env && *env) return;
    const CudaPluginLoad& found = cuda_backend();
    INFO("searched " << cuda_plugin_search_path() << ": " << found.error);
    REQUIRE(found.plugin == load.plugin);  // the same file: dlopen hands back the same library
}
#endif

TEST_CASE("cuda loader: no GPU gives a device count of 0 with the reason, and no crash", "[cuda][loader]") {
    std::string why;
    const int count = cuda_device_count(&why);
    if (count > 0) {
        SUCCEED("a device is present: nothing to check here");
        return;
    }
    INFO("reason: " << why);
    REQUIRE_FALSE(why.empty());
    REQUIRE(why.find('\n') == std::string::npos);
    // In a CUDA build the plugin beside the tests loaded and answered itself (the driver's or the
    // runtime's reason), unless STRATA_CUDA_LIBRARY points elsewhere.
    const char* env = std::getenv("STRATA_CUDA_LIBRARY");
    if (cuda_built() && !(env && *env)) REQUIRE_THAT(why, !Catch::StartsWith("CUDA backend unavailable"));
    REQUIRE_THROWS_WITH(CudaContext::create(), Catch::Contains(why));
}

// Run by ctest only (tests/CMakeLists.txt), in processes started with STRATA_CUDA_LIBRARY set to
// a missing file or to a library that is not a plugin, and STRATA_TEST_CUDA_ERROR to what the
// error must contain.
TEST_CASE("cuda loader: STRATA_CUDA_LIBRARY is the only place looked at", "[.][cuda_library_env]") {
    const char* env = std::getenv("STRATA_CUDA_LIBRARY");
    const char* expected = std::getenv("STRATA_TEST_CUDA_ERROR");
    if (!env || !expected) FAIL("run by ctest (tests/CMakeLists.txt), with STRATA_CUDA_LIBRARY and STRATA_TEST_CUDA_ERROR set");
    const std::string fragment = cuda_built() ? expected : kNoCuda;
    std::string why;
    REQUIRE(cuda_device_count(&why) == 0);
    INFO("reason: " << why);
    REQUIRE_THAT(why, Catch::Contains(fragment));
    if (cuda_built()) REQUIRE_THAT(why, Catch::StartsWith("CUDA backend unavailable: ") && Catch::Contains(env) &&
                                            Catch::EndsWith("; STRATA_CUDA_LIBRARY names that file"));
    REQUIRE_THROWS_WITH(CudaContext::create(), why);
    REQUIRE_THROWS_WITH(Tensor::zeros({2, 3}).to(Device::CUDA), why);
}

#ifdef STRATA_CLI_PATH
TEST_CASE("cuda loader: the CLI's --backend cuda without a usable plugin exits 2 with one line", "[cuda][loader][cli]") {
    const std::string missing = "/nonexistent/strata/libstrata_cuda.so.0";
    for (const char* option : {"--backend cuda", "--device cuda"}) {
        const strata_test::CliRun r = strata_test::run_cli(std::string("features --model resnet18 ") + option,
                                                           "loader_cli", "STRATA_CUDA_LIBRARY=" + missing);
        INFO(option << "\nstderr: " << r.err);
        REQUIRE(r.rc == 2);
        REQUIRE(r.out.empty());
        REQUIRE(std::count(r.err.begin(), r.err.end(), '\n') == 1);
        if (cuda_built())
            REQUIRE_THAT(r.err, Catch::StartsWith("error: CUDA backend unavailable: ") && Catch::Contains(missing));
        else
            REQUIRE(r.err == std::string("error: ") + kNoCuda + "\n");
    }
    // With the plugin of this build on a machine without a GPU: the device's absence, one line.
    std::string why;
    if (cuda_device_count(&why) == 0) {
        const strata_test::CliRun r = strata_test::run_cli("features --model resnet18 --backend cuda", "loader_cli");
        INFO("stderr: " << r.err);
        REQUIRE(r.rc == 2);
        REQUIRE(std::count(r.err.begin(), r.err.end(), '\n') == 1);
        REQUIRE_THAT(r.err, Catch::StartsWith("error: "));
    }
}
#endif
