// Hardening, round 2 (issue 11): limits on time and memory that hostile weight files and
// arguments cannot push past. The per-file error cases are in the catalogs
// (tests/test_weight_catalog.cpp, tests/test_cli_catalog.cpp); this file holds the cases that
// need size or time: a 200,000-tensor safetensors header that must parse in linear time, pickles
// built to amplify memory, signals during a write, files changed under a running model.
#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "io/pickle.h"
#include "pth_writer.h"
#include "test_util.h"

using namespace strata;

namespace {

// A safetensors file of `n` float32 tensors of one element each: "t0", "t1", ...
std::string many_tensor_safetensors(size_t n) {
    std::string header = "{";
    for (size_t i = 0; i < n; ++i) {
        if (i) header += ',';
        header += "\"t" + std::to_string(i) + "\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[" +
                  std::to_string(4 * i) + "," + std::to_string(4 * i + 4) + "]}";
    }
    header += "}";
    while (header.size() % 8) header += ' ';
    std::string out;
    pth_test::put64(out, header.size());
    out += header;
    for (size_t i = 0; i < n; ++i) {
        const float v = static_cast<float>(i);
        out.append(reinterpret_cast<const char*>(&v), 4);
    }
    return out;
}

}  // namespace

// The DOM parser with a parse callback rescanned the top-level object at the end of every tensor:
// 40,000 tensors took 50 s, 200,000 did not finish in 10 minutes. Linear now: about 0.3 s here.
TEST_CASE("hardening: a safetensors header of 200,000 tensors (16 MB) parses in linear time") {
    const size_t n = 200000;
    const std::string bytes = many_tensor_safetensors(n);
    const auto start = std::chrono::steady_clock::now();
    const StateDict state =
        load_from_memory(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), nullptr, "many.safetensors");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    INFO("parsed " << n << " tensors in " << seconds << " s");
    REQUIRE(state.size() == n);
    REQUIRE(state[0].first == "t0");
    REQUIRE(state[n - 1].first == "t" + std::to_string(n - 1));
    REQUIRE(state.at("t123456").data<float>()[0] == 123456.0f);
    CHECK(seconds < 30);  // quadratic took hours; linear takes well under a second (a few under ASan)
}

// ---- outputs -----------------------------------------------------------------------------------

