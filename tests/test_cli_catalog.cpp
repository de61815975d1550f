// The CLI's bad-input catalog. Every case exits 2, prints nothing on stdout and exactly one line
// "error: ..." on stderr that says what was wrong, and leaves its output folder empty: paths are
// checked before the work and outputs are written to a temporary file and renamed.
// README ("The CLI") points here; the table below is the catalog.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "pth_writer.h"
#include "test_util.h"

using namespace strata;
namespace fs = std::filesystem;

namespace {

struct Run {
    int rc;
    std::string out, err;
};

std::string slurp(const fs::path& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// A folder of its own per test process (ctest runs test cases in parallel), removed at the end.
struct Workdir {
    fs::path root = fs::absolute("cli_catalog_" + std::to_string(::getpid()));
    Workdir() {
        fs::remove_all(root);
        fs::create_directories(root / "out");
    }
    ~Workdir() {
        std::error_code ignored;
        for (const auto& entry : fs::recursive_directory_iterator(root, ignored))
            fs::permissions(entry.path(), fs::perms::owner_all, fs::perm_options::add, ignored);
        fs::remove_all(root, ignored);
    }
    std::string operator/(const std::string& name) const { return (root / name).string(); }
};

// Root reads and writes through any permission bits; dropping CAP_DAC_OVERRIDE and
// CAP_DAC_READ_SEARCH from the bounding set (util-linux's setpriv) makes the bits count again.
std::string unprivileged_prefix() {
    if (::geteuid() != 0) return "";
    return "setpriv --bounding-set=-dac_override,-dac_read_search ";
}

Run run_cli(const Workdir& dir, const std::string& args, bool unprivileged = false) {
    const std::string out = dir / "stdout.txt", err = dir / "stderr.txt";
    // Under `timeout`: a run that blocks (a FIFO opened before it is checked) fails its case
    // with exit 124 instead of hanging the suite.
    const std::string cmd = (unprivileged ? unprivileged_prefix() : "") + "timeout -k 5 60 " +
                            std::string(STRATA_CLI_PATH) + " " + args + " >" + out + " 2>" + err;
    const int status = std::system(cmd.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(out), slurp(err)};
}

// Whether permission bits bind an unprivileged run here: `setpriv` (when root) must work, and
// `read_locked_file` must then fail. False where privileges cannot be dropped (a container
// without CAP_SETPCAP): those cases are skipped, loudly.
bool permissions_enforced(const std::string& read_locked_file) {
    if (std::system((unprivileged_prefix() + "true 2>/dev/null").c_str()) != 0) return false;
    return std::system((unprivileged_prefix() + read_locked_file + " 2>/dev/null").c_str()) != 0;
}

// A .npy with a header written by hand: any dtype, order and shape, and `data_bytes` bytes.
void write_npy(const std::string& path, const std::string& descr, bool fortran, const std::string& shape,
               size_t data_bytes) {
    std::string bytes = npy_preamble(descr, fortran, shape);
    bytes.append(data_bytes, '\0');
    std::ofstream(path, std::ios::binary) << bytes;
}

struct Case {
    std::string what;      // the catalog entry
    std::string args;      // after "strata "; {d} is the work folder
    std::string expected;  // the part of the error line that says what was wrong; {d} as above
    bool unprivileged = false;
};

std::string expand(std::string text, const Workdir& dir) {
    for (size_t at; (at = text.find("{d}")) != std::string::npos;) text.replace(at, 3, dir.root.string());
    return text;
}

void require_catalog_case(const Workdir& dir, const Case& c) {
    const std::string args = expand(c.args, dir);
    const Run r = run_cli(dir, args, c.unprivileged);
    INFO(c.what << "\n  strata " << args << "\n  exit " << r.rc << ", stdout: " << r.out << "\n  stderr: " << r.err);
    REQUIRE(r.rc == 2);
    REQUIRE(r.out.empty());
    REQUIRE(r.err.rfind("error: ", 0) == 0);
    REQUIRE(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    REQUIRE(r.err.find(expand(c.expected, dir)) != std::string::npos);
    // Nothing was written: the output folder is still empty (no file, no temporary).
    REQUIRE(fs::is_empty(dir.root / "out"));
}

}  // namespace

TEST_CASE("cli catalog: bad paths, layer specs, .npy files, options and models: exit 2, one specific line, no output") {
    const Workdir dir;
    // Inputs. A good input and weights first, so that each case has one thing wrong.
    save_npy(strata_test::random_tensor({1, 3, 32, 32}, "catalog.input", 0.0, 1.0), dir / "good.npy");
    save(models::resnet18()->state_dict(), dir / "weights.safetensors");
    fs::create_directories(dir.root / "folder");
    fs::create_directories(dir.root / "readonly");
    fs::permissions(dir.root / "readonly", fs::perms::owner_read | fs::perms::owner_exec);
    std::ofstream(dir / "locked.npy") << slurp(dir / "good.npy");
    std::ofstream(dir / "locked.safetensors") << slurp(dir / "weights.safetensors");
    fs::permissions(dir / "locked.npy", fs::perms::none);
    fs::permissions(dir / "locked.safetensors", fs::perms::none);
    write_npy(dir / "float64.npy", "<f8", false, "(1, 3, 32, 32)", 8 * 3 * 32 * 32);
    write_npy(dir / "int64.npy", "<i8", false, "(1, 3, 32, 32)", 8 * 3 * 32 * 32);
    write_npy(dir / "big_endian.npy", ">f4", false, "(1, 3, 32, 32)", 4 * 3 * 32 * 32);
    write_npy(dir / "fortran.npy", "<f4", true, "(1, 3, 32, 32)", 4 * 3 * 32 * 32);
    write_npy(dir / "truncated.npy", "<f4", false, "(1, 3, 32, 32)", 100);
    write_npy(dir / "huge.npy", "<f4", false, "(1, 3, 100000, 100000)", 16);  // claims 120 GB
    write_npy(dir / "rank3.npy", "<f4", false, "(3, 32, 32)", 4 * 3 * 32 * 32);
    write_npy(dir / "four_channels.npy", "<f4", false, "(1, 4, 32, 32)", 4 * 4 * 32 * 32);
    write_npy(dir / "batch0.npy", "<f4", false, "(0, 3, 32, 32)", 0);
    write_npy(dir / "empty_rows.npy", "<f4", false, "(1, 3, 0, 5)", 0);
    std::ofstream(dir / "not_npy.npy") << "P6 32 32 255\n";
    // Files that are not regular files, and other names for the weights (issue 11).
    REQUIRE(::mkfifo((dir / "fifo").c_str(), 0600) == 0);
    {
        const int sock = ::socket(AF_UNIX, SOCK_STREAM, 0);
        REQUIRE(sock >= 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        const std::string socket_path = dir / "socket";
        REQUIRE(socket_path.size() < sizeof addr.sun_path);
        std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
        REQUIRE(::bind(sock, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
        ::close(sock);  // the socket file stays
    }
    fs::create_symlink(dir / "weights.safetensors", dir / "weights_link.safetensors");
    fs::create_hard_link(dir / "weights.safetensors", dir / "weights_hard.safetensors");
    const std::string weights_before = slurp(dir / "weights.safetensors"), input_before = slurp(dir / "good.npy");
    {
        StateDict reserved;  // a .pth whose state_dict has a key safetensors reserves
        reserved.insert("__metadata__", Tensor::zeros({2}));
        std::ofstream(dir / "reserved.pth", std::ios::binary) << pth_test::torch_zip(reserved);
    }

    const std::string out = " --out {d}/out/features.safetensors";
    const std::vector<Case> catalog = {
        // --input, --weights, --out: missing, unreadable, a directory
        {"--input missing", "features --input {d}/missing.npy" + out, "{d}/missing.npy: cannot open (No such file or directory)"},
        {"--input unreadable", "features --input {d}/locked.npy" + out, "{d}/locked.npy: cannot open (Permission denied)", true},
        // (a folder is batch mode's input, apps/batch.h: this one holds no image)
        {"--input a directory", "features --input {d}/folder --out {d}/out/shards",
         "{d}/folder: the folder holds no *.jpg, *.jpeg or *.png file (searched recursively)"},
        {"batch mode, --out a .safetensors name", "features --input {d}/folder" + out,
         "batch mode (--input {d}/folder) writes a folder of shards; --out {d}/out/features.safetensors names a "
         ".safetensors file: give a folder"},
        {"--weights missing", "features --weights {d}/missing.safetensors" + out,
         "{d}/missing.safetensors: cannot open (No such file or directory)"},
        {"--weights unreadable", "features --weights {d}/locked.safetensors" + out,
         "{d}/locked.safetensors: cannot open (Permission denied)", true},
        {"--weights a directory", "features --weights {d}/folder" + out, "{d}/folder: not a regular file (it is a directory)"},
        {"--out in a missing folder", "features --input {d}/good.npy --out {d}/missing/features.safetensors",
         "{d}/missing/features.safetensors: cannot write: folder '{d}/missing': No such file or directory"},
        {"--out in an unwritable folder", "features --input {d}/good.npy --out {d}/readonly/features.safetensors",
         "{d}/readonly/features.safetensors: cannot write in folder '{d}/readonly' (Permission denied)", true},
        {"--out a directory", "features --input {d}/good.npy --out {d}/out", "{d}/out: cannot write: it is a directory; give a file name"},
        {"--out a directory, trailing slash", "features --input {d}/good.npy --out {d}/out/", "{d}/out/: cannot write: it is a directory"},
        // --layers
        {"layer spec without a new name", "features --layers layer1:" + out, "--layers entry 'layer1:' has no new name after ':'"},
        {"layer spec without a layer", "features --layers :x" + out, "--layers entry ':x' has no layer name before ':'"},
        {"two layers, one new name", "features --layers layer1:a,layer2:a" + out,
         "return_layers: new name 'a' is given to more than one layer"},
        {"one layer twice", "features --layers layer1:a,layer1:b" + out, "return_layers: 'layer1' is requested twice"},
        {"an unknown layer", "features --layers layer9:x" + out,
         "return_layers: 'layer9' is not a child of ResNet; valid names: conv1, bn1, relu, maxpool, layer1, layer2, "
         "layer3, layer4, avgpool, fc (nearest: 'layer1')"},
        {"an unknown nested layer", "features --layers layer1.2:x" + out,
         "return_layers: 'layer1.2' is not a module or graph node of ResNet (nearest: 'layer1."},
        {"a bad --size", "layers --size 32y32", "--size '32y32': expected HxW or one number"},
        {"a zero --size", "layers --size 0x32", "--size '0x32': expected HxW or one number"},
        {"an unknown graph node", "features --layers layer3.1.relu_2:x" + out, "(nearest: 'layer3.1.relu_1';"},
        {"an empty entry", "features --layers layer1,,layer2" + out, "--layers 'layer1,,layer2' has an empty entry"},
        {"a trailing comma", "features --layers layer1:a," + out, "--layers 'layer1:a,' ends with ','"},
        {"two colons", "features --layers layer1:a:b" + out, "--layers entry 'layer1:a:b' has more than one ':'"},
        {"an empty spec", "features --layers ''" + out, "--layers is empty"},
        // --input .npy files that are not float32 C-order NCHW arrays the model takes
        {".npy of float64", "features --input {d}/float64.npy" + out,
         "float64.npy: .npy dtype is '<f8', strata needs float32 ('<f4'); convert with x.astype(numpy.float32)"},
        {".npy of int64", "features --input {d}/int64.npy" + out, "int64.npy: .npy dtype is '<i8', strata needs float32"},
        {".npy big-endian", "features --input {d}/big_endian.npy" + out, "big_endian.npy: .npy dtype is '>f4', strata needs float32"},
        {".npy Fortran-ordered", "features --input {d}/fortran.npy" + out,
         "fortran.npy: .npy is Fortran-ordered; save a C-ordered array (numpy.ascontiguousarray)"},
        {".npy truncated", "features --input {d}/truncated.npy" + out,
         "truncated.npy: .npy shape [1, 3, 32, 32] needs 12288 bytes of data but the file has 100 (truncated)"},
        {".npy claiming 120 GB (refused before allocating)", "features --input {d}/huge.npy" + out,
         "huge.npy: .npy shape [1, 3, 100000, 100000] needs 120000000000 bytes of data but the file has 16 (truncated)"},
        {"not a .npy", "features --input {d}/not_npy.npy" + out, "not_npy.npy: not a .npy array, a JPEG or a PNG image (unrecognised first bytes)"},
        {".npy of rank 3", "features --input {d}/rank3.npy" + out, "rank3.npy: expected an NCHW array, got shape [3, 32, 32]"},
        {".npy with 4 channels", "features --input {d}/four_channels.npy" + out,
         "conv1: expected 3 input channels, got 4 (input shape [1, 4, 32, 32])"},
        {".npy with batch 0", "features --input {d}/batch0.npy" + out, "conv1: Conv2d got an empty batch (shape [0, 3, 32, 32])"},
        {".npy with 0 rows", "features --input {d}/empty_rows.npy" + out,
         "conv1: input of spatial size 0x5 (padded 6x11) is smaller than the kernel 7x7"},
        // --threads, --model
        {"--threads a word", "features --threads abc" + out, "--threads: expected a whole number from 1 to 2147483647, got 'abc'"},
        {"--threads a fraction", "features --threads 1.5" + out, "--threads: expected a whole number from 1 to 2147483647, got '1.5'"},
        {"--threads 0", "features --threads 0" + out, "--threads: expected a whole number from 1 to 2147483647, got '0'"},
        {"--threads negative", "features --threads -2" + out, "--threads: expected a whole number from 1 to 2147483647, got '-2'"},
        {"--threads too large", "features --threads 99999999999" + out, "got '99999999999'"},
        // numbers that parse but cannot be honoured: libgomp crashed (SIGSEGV) on 100000 and exited 1 on 2^31-1
        {"--threads 100000", "features --threads 100000" + out, "--threads: at most " + std::to_string(max_threads()) + " threads"},
        {"--threads 2147483647", "features --threads 2147483647" + out, "--threads: at most"},
        {"bench --threads 100000", "bench --threads 100000 --iters 1", "--threads: at most"},
        {"--max-activation-mb negative", "features --max-activation-mb -1" + out,
         "--max-activation-mb: expected 0 (no limit) or a number of MiB"},
        {"--max-activation-mb a word", "features --max-activation-mb lots" + out, "--max-activation-mb"},
        {"--max-activation-mb below conv1's output", "features --input {d}/good.npy --max-activation-mb 0.5" + out,
         "--max-activation-mb"},
        {"an activation over --max-activation-mb", "features --max-activation-mb 1" + out,
         "conv1: Conv2d output [1, 64, 112, 112] needs 3.1 MiB, over the limit of 1.0 MiB per activation"},
        // inputs that are not regular files: refused before opening (a FIFO used to block forever)
        {"--input a FIFO", "features --input {d}/fifo" + out, "{d}/fifo: not a regular file (it is a FIFO)"},
        {"--weights a FIFO", "features --weights {d}/fifo" + out, "{d}/fifo: not a regular file (it is a FIFO)"},
        {"convert's input a FIFO", "convert {d}/fifo {d}/out/c.safetensors", "{d}/fifo: not a regular file (it is a FIFO)"},
        {"--weights a device", "features --weights /dev/zero" + out, "/dev/zero: not a regular file (it is a character device)"},
        {"--input a socket", "features --input {d}/socket" + out, "{d}/socket: not a regular file (it is a socket)"},
        // outputs that are not regular files, or empty
        {"--out a FIFO", "features --out {d}/fifo", "{d}/fifo: cannot write: it is a FIFO, not a regular file"},
        {"--out a device", "features --out /dev/null", "/dev/null: cannot write: it is a character device, not a regular file"},
        {"--out a socket", "features --out {d}/socket", "{d}/socket: cannot write: it is a socket, not a regular file"},
        {"--out empty", "features --out ''", "--out is empty; give a file name"},
        {"convert to ''", "convert {d}/weights.safetensors ''", "convert writes safetensors"},
        // outputs that would replace an input, directly or through another name
        {"--out the --weights file", "features --weights {d}/weights.safetensors --out {d}/weights.safetensors",
         "--out {d}/weights.safetensors is the same file as --weights {d}/weights.safetensors; refusing to overwrite an input"},
        {"--out a symbolic link to the --weights file", "features --weights {d}/weights.safetensors --out {d}/weights_link.safetensors",
         "is the same file as --weights {d}/weights.safetensors"},
        {"--out a hard link to the --weights file", "features --weights {d}/weights.safetensors --out {d}/weights_hard.safetensors",
         "is the same file as --weights"},
        {"--out the --input file", "features --input {d}/good.npy --out {d}/good.npy", "is the same file as --input {d}/good.npy"},
        {"convert X X", "convert {d}/weights.safetensors {d}/weights.safetensors",
         "convert: the output {d}/weights.safetensors is the same file as the input"},
        {"convert X to a hard link of X", "convert {d}/weights_link.safetensors {d}/weights_hard.safetensors",
         "is the same file as the input"},
        // tensor names safetensors reserves
        {"--layers new name __metadata__", "features --layers layer1:__metadata__" + out,
         "--layers new name '__metadata__' is reserved"},
        {"convert a .pth holding the key __metadata__", "convert {d}/reserved.pth {d}/out/reserved.safetensors",
         "reserved.pth: tensor name '__metadata__' is reserved"},
        {"bench --batch a word", "bench --batch many", "--batch: expected a whole number from 1 to 2147483647, got 'many'"},
        {"an unknown model", "features --model resnet19" + out,
         "unknown model 'resnet19'; known models: resnet18, resnet34, resnet50, resnet101, resnet152, "
         "resnext50_32x4d, resnext101_32x8d, resnext101_64x4d, wide_resnet50_2, wide_resnet101_2"},
        {"weights of another model", "features --model resnet34 --weights {d}/weights.safetensors" + out,
         "error(s) in loading state_dict for ResNet (children run: conv1, bn1, relu, maxpool, layer1, layer2, "
         "layer3): missing keys"},
        {"an .npy as weights", "features --weights {d}/good.npy" + out, "good.npy: not a weight file strata knows"},
        {"a model name torchvision does not have", "features --model resnext50" + out,
         "unknown model 'resnext50'; known models: resnet18"},
        {"bench: an unknown model", "bench --model wide_resnet18_2 --iters 1", "unknown model 'wide_resnet18_2'"},
        // --dilation: three 0/1 values, Bottleneck models only (torchvision refuses it for BasicBlock)
        {"--dilation with two values", "features --model resnet50 --dilation 0,1" + out,
         "--dilation '0,1': expected three comma-separated 0/1 values (replace_stride_with_dilation for layer2, "
         "layer3, layer4), e.g. 0,1,1; got 2"},
        {"--dilation with four values", "features --model resnet50 --dilation 0,1,1,1" + out,
         "--dilation '0,1,1,1': expected three comma-separated 0/1 values"},
        {"--dilation empty", "features --model resnet50 --dilation ''" + out,
         "--dilation '': expected three comma-separated 0/1 values (replace_stride_with_dilation for layer2, "
         "layer3, layer4), e.g. 0,1,1; got 1"},
        {"--dilation not 0/1", "features --model resnet50 --dilation 0,2,1" + out,
         "--dilation '0,2,1': each value must be 0 or 1, got '2'"},
        {"--dilation as words", "features --model resnet50 --dilation false,true,true" + out,
         "--dilation 'false,true,true': each value must be 0 or 1, got 'false'"},
        {"--dilation with an empty entry", "features --model resnet50 --dilation 0,,1" + out,
         "--dilation '0,,1': each value must be 0 or 1, got ''"},
        {"--dilation on resnet18", "features --model resnet18 --dilation 0,1,1" + out,
         "--dilation 0,1,1: resnet18: dilation > 1 is not supported in BasicBlock (got dilation 2), as in "
         "torchvision; replace_stride_with_dilation needs a Bottleneck model"},
        {"--dilation on resnet34, layer4 only", "features --model resnet34 --dilation 0,0,1" + out,
         "--dilation 0,0,1: resnet34: dilation > 1 is not supported in BasicBlock"},
        {"bench: --dilation on resnet18", "bench --model resnet18 --dilation 1,0,0 --iters 1",
         "--dilation 1,0,0: resnet18: dilation > 1 is not supported in BasicBlock"},
        {"layers: a bad --dilation", "layers --model resnet50 --dilation 1", "--dilation '1': expected three"},
    };

    // Unreadable and unwritable need permission bits that bind this process's children.
    const bool enforced = permissions_enforced("cat " + (dir / "locked.npy") + " >/dev/null");
    if (!enforced)
        WARN("permission bits are not enforced here (root without setpriv?): the unreadable and unwritable cases are skipped");
    int checked = 0;
    for (const Case& c : catalog) {
        if (c.unprivileged && !enforced) continue;
        require_catalog_case(dir, c);
        ++checked;
    }
    REQUIRE(checked >= static_cast<int>(catalog.size()) - (enforced ? 0 : 3));
    // Refused before any work: the inputs are as they were.
    REQUIRE(slurp(dir / "weights.safetensors") == weights_before);
    REQUIRE(slurp(dir / "good.npy") == input_before);
    REQUIRE(fs::is_fifo(dir.root / "fifo"));

    // The control: the same command with nothing wrong writes the file, so the checks above can fail.
    const Run ok = run_cli(dir, expand("features --input {d}/good.npy --weights {d}/weights.safetensors --threads 2 "
                                       "--max-activation-mb 64" + out, dir));
    INFO(ok.err);
    REQUIRE(ok.rc == 0);
    REQUIRE(fs::exists(dir.root / "out" / "features.safetensors"));
}

// In the sanitizer build (scripts/test.sh --sanitize) this is the leak check of a whole CLI run:
// LeakSanitizer makes a leaking process exit 23 and print its report. The files stay in
// leak_check/ for test.sh to run the CLI on them once more, by hand, in the CI log.
TEST_CASE("cli: a full features run (--weights, --input, --out) ends cleanly, with no leak under LeakSanitizer") {
    const fs::path folder = fs::absolute("leak_check");
    fs::create_directories(folder);
    const std::string weights = (folder / "weights.safetensors").string(), input = (folder / "input.npy").string(),
                      output = (folder / "features.safetensors").string();
    auto model = models::resnet18();
    fill_deterministic(*model, 2024);
    save(model->state_dict(), weights);
    const Tensor x = strata_test::random_tensor({2, 3, 64, 48}, "catalog.leak", 0.0, 1.0);
    save_npy(x, input);
    fs::remove(output);
    const std::string cmd = "ASAN_OPTIONS=detect_leaks=1:exitcode=23 " + std::string(STRATA_CLI_PATH) +
                            " features --weights " + weights + " --input " + input +
                            " --layers layer1:feat1,layer4:feat4,fc:logits --threads 2 --out " + output + " 2>" +
                            (folder / "stderr.txt").string() + " >" + (folder / "stdout.txt").string();
    const int status = std::system(cmd.c_str());
    const std::string err = slurp(folder / "stderr.txt");
    INFO(cmd << "\nstderr: " << err);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    REQUIRE(err.find("Sanitizer") == std::string::npos);
    REQUIRE(slurp(folder / "stdout.txt") == "[('feat1', [2, 64, 16, 12]), ('feat4', [2, 512, 2, 2]), ('logits', [2, 1000])]\n");
    // The file holds what the library computes in-process, with the packing `features` uses.
    const IntermediateLayerGetter getter(*model, {{"layer1", "feat1"}, {"layer4", "feat4"}, {"fc", "logits"}});
    RunOptions options{Backend::Cpu, 2};
    options.packing = WeightPacking::Lean;
    const auto want = getter(x, options);
    const StateDict got = load(output);
    REQUIRE(got.keys() == want.keys());
    for (const auto& [name, t] : want) STRATA_REQUIRE_CMP(strata_test::compare_bitwise(got.at(name), t), name);
}

TEST_CASE("cli catalog: an output that already exists is replaced whole or kept whole, never half-written") {
    const Workdir dir;
    save_npy(strata_test::random_tensor({1, 3, 32, 32}, "catalog.input", 0.0, 1.0), dir / "good.npy");
    const std::string target = dir / "out/features.safetensors";
    std::ofstream(target) << "previous contents";
    // A failing run leaves the previous file as it was...
    Run r = run_cli(dir, "features --input " + (dir / "good.npy") + " --layers layer9 --out " + target);
    REQUIRE(r.rc == 2);
    REQUIRE(slurp(target) == "previous contents");
    r = run_cli(dir, "features --input " + (dir / "missing.npy") + " --out " + target);
    REQUIRE(r.rc == 2);
    REQUIRE(slurp(target) == "previous contents");
    // ...and a successful one replaces it with a complete file and no temporary beside it.
    r = run_cli(dir, "features --input " + (dir / "good.npy") + " --out " + target);
    INFO(r.err);
    REQUIRE(r.rc == 0);
    REQUIRE(load(target).keys() == std::vector<std::string>{"feat1", "feat2"});
    size_t entries = 0;
    for (const auto& entry : fs::directory_iterator(dir.root / "out")) entries += !entry.path().empty();
    REQUIRE(entries == 1);
}