namespace {

// A folder of its own, removed at the end.
struct Folder {
    std::string path = "/tmp/strata_hardening_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++);
    Folder() { REQUIRE(::mkdir(path.c_str(), 0700) == 0); }
    ~Folder() { std::system(("rm -rf " + path).c_str()); }
    static int& counter() {
        static int n = 0;
        return n;
    }
    std::vector<std::string> entries() const {
        std::vector<std::string> out;
        if (DIR* d = ::opendir(path.c_str())) {
            while (const dirent* e = ::readdir(d))
                if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") out.push_back(e->d_name);
            ::closedir(d);
        }
        std::sort(out.begin(), out.end());
        return out;
    }
};

std::string read_all(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

}  // namespace

// The temporary used to be OUT.tmp-<pid>, opened with std::ofstream: a symbolic link planted at
// that name made strata overwrite the link's target.
TEST_CASE("hardening: a symbolic link planted at a temporary's name is never followed") {
    const Folder dir;
    const std::string victim = dir.path + "/victim.txt", out = dir.path + "/out.safetensors";
    std::ofstream(victim) << "precious";
    const std::string planted = out + ".tmp-" + std::to_string(::getpid());
    REQUIRE(::symlink(victim.c_str(), planted.c_str()) == 0);
    StateDict state;
    state.insert("w", Tensor::full({4}, 1.5f));
    save(state, out);
    CHECK(read_all(victim) == "precious");
    CHECK(load(out).at("w").data<float>()[3] == 1.5f);
    // Nothing else was left beside the output: the output, the victim and the planted link.
    CHECK(dir.entries() == std::vector<std::string>{"out.safetensors", "out.safetensors.tmp-" + std::to_string(::getpid()),
                                                    "victim.txt"});
    // A FIFO, a device or a socket as the output is refused before anything is written.
    const std::string fifo = dir.path + "/fifo";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    CHECK_THROWS_WITH(save(state, fifo), Catch::Contains("cannot write: it is a FIFO, not a regular file"));
    CHECK_THROWS_WITH(save(state, "/dev/null"), Catch::Contains("it is a character device"));
    CHECK_THROWS_WITH(save(state, ""), Catch::Contains("an empty output path"));
}

// SIGTERM (or SIGINT) while a large file is being written: with remove_temporary_files_on_signals
// (the CLI calls it), the process still ends by the signal, and its temporary file is gone.
TEST_CASE("hardening: SIGTERM and SIGINT during a write remove the temporary file") {
    for (const int sig : {SIGTERM, SIGINT}) {
        bool interrupted = false;
        for (size_t mb = 256; mb <= 1024 && !interrupted; mb *= 2) {
            const Folder dir;
            const std::string out = dir.path + "/big.bin";
            const pid_t child = ::fork();
            REQUIRE(child >= 0);
            if (child == 0) {
                // Catch's own fatal-signal handlers came with the fork: back to the defaults, as
                // in a fresh program, so the signal ends the child as it would the CLI.
                for (const int s : {SIGINT, SIGTERM, SIGHUP}) std::signal(s, SIG_DFL);
                remove_temporary_files_on_signals();
                const std::string bytes(mb << 20, 'x');
                try {
                    write_file_atomically(out, bytes);
                } catch (...) {
                    _exit(3);
                }
                _exit(0);
            }
            // Signal the child once its temporary holds some bytes: the write is under way.
            bool seen = false;
            const auto start = std::chrono::steady_clock::now();
            while (!seen && std::chrono::steady_clock::now() - start < std::chrono::seconds(60)) {
                for (const std::string& name : dir.entries()) {
                    struct stat st {};
                    if (name.find(".tmp-") != std::string::npos && ::stat((dir.path + "/" + name).c_str(), &st) == 0 &&
                        st.st_size > 0)
                        seen = true;
                }
                if (!seen) ::usleep(200);
                int status = 0;
                if (!seen && ::waitpid(child, &status, WNOHANG) == child) break;  // finished first
            }
            if (seen) ::kill(child, sig);
            int status = 0;
            ::waitpid(child, &status, 0);
            if (!(WIFSIGNALED(status) && WTERMSIG(status) == sig)) {
                WARN("the write of " << mb << " MB ended before signal " << sig << " arrived; trying a larger one");
                continue;
            }
            interrupted = true;
            INFO("signal " << sig << ", " << mb << " MB");
            CHECK(dir.entries().empty());  // no temporary, no partial output
        }
        CHECK(interrupted);
    }
}

// ---- threads -----------------------------------------------------------------------------------

TEST_CASE("hardening: RunOptions refuses thread counts it cannot honour with strata::Error") {
    REQUIRE(max_threads() >= 1);
    CHECK(RunOptions(Backend::Cpu, max_threads()).threads() == max_threads());
    CHECK(RunOptions(Backend::Cpu, 0).threads() >= 1);
    CHECK_THROWS_WITH(RunOptions(Backend::Cpu, 100000).threads(),
                      Catch::Contains("RunOptions::num_threads is 100000, over the maximum of " +
                                      std::to_string(max_threads())));
    CHECK_THROWS_WITH(RunOptions(Backend::Cpu, -1).threads(), Catch::Contains("RunOptions::num_threads is -1"));
    // Through a forward call: an Error with the module path, before libgomp is asked.
    auto model = models::resnet18();
    CHECK_THROWS_WITH(model->forward(Tensor::zeros({1, 3, 32, 32}), RunOptions(Backend::Cpu, 2147483647)),
                      Catch::Contains("over the maximum"));
}

// ---- messages and names ------------------------------------------------------------------------

TEST_CASE("hardening: a load with 200,000 unexpected keys fails with one short line") {
    auto model = models::resnet18();
    StateDict state = model->state_dict();
    for (int i = 0; i < 200000; ++i) state.insert("extra." + std::to_string(i) + ".weight", Tensor::zeros({1}));
    std::string message;
    try {
        model->load_state_dict(state);
    } catch (const Error& e) {
        message = e.what();
    }
    INFO(message.substr(0, 2000));
    CHECK_THAT(message, Catch::Contains("unexpected keys (200000): extra.0.weight, extra.1.weight"));
    CHECK_THAT(message, Catch::Contains("extra.19.weight, ... and 199980 more"));
    CHECK(message.find("extra.20.weight") == std::string::npos);
    CHECK(message.size() < 2000);  // was 1.7 MB
    // The same rule for missing keys and shape mismatches; a very long key is cut.
    auto other = models::resnet50();
    StateDict one;
    one.insert(std::string(5000, 'k'), Tensor::zeros({1}));
    try {
        other->load_state_dict(one);
        FAIL("loaded");
    } catch (const Error& e) {
        const std::string m = e.what();
        CHECK_THAT(m, Catch::Contains("missing keys (" + std::to_string(other->state_dict().size()) + "): conv1.weight"));
        CHECK_THAT(m, Catch::Contains(" more;"));
        CHECK(m.size() < 4000);
    }
}

TEST_CASE("hardening: no tensor may be named __metadata__ in a safetensors file; nothing is written") {
    const Folder dir;
    StateDict state;
    state.insert("__metadata__", Tensor::zeros({2}));
    CHECK_THROWS_WITH(save(state, dir.path + "/m.safetensors"), Catch::Contains("'__metadata__' is reserved"));
    CHECK(dir.entries().empty());
    CHECK_THROWS_WITH(safetensors_bytes(state), Catch::Contains("'__metadata__' is reserved"));
    CHECK_THROWS_WITH(check_tensor_name("__metadata__", "--layers new name"),
                      Catch::StartsWith("--layers new name '__metadata__' is reserved"));
    CHECK_NOTHROW(check_tensor_name("__metadata", "x"));
}

// ---- unpickler memory ----------------------------------------------------------------------------

namespace {

// A torch.save zip whose data.pkl is `pickle`, with one float32 storage "0" of one element.
std::string zip_of_pickle(const std::string& pickle) {
    return pth_test::make_zip({{"archive/data.pkl", pickle}, {"archive/data/0", std::string(4, '\0')}}).bytes;
}

// 10 MB of EMPTY_LIST opcodes: 10 million empty lists (1.7 GB resident before the budget).
std::string empty_lists_pickle() {
    std::string p = "\x80\x02";
    p.append(10u << 20, ']');
    return p + ".";
}

// _rebuild_tensor_v2 called 2 million times on one memoized 64-dimension argument tuple: each
// call made a tensor record of 2 x 64 int64 (2.5 GB resident before the budget). 12 MB.
std::string shared_args_pickle() {
    pth_test::Pickler p;
    p.global("torch._utils", "_rebuild_tensor_v2").op('q').op('\0');
    p.op('(');
    p.op('(').str("storage").global("torch", "FloatStorage").str("0").str("cpu").integer(1).op('t').op('Q');
    p.integer(0).int_tuple(std::vector<int64_t>(64, 1)).int_tuple(std::vector<int64_t>(64, 0)).op('\x89');
    p.global("collections", "OrderedDict").op(')').op('R');
    p.op('t').op('q').op('\x01');
    const std::string call("h\x00h\x01R0", 6);  // BINGET fn, BINGET args, REDUCE, POP
    for (int i = 0; i < 2000000; ++i) p.out += call;
    p.op('N').stop();
    return p.out;
}

// The error loading `bytes` in a child whose address space may grow by at most 1 GB, or
// "(loaded)", "(out of memory)". Under ASan (which reserves terabytes of shadow) without the cap.
std::string load_capped(const std::string& bytes) {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::close(fds[0]);
#if !defined(__SANITIZE_ADDRESS__)
        long pages = 0;
        std::ifstream("/proc/self/statm") >> pages;
        const rlim_t cap = static_cast<rlim_t>(pages) * static_cast<rlim_t>(::sysconf(_SC_PAGESIZE)) + (rlim_t(1) << 30);
        const rlimit limit{cap, cap};
        ::setrlimit(RLIMIT_AS, &limit);
#endif
        std::string result = "(loaded)";
        try {
            load_from_memory(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), nullptr, "amplify.pth");
        } catch (const std::bad_alloc&) {
            result = "(out of memory)";
        } catch (const Error& e) {
            result = e.what();
        }
        (void)!::write(fds[1], result.data(), result.size());
        _exit(0);
    }
    ::close(fds[1]);
    std::string result;
    char buf[4096];
    for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) result.append(buf, static_cast<size_t>(n));
    ::close(fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return result.empty() ? "(child died)" : result;
}

}  // namespace

TEST_CASE("hardening: the unpickler's memory is bounded by 16x the pickle + 64 MB, named in the error") {
    CHECK(pickle::memory_budget(10u << 20) == 16 * (10u << 20) + (64u << 20));
    const std::string lists = empty_lists_pickle();
    CHECK_THAT(load_capped(zip_of_pickle(lists)),
               Catch::Contains("amplify.pth: archive/data.pkl at byte") &&
                   Catch::Contains("the pickle's values take more than " + std::to_string(pickle::memory_budget(lists.size())) +
                                   " bytes of memory, the limit for a " + std::to_string(lists.size()) +
                                   "-byte pickle (16x its size + 64 MB)"));
    const std::string calls = shared_args_pickle();
    REQUIRE(calls.size() > 12000000);
    CHECK_THAT(load_capped(zip_of_pickle(calls)),
               Catch::Contains("the pickle's values take more than " + std::to_string(pickle::memory_budget(calls.size())) +
                               " bytes of memory"));
}

// A weight file rewritten in place or truncated under a running model (LoadMode::Share, as the
// CLI loads): the model never computes with bytes the file no longer held when it was loaded,
// and never dies of SIGBUS; a call that would read the file fails with an Error naming it. Run
// in a child process, so a SIGBUS would show as the child's signal instead of ending the suite.
TEST_CASE("hardening: a weight file changed on disk under a running model fails cleanly, never SIGBUS") {
    enum Change { Overwrite, Truncate };
    for (const Change change : {Overwrite, Truncate}) {
        INFO((change == Overwrite ? "rewritten in place" : "truncated"));
        const Folder dir;
        const std::string path = dir.path + "/w.safetensors";
        // conv -> bn -> relu (fused and packed on the first call) -> flatten -> fc (reads its
        // weights on every call)
        auto make = [] {
            return std::make_shared<Sequential>(std::vector<std::shared_ptr<Module>>{
                std::make_shared<Conv2d>(Conv2dOptions(3, 8, 3).bias(false)), std::make_shared<BatchNorm2d>(8),
                std::make_shared<ReLU>(), std::make_shared<Flatten>(), std::make_shared<Linear>(8 * 6 * 6, 10)});
        };
        auto original = make();
        fill_deterministic(*original, 5);
        save(original->state_dict(), path);
        const Tensor x = strata_test::random_tensor({1, 3, 8, 8}, "hardening.disk", 0.0, 1.0);
        const Tensor want = original->forward(x, RunOptions{Backend::Cpu, 1});

        const pid_t child = ::fork();
        REQUIRE(child >= 0);
        if (child == 0) {
            int code = 0;
            try {
                auto model = make();
                model->load_state_dict(load(path), true, LoadMode::Share);
                const Tensor first = model->forward(x, RunOptions{Backend::Cpu, 1});
                if (!strata_test::compare_bitwise(first, want).ok) _exit(10);
                // Change the file: other bytes of the same size, or half of it gone.
                if (change == Overwrite) {
                    std::ofstream f(path, std::ios::binary | std::ios::in | std::ios::out);
                    const std::string junk(4096, '\x7f');
                    f.seekp(static_cast<std::streamoff>(std::filesystem::file_size(path) - junk.size()));
                    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
                } else if (::truncate(path.c_str(), static_cast<off_t>(std::filesystem::file_size(path) / 2)) != 0) {
                    _exit(11);
                }
                // A modification time that surely differs, whatever the file system's granularity.
                const struct timespec times[2] = {{0, UTIME_OMIT}, {std::time(nullptr) + 5, 0}};
                if (::utimensat(AT_FDCWD, path.c_str(), times, 0) != 0) _exit(12);
                try {
                    model->forward(x, RunOptions{Backend::Cpu, 1});
                    code = 13;  // computed with the changed file
                } catch (const Error& e) {
                    const std::string msg = e.what();
                    code = msg.find(path) != std::string::npos && msg.find("changed on disk") != std::string::npos ? 0 : 14;
                }
            } catch (...) {
                code = 15;
            }
            _exit(code);
        }
        int status = 0;
        REQUIRE(::waitpid(child, &status, 0) == child);
        REQUIRE_FALSE(WIFSIGNALED(status));
        REQUIRE(WIFEXITED(status));
        REQUIRE(WEXITSTATUS(status) == 0);
    }
}
