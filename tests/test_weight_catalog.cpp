// The bad-file catalog: malformed and hostile weight files, each refused with its own error
// that names the file, never a crash, hang or giant allocation (run it under ASan + UBSan with
// -DSTRATA_SANITIZE=ON). Files are built by breaking one field of a valid file
// (tests/pth_writer.h for torch.save, safetensors_bytes for safetensors). Last, the fuzz
// corpora and every fuzzer finding (fuzz/corpus/, fuzz/regressions/) are replayed.
#include <dirent.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "fuzz/fuzz_harness.h"
#include "pth_writer.h"
#include "test_util.h"

using namespace strata;
using pth_test::put32;
using pth_test::put64;

namespace {

const char* kName = "bad.pth";  // the file name every error must carry

// The error loading `bytes` gives, or "(no error)".
std::string error_of(const std::string& bytes, const LoadOptions& options = {}) {
    try {
        load_from_memory(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), nullptr, kName, options);
    } catch (const Error& e) {
        const std::string what = e.what();
        if (what.find(kName) == std::string::npos) return "(error without the file name) " + what;
        return what;
    }
    return "(no error)";
}

StateDict small_state() {
    StateDict s;
    s.insert("w", strata_test::random_tensor({3, 5}, "w"));
    Tensor n = Tensor::zeros({}, DType::Int64);
    n.data<int64_t>()[0] = 9;
    s.insert("n", n);
    return s;
}

// A zip holding one pickle and the given storages ("archive/data/<i>").
std::string zip_with(const std::string& pickle, const std::vector<std::string>& storages = {}) {
    std::vector<pth_test::ZipEntrySpec> entries{{"archive/data.pkl", pickle}};
    for (size_t i = 0; i < storages.size(); ++i) entries.push_back({"archive/data/" + std::to_string(i), storages[i]});
    return pth_test::make_zip(entries).bytes;
}

// One float32 tensor "t" of the given geometry over storage "0" of `numel` elements.
std::string one_tensor_pickle(int64_t numel, std::vector<int64_t> shape, std::vector<int64_t> strides,
                              int64_t offset = 0, const std::string& type = "FloatStorage") {
    pth_test::TensorSpec t;
    t.key = "t";
    t.storage_type = type;
    t.storage_numel = numel;
    t.shape = std::move(shape);
    t.strides = std::move(strides);
    t.offset = offset;
    return pth_test::state_dict_pickle({t});
}

void patch32(std::string& s, size_t at, uint32_t v) {
    std::string b;
    put32(b, v);
    s.replace(at, 4, b);
}

// The safetensors file with this header and `data_bytes` zero bytes of data.
std::string st_with_header(const std::string& json, size_t data_bytes) {
    std::string out;
    put64(out, json.size());
    return out + json + std::string(data_bytes, '\0');
}

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif
#else
constexpr bool kAsan = false;
#endif

// Loads `bytes` in a child process whose address space may grow by at most 1 GB: a loader that
// allocated what a file claims (10 GB) would get bad_alloc there. Returns the child's verdict:
// "error" (strata::Error, as wanted), "loaded", or "other exception" (bad_alloc, or an Error
// saying it ran out of memory). ASan reserves terabytes of
// address space for its shadow memory, so under ASan the cap is skipped (the fuzzers' malloc
// limit covers it there).
std::string load_with_memory_cap(const std::string& bytes) {
    if (kAsan) return error_of(bytes) == "(no error)" ? "loaded" : "error";
    const pid_t pid = fork();
    if (pid == 0) {
        long pages = 0;
        std::ifstream("/proc/self/statm") >> pages;
        const rlim_t cap = static_cast<rlim_t>(pages) * static_cast<rlim_t>(sysconf(_SC_PAGESIZE)) + (rlim_t(1) << 30);
        const rlimit limit{cap, cap};
        setrlimit(RLIMIT_AS, &limit);
        int code = 1;
        try {
            load_from_memory(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), nullptr, kName);
        } catch (const Error& e) {
            // Storage::allocate reports a failed allocation as an Error too: that is no pass.
            code = std::string(e.what()).find("out of memory") == std::string::npos ? 0 : 2;
        } catch (...) {
            code = 2;
        }
        _exit(code);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return code == 0 ? "error" : code == 1 ? "loaded" : "other exception";
}

// Every prefix of `bytes` (all of them up to 4 KB, then 4096 evenly spread cuts) must fail
// with a strata::Error.
void require_truncations_fail(const std::string& bytes, const std::string& what) {
    const size_t step = bytes.size() <= 4096 ? 1 : bytes.size() / 4096;
    for (size_t cut = 0; cut < bytes.size(); cut += step) {
        INFO(what << " truncated to " << cut << " of " << bytes.size() << " bytes");
        REQUIRE_THROWS_AS(load_from_memory(reinterpret_cast<const unsigned char*>(bytes.data()), cut, nullptr, kName), Error);
    }
}

std::vector<std::string> files_in(const std::string& dir) {
    std::vector<std::string> out;
    if (DIR* d = opendir(dir.c_str())) {
        while (const dirent* e = readdir(d))
            if (e->d_name[0] != '.') out.push_back(dir + "/" + e->d_name);
        closedir(d);
    }
    return out;
}

std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

}  // namespace

// ---- safetensors -------------------------------------------------------------------------------

TEST_CASE("catalog safetensors: each malformed header is refused with its own error") {
    const std::string f32_2 = R"("dtype": "F32", "shape": [2])";
    CHECK_THAT(error_of(std::string("\x10\0\0\0\0\0\0\0{", 9)), Catch::Contains("header length 16 runs past the end"));
    CHECK_THAT(error_of(st_with_header(R"({"a": {)" + f32_2 + R"(, "data_offsets": [0, 16]}})", 8)),
               Catch::Contains("data_offsets [0, 16] lie outside the 8 bytes of data"));
    CHECK_THAT(error_of(st_with_header(R"({"a": {)" + f32_2 + R"(, "data_offsets": [8, 0]}})", 8)),
               Catch::Contains("are reversed"));
    CHECK_THAT(error_of(st_with_header(R"({"a": {)" + f32_2 + R"(, "data_offsets": [0, 8]}, "b": {)" + f32_2 +
                                       R"(, "data_offsets": [4, 12]}})", 12)),
               Catch::Contains("overlap"));
    CHECK_THAT(error_of(st_with_header(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", 8)),
               Catch::Contains("gap"));
    // Listed out of data order is legal: the data is tiled by offset, whatever the JSON order.
    CHECK(error_of(st_with_header(R"({"b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", 8)) == "(no error)");
    CHECK_THAT(error_of(st_with_header(R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296, 4294967296], "data_offsets": [0, 4]}})", 4)),
               Catch::Contains("more elements than int64"));
    CHECK_THAT(error_of(st_with_header(R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 8)),
               Catch::Contains("(3 elements) but 8 bytes"));
    CHECK_THAT(error_of(st_with_header(R"({"a": {"dtype": "F16", "shape": [3], "data_offsets": [0, 12]}})", 12)),
               Catch::Contains("dtype F16 (3 elements) but 12 bytes"));
    CHECK_THAT(error_of(st_with_header("{\"\xc3\x28\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4)),
               Catch::Contains("not valid JSON") && Catch::Contains("UTF-8"));
    CHECK_THAT(error_of(st_with_header(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", 8)),
               Catch::Contains("has the key 'a' twice"));
    CHECK_THAT(error_of(st_with_header(R"({"a": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}})", 8)),
               Catch::Contains("dtype F64"));
    // A shape nested a million deep used to overflow the stack when printed in the error.
    const std::string deep = std::string(1000000, '[') + std::string(1000000, ']');
    CHECK_THAT(error_of(st_with_header(R"({"a": {"dtype": "F32", "shape": )" + deep + R"(, "data_offsets": [0, 4]}})", 4)),
               Catch::Contains("nests deeper than 8 levels"));
    CHECK_THAT(error_of(st_with_header(R"({"a": {"dtype": "F32", "shape": [[1]], "data_offsets": [0, 4]}})", 4)),
               Catch::Contains("must be a non-negative integer, got an array"));
}

TEST_CASE("catalog safetensors: a 1 KB file claiming a 10 GB tensor is refused before allocating") {
    const std::string claim = st_with_header(R"({"a": {"dtype": "F32", "shape": [2500000000], "data_offsets": [0, 10000000000]}})", 900);
    REQUIRE(claim.size() < 1024);
    CHECK_THAT(error_of(claim), Catch::Contains("lie outside"));
    CHECK(load_with_memory_cap(claim) == "error");
}

TEST_CASE("catalog safetensors: truncated at every offset") {
    StateDict s = small_state();
    s.insert("h", strata_test::random_tensor({7}, "h").to(DType::Float16));
    require_truncations_fail(safetensors_bytes(s, {{"k", "v"}}), "safetensors");
}

// A valid safetensors file (one F32 tensor 'a' = 2.5) whose header is exactly `header_len` bytes:
// the JSON object, then spaces, as writers pad it.
std::string st_with_header_length(uint64_t header_len) {
    const std::string json = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
    REQUIRE(header_len >= json.size());
    std::string out;
    put64(out, header_len);
    out += json;
    out.append(header_len - json.size(), ' ');
    const float v = 2.5f;
    out.append(reinterpret_cast<const char*>(&v), 4);
    return out;
}

// The length's first bytes read as a pickle protocol marker (0x80 0x02..0x05: 640, 896, 1152,
// 1408, then every 65536 more) or a zip signature ("PK\x03\x04" is 67,324,752). Such files were
// refused as broken pickles; the header, a JSON object that fits the file, decides now.
TEST_CASE("catalog safetensors: header lengths whose bytes look like a pickle or zip signature load as safetensors") {
    auto loads = [](const std::string& bytes) {
        const StateDict s = load_from_memory(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), nullptr, kName);
        return s.size() == 1 && s.at("a").data<float>()[0] == 2.5f;
    };
    for (const uint64_t len : {640ull, 896ull, 1152ull, 1408ull, 0x10280ull, 0x20380ull, 0x30480ull, 0xff0580ull}) {
        const std::string bytes = st_with_header_length(len);
        INFO("header length " << len);
        REQUIRE(static_cast<unsigned char>(bytes[0]) == 0x80);
        CHECK(loads(bytes));
    }
    {
        const std::string bytes = st_with_header_length(0x04034b50);  // "PK\x03\x04", a 64 MB header
        REQUIRE(bytes.compare(0, 4, "PK\x03\x04") == 0);
        CHECK(loads(bytes));
    }
    // Every colliding length up to the 100 MB header limit, pickle markers and zip signatures:
    // detection on one buffer, with the JSON object's braces moved to each length.
    const size_t limit = size_t(100) << 20;
    std::string buffer(8 + limit, ' ');
    auto* b = reinterpret_cast<unsigned char*>(&buffer[0]);
    std::vector<uint64_t> lengths;
    for (uint64_t high = 0; (high << 16) < limit; ++high)
        for (const uint64_t marker : {0x0280ull, 0x0380ull, 0x0480ull, 0x0580ull})
            if ((high << 16 | marker) <= limit) lengths.push_back(high << 16 | marker);
    for (const uint64_t zip : {0x04034b50ull, 0x06054b50ull, 0x06064b50ull}) lengths.push_back(zip);
    size_t checked = 0;
    for (const uint64_t len : lengths) {
        for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(len >> (8 * i));
        b[8] = '{';
        b[8 + len - 1] = '}';
        const bool ok = detect_weight_format(b, 8 + len) == WeightFormat::Safetensors &&
                        detect_weight_format(b, buffer.size()) == WeightFormat::Safetensors;
        b[8 + len - 1] = ' ';
        if (!ok) FAIL("header length " << len << " is not detected as safetensors");
        ++checked;
    }
    CHECK(checked == lengths.size());
    CHECK(checked > 6000);
    // And torch.save files are still told apart: their first 8 bytes never fit as a length.
    const std::string zip = pth_test::torch_zip(small_state());
    CHECK(detect_weight_format(reinterpret_cast<const unsigned char*>(zip.data()), zip.size()) == WeightFormat::TorchZip);
    const std::string legacy = pth_test::torch_legacy(small_state());
    CHECK(detect_weight_format(reinterpret_cast<const unsigned char*>(legacy.data()), legacy.size()) ==
          WeightFormat::TorchLegacy);
}

// ---- torch.save zip ----------------------------------------------------------------------------

TEST_CASE("catalog pth zip: container damage") {
    const StateDict state = small_state();
    const auto entries = pth_test::torch_zip_entries(state);  // data.pkl, data/0, data/1, version
    const pth_test::ZipLayout z = pth_test::make_zip(entries, /*zip64_end=*/false);
    REQUIRE(error_of(z.bytes) == "(no error)");

    SECTION("no end record") {
        CHECK_THAT(error_of(z.bytes.substr(0, z.end_offset)), Catch::Contains("no end-of-central-directory record"));
    }
    SECTION("central directory out of range") {
        std::string b = z.bytes;
        patch32(b, z.end_offset + 16, 0x7fffff00);
        CHECK_THAT(error_of(b), Catch::Contains("central directory [2147483392") && Catch::Contains("lies outside"));
    }
    SECTION("an entry's data out of range") {
        std::string b = z.bytes;
        patch32(b, z.central_offsets[1] + 20, 0x7fffffff);  // compressed size
        patch32(b, z.central_offsets[1] + 24, 0x7fffffff);  // size
        CHECK_THAT(error_of(b), Catch::Contains("entry 'archive/data/0' data") && Catch::Contains("runs past"));
    }
    SECTION("a local header offset out of range") {
        std::string b = z.bytes;
        patch32(b, z.central_offsets[2] + 42, 0x7ffffff0);
        CHECK_THAT(error_of(b), Catch::Contains("entry 'archive/data/1' local header offset 2147483632 lies outside"));
    }
    SECTION("overlapping entries") {
        // data/0 claims 40 more bytes: its data now runs into data/1's local header.
        std::string b = z.bytes;
        const uint32_t grown = static_cast<uint32_t>(entries[1].data.size() + 40);
        patch32(b, z.central_offsets[1] + 20, grown);
        patch32(b, z.central_offsets[1] + 24, grown);
        CHECK_THAT(error_of(b), Catch::Contains("entries 'archive/data/0' and 'archive/data/1' overlap"));
    }
    SECTION("entries listed out of file order still load (the order is not the layout)") {
        std::vector<pth_test::ZipEntrySpec> reversed(entries.rbegin(), entries.rend());
        CHECK(error_of(pth_test::make_zip(reversed).bytes) == "(no error)");
    }
    SECTION("a compressed entry") {
        auto e = entries;
        e[1].method = 8;
        CHECK_THAT(error_of(pth_test::make_zip(e).bytes),
                   Catch::Contains("zip entry 'archive/data/0' is compressed (deflate, method 8)") &&
                       Catch::Contains("torch.save"));
        e = entries;
        e[0].method = 8;
        CHECK_THAT(error_of(pth_test::make_zip(e).bytes), Catch::Contains("'archive/data.pkl' is compressed"));
    }
    SECTION("an encrypted entry") {
        auto e = entries;
        e[1].flags |= 1;
        CHECK_THAT(error_of(pth_test::make_zip(e).bytes), Catch::Contains("'archive/data/0' is encrypted"));
    }
    SECTION("a damaged byte fails the CRC-32 check, unless checks are off") {
        std::string b = z.bytes;
        b[z.data_offsets[1]] ^= 0x40;
        CHECK_THAT(error_of(b), Catch::Contains("'archive/data/0' fails its CRC-32 check"));
        LoadOptions unchecked;
        unchecked.verify_checksums = false;
        CHECK(error_of(b, unchecked) == "(no error)");
    }
    SECTION("the same entry name twice") {
        auto e = entries;
        e.push_back(e[1]);
        CHECK_THAT(error_of(pth_test::make_zip(e).bytes), Catch::Contains("has the entry 'archive/data/0' twice"));
    }
    SECTION("a local header naming another entry") {
        std::string b = z.bytes;
        b[z.header_offsets[1] + 30 + std::string("archive/data/").size()] = '7';
        CHECK_THAT(error_of(b), Catch::Contains("its local header names a different entry"));
    }
    SECTION("byteorder: big-endian refused, little accepted") {
        auto e = entries;
        e.push_back({"archive/byteorder", "big"});
        CHECK_THAT(error_of(pth_test::make_zip(e).bytes),
                   Catch::Contains("written on a big-endian machine") && Catch::Contains("save it again"));
        e.back().data = "little";
        CHECK(error_of(pth_test::make_zip(e).bytes) == "(no error)");
        e.back().data = "middle";
        CHECK_THAT(error_of(pth_test::make_zip(e).bytes), Catch::Contains("unknown byteorder 'middle'"));
    }
    SECTION("an unknown archive version") {
        auto e = entries;
        e.back().data = "99\n";
        CHECK_THAT(error_of(pth_test::make_zip(e).bytes), Catch::Contains("archive version '99'"));
    }
    SECTION("no data.pkl, or a storage entry missing") {
        auto e = entries;
        e.erase(e.begin());
        CHECK_THAT(error_of(pth_test::make_zip(e).bytes), Catch::Contains("has no 'archive/data.pkl'"));
        e = entries;
        e.erase(e.begin() + 2);
        CHECK_THAT(error_of(pth_test::make_zip(e).bytes), Catch::Contains("storage '1' has no entry 'archive/data/1'"));
    }
    SECTION("not a zip at all, and an empty archive") {
        CHECK_THAT(error_of("PK\x03\x04 and then nothing of a zip"), Catch::Contains("no end-of-central-directory"));
        CHECK_THAT(error_of(pth_test::make_zip({}).bytes), Catch::Contains("the zip archive is empty"));
    }
}

TEST_CASE("catalog pth zip: storages and tensors that disagree") {
    const std::string f12(12 * 4, '\0');  // a storage of 12 float32
    CHECK(error_of(zip_with(one_tensor_pickle(12, {3, 4}, {4, 1}), {f12})) == "(no error)");
    // dtype and byte size disagree: 12 float64 = 96 bytes, the entry holds 48
    CHECK_THAT(error_of(zip_with(one_tensor_pickle(12, {3, 4}, {4, 1}, 0, "DoubleStorage"), {f12})),
               Catch::Contains("storage '0' is declared as 12 float64 elements (96 bytes) but its entry 'archive/data/0' holds 48 bytes"));
    CHECK_THAT(error_of(zip_with(one_tensor_pickle(13, {13}, {1}), {f12})),
               Catch::Contains("13 float32 elements (52 bytes)"));
    // views reaching past their storage: by offset, by stride, by shape
    CHECK_THAT(error_of(zip_with(one_tensor_pickle(12, {3, 4}, {4, 1}, 1), {f12})),
               Catch::Contains("tensor 't' (shape [3, 4], strides [4, 1], storage offset 1, float32) needs 52 bytes but its storage '0' holds 48"));
    CHECK_THAT(error_of(zip_with(one_tensor_pickle(12, {3, 4}, {5, 1}), {f12})), Catch::Contains("needs 56 bytes"));
    CHECK_THAT(error_of(zip_with(one_tensor_pickle(12, {0, 4}, {4, 1}, 13), {f12})), Catch::Contains("needs 52 bytes"));
    CHECK(error_of(zip_with(one_tensor_pickle(12, {0, 4}, {4, 1}, 12), {f12})) == "(no error)");  // empty, at the end
    // element counts and extents that overflow 64 bits
    CHECK_THAT(error_of(zip_with(one_tensor_pickle(12, {4294967296, 4294967296, 4294967296}, {0, 0, 0}), {f12})),
               Catch::Contains("whose element count or extent overflows 64 bits"));
    CHECK_THAT(error_of(zip_with(one_tensor_pickle(12, {2, 2}, {INT64_MAX, 1}), {f12})),
               Catch::Contains("needs more than 2^64 bytes"));
    CHECK_THAT(error_of(zip_with(one_tensor_pickle(12, {3, 3}, {INT64_MAX, INT64_MAX}), {f12})),
               Catch::Contains("overflows 64 bits"));
    CHECK_THAT(error_of(zip_with(one_tensor_pickle(INT64_MAX, {1}, {1}), {f12})), Catch::Contains("is too large"));
    CHECK_THAT(error_of(zip_with(one_tensor_pickle(12, {-3, 4}, {4, 1}), {f12})),
               Catch::Contains("size and stride must be non-negative ints, got int -3"));
    CHECK_THAT(error_of(zip_with(one_tensor_pickle(12, std::vector<int64_t>(65, 1), std::vector<int64_t>(65, 1)), {f12})),
               Catch::Contains("65 dimensions; strata allows at most 64"));
    // unsupported dtypes are refused by name
    CHECK_THAT(error_of(zip_with(one_tensor_pickle(12, {12}, {1}, 0, "IntStorage"), {f12})),
               Catch::Contains("tensor 't' has dtype int32"));
    CHECK_THAT(error_of(zip_with(one_tensor_pickle(48, {48}, {1}, 0, "BoolStorage"), {f12})),
               Catch::Contains("tensor 't' has dtype bool"));
}

TEST_CASE("catalog pth: a 1 KB file claiming a 10 GB tensor is refused before allocating") {
    const std::string zip = zip_with(one_tensor_pickle(2500000000, {50000, 50000}, {50000, 1}), {std::string(8, '\0')});
    REQUIRE(zip.size() < 1024);
    CHECK_THAT(error_of(zip), Catch::Contains("declared as 2500000000 float32 elements (10000000000 bytes) but its entry 'archive/data/0' holds 8 bytes"));
    CHECK(load_with_memory_cap(zip) == "error");

    // legacy: the persistent id and the count before the data both claim 10 GB; 8 bytes follow
    StateDict one;
    one.insert("t", Tensor::zeros({2}));
    std::string legacy = pth_test::torch_legacy(one);
    const std::string honest_pickle = pth_test::state_dict_pickle(pth_test::specs_of(one), true);
    pth_test::TensorSpec huge = pth_test::specs_of(one)[0];
    huge.storage_numel = 2500000000;
    huge.shape = {2500000000};
    const size_t at = legacy.find(honest_pickle);
    REQUIRE(at != std::string::npos);
    legacy.replace(at, honest_pickle.size(), pth_test::state_dict_pickle({huge}, true));
    std::string count;
    put64(count, 2500000000);
    legacy.replace(legacy.size() - 16, 8, count);
    REQUIRE(legacy.size() < 1024);
    CHECK_THAT(error_of(legacy), Catch::Contains("storage '0' needs 10000000000 bytes") && Catch::Contains("but 8 remain"));
    CHECK(load_with_memory_cap(legacy) == "error");

    // a stride-0 view of one float claiming 2^31 elements (8 GB once copied): the amplification
    // bound refuses it, since convert or .contiguous() would have to allocate it
    const std::string expand = zip_with(one_tensor_pickle(1, {2147483648}, {0}), {std::string(4, '\0')});
    CHECK_THAT(error_of(expand), Catch::Contains("describe more than") && Catch::Contains("amplification"));
    CHECK(error_of(zip_with(one_tensor_pickle(1, {1000}, {0}), {std::string(4, '\0')})) == "(no error)");
}

TEST_CASE("catalog pth: the unpickler refuses globals and survives hostile programs") {
    using pth_test::Pickler;
    auto zip_of = [](const Pickler& p) { return zip_with(p.out); };

    // A forbidden global: refused by name before anything could call it.
    Pickler os_system;
    os_system.global("os", "system").op('(').str("touch /tmp/strata_pwned").op('t').op('R').stop();
    CHECK_THAT(error_of(zip_of(os_system)), Catch::Contains("refers to the Python global 'os.system', which strata refuses") &&
                                                Catch::Contains("never imports or calls"));
    CHECK_FALSE(std::ifstream("/tmp/strata_pwned").good());
    Pickler stack_global;  // protocol 4 style: module and name from the stack
    stack_global.str("subprocess").str("Popen").op('\x93').stop();
    CHECK_THAT(error_of(zip_of(stack_global)), Catch::Contains("'subprocess.Popen'"));
    Pickler inst;  // INST names its class inline
    inst.op('(').out += "ibuiltins\neval\n";
    inst.stop();
    CHECK_THAT(error_of(zip_of(inst)), Catch::Contains("'builtins.eval'"));
    Pickler torch_load;  // even torch's own functions, other than the tensor rebuilders
    torch_load.global("torch", "load").stop();
    CHECK_THAT(error_of(zip_of(torch_load)), Catch::Contains("'torch.load'"));

    // 300,000 nested lists and tuples: no recursion anywhere (building, freeing, describing).
    Pickler lists;
    lists.out += std::string(300000, '(') + std::string(300000, 'l');
    lists.stop();
    CHECK_THAT(error_of(zip_of(lists)), Catch::Contains("expected a state_dict") && Catch::Contains("the file holds list of 1 items"));
    Pickler tuples;
    tuples.op(')').out += std::string(300000, '\x85');
    tuples.stop();
    CHECK_THAT(error_of(zip_of(tuples)), Catch::Contains("the file holds tuple of 1 items"));
    // A million of them build 90 bytes of values per byte of pickle: over the memory budget
    // (16x the pickle + 64 MB), refused by name (tests/test_hardening.cpp has the 10 MB shapes).
    Pickler million;
    million.op(')').out += std::string(1000000, '\x85');
    million.stop();
    CHECK_THAT(error_of(zip_of(million)), Catch::Contains("bytes of memory, the limit for a 1000004-byte pickle (16x its size + 64 MB)"));

    // Cycles through the memo: a list holding itself, a dict whose 'state_dict' is itself.
    Pickler cyclic_list;
    cyclic_list.op(']').op('q').op('\0').op('h').op('\0').op('a').stop();
    CHECK_THAT(error_of(zip_of(cyclic_list)), Catch::Contains("the file holds list of 1 items"));
    Pickler cyclic_dict;
    cyclic_dict.op('}').op('q').op('\0').str("state_dict").op('h').op('\0').op('s').stop();
    CHECK_THAT(error_of(zip_of(cyclic_dict)), Catch::Contains("found a dict with entries 'state_dict' (dict of 1 items)"));
    // A memo reference to nothing, and one million references to one large string.
    Pickler dangling;
    dangling.op('h').op('\x05').stop();
    CHECK_THAT(error_of(zip_of(dangling)), Catch::Contains("memo entry 5 is used before it is set"));
    Pickler many_refs;
    many_refs.op('(').str(std::string(1 << 20, 'k')).op('q').op('\0');
    for (int i = 0; i < 1000000; ++i) many_refs.op('h').op('\0');
    many_refs.op('l').stop();
    const auto start = std::chrono::steady_clock::now();
    CHECK_THAT(error_of(zip_of(many_refs)), Catch::Contains("the file holds list of 1000001 items"));
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(20));  // linear, not 10^12

    // Strings: invalid UTF-8, lengths past the end.
    Pickler bad_utf8;
    bad_utf8.global("collections", "OrderedDict").op(')').op('R').str("conv\xff\xfe").op('N').op('s').stop();
    CHECK_THAT(error_of(zip_of(bad_utf8)), Catch::Contains("a string is not valid UTF-8: 'conv\\xff\\xfe'"));
    Pickler surrogate;
    surrogate.str("\xed\xa0\x80").stop();
    CHECK_THAT(error_of(zip_of(surrogate)), Catch::Contains("not valid UTF-8"));
    Pickler long_claim;
    long_claim.op('\x8d');  // BINUNICODE8 of 2^60 bytes
    put64(long_claim.out, uint64_t(1) << 60);
    CHECK_THAT(error_of(zip_of(long_claim)), Catch::Contains("needs 1152921504606846976 more bytes"));

    // Machine errors: underflow, unknown opcode, no STOP, newer protocol, a non-hashable key.
    CHECK_THAT(error_of(zip_of(Pickler().op('R'))), Catch::Contains("data.pkl at byte 2: stack underflow"));
    CHECK_THAT(error_of(zip_of(Pickler().op('\xff'))), Catch::Contains("unknown opcode 0xff"));
    CHECK_THAT(error_of(zip_of(Pickler().op('N'))), Catch::Contains("ends without a STOP"));
    Pickler proto6;
    proto6.out = "\x80\x06N.";
    CHECK_THAT(error_of(zip_of(proto6)), Catch::Contains("pickle protocol 6"));
    CHECK_THAT(error_of(zip_of(Pickler().op('}').op(']').op('N').op('s'))), Catch::Contains("unhashable"));
    CHECK_THAT(error_of(zip_of(Pickler().op('(').op('s'))), Catch::Contains("stack underflow"));
}

TEST_CASE("catalog pth: state_dict contents") {
    const std::string f4(16, '\0');
    pth_test::TensorSpec t;
    t.key = "w";
    t.storage_numel = 4;
    t.shape = {4};
    t.strides = {1};
    {
        // The key twice (two SETITEMS entries): Python's dict keeps the last value, so does strata.
        pth_test::TensorSpec second = t;
        second.offset = 1;
        second.shape = {3};
        const std::string file = zip_with(pth_test::state_dict_pickle({t, second}), {f4});
        const StateDict s = load_from_memory(reinterpret_cast<const unsigned char*>(file.data()), file.size(), nullptr, kName);
        REQUIRE(s.size() == 1);
        CHECK(s.at("w").shape() == Shape{3});
        CHECK(s.at("w").byte_offset() == 4);
    }
    // a non-tensor among tensors, and a dict with no state_dict in it
    pth_test::Pickler mixed;
    mixed.op('}').op('(').str("w");
    pth_test::pickle_tensor(mixed, t);
    mixed.str("lr").integer(3).op('u').stop();
    CHECK_THAT(error_of(zip_with(mixed.out, {f4})), Catch::Contains("its entry 'lr' (int 3) is not a tensor"));
    pth_test::Pickler meta;
    meta.op('}').op('(').str("epoch").integer(3).str("weights").op('}').op('u').stop();
    CHECK_THAT(error_of(zip_with(meta.out)), Catch::Contains("found a dict with entries 'epoch' (int 3), 'weights' (dict of 0 items)"));
    // a storage key that is not a zip entry name we would build
    t.storage_key = std::string(300, 'k');
    CHECK_THAT(error_of(zip_with(pth_test::state_dict_pickle({t}), {f4})), Catch::Contains("at most 256 bytes"));
    // TorchScript's marker entries
    CHECK_THAT(error_of(pth_test::make_zip({{"m/data.pkl", "N."}, {"m/constants.pkl", "N."}}).bytes),
               Catch::Contains("TorchScript archive"));
}

// Issue 11, item 2: every dict the unpickler builds behaves as Python's, so the file means to
// strata what it means to torch.load: a key assigned twice keeps its last value (and its first
// place); keys compare as Python compares them (1 == True == 1.0, tuples by value).
TEST_CASE("catalog pth: a key assigned twice keeps its last value, as in Python") {
    using pth_test::Pickler;
    const std::string f4(16, '\0');
    pth_test::TensorSpec t;
    t.key = "w";
    t.storage_numel = 4;
    t.shape = {4};
    t.strides = {1};
    pth_test::TensorSpec last = t;
    last.shape = {2};
    last.offset = 2;
    auto load_bytes = [](const std::string& bytes) {
        return load_from_memory(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), nullptr, kName);
    };
    // Two SETITEM opcodes on the state_dict.
    Pickler two_setitem;
    two_setitem.global("collections", "OrderedDict").op(')').op('R');
    two_setitem.str("w");
    pth_test::pickle_tensor(two_setitem, t);
    two_setitem.op('s').str("w");
    pth_test::pickle_tensor(two_setitem, last);
    two_setitem.op('s').stop();
    const std::string file = zip_with(two_setitem.out, {f4});
    const StateDict s = load_bytes(file);
    REQUIRE(s.size() == 1);
    CHECK(s.at("w").shape() == Shape{2});
    CHECK(s.at("w").byte_offset() == 8);
    // A checkpoint whose 'state_dict' entry is assigned twice: the last one counts, whichever it is.
    Pickler good_then_int;
    good_then_int.op('}').op('(').str("state_dict");
    good_then_int.op('}').op('(').str("w");
    pth_test::pickle_tensor(good_then_int, t);
    good_then_int.op('u').str("state_dict").integer(5).op('u').stop();
    CHECK_THAT(error_of(zip_with(good_then_int.out, {f4})), Catch::Contains("found a dict with entries 'state_dict' (int 5)"));
    Pickler int_then_good;
    int_then_good.op('}').op('(').str("state_dict").integer(5).str("state_dict");
    int_then_good.op('}').op('(').str("w");
    pth_test::pickle_tensor(int_then_good, last);
    int_then_good.op('u').op('u').stop();
    const std::string file2 = zip_with(int_then_good.out, {f4});
    CHECK(load_bytes(file2).at("w").shape() == Shape{2});
    // Keys equal in Python are one key: 1, True and 1.0; two equal tuples; DICT's own pairs.
    Pickler numbers;
    numbers.op('}').op('(').integer(1).str("a").op('\x88').str("b").op('G');
    for (const unsigned char c : {0x3f, 0xf0, 0, 0, 0, 0, 0, 0}) numbers.out += static_cast<char>(c);  // 1.0
    numbers.str("c").op('u').stop();
    CHECK_THAT(error_of(zip_with(numbers.out)), Catch::EndsWith("found a dict with entries int 1 (str 'c')"));
    Pickler tuples;
    tuples.op('(').int_tuple({1, 2}).str("a").int_tuple({1, 2}).str("b").op('d').stop();
    CHECK_THAT(error_of(zip_with(tuples.out)), Catch::EndsWith("found a dict with entries tuple of 2 items (str 'b')"));
    // Still unhashable: a list inside a tuple key.
    Pickler list_in_key;
    list_in_key.op('}').op('(').op(']').op('\x85').str("a").op('u').stop();
    CHECK_THAT(error_of(zip_with(list_in_key.out)), Catch::Contains("a list inside a dict key is unhashable"));
}

// Issue 11, item 1: one storage, two dtypes. torch.load types a storage once, by its first
// persistent id (zip and legacy alike: the second id's type is ignored), so a LongStorage view of
// a FloatStorage's bytes reads as float32 to torch; strata read each view as its own dtype. Now
// refused, naming both tensors.
TEST_CASE("catalog pth: a storage viewed with two dtypes is refused, naming both tensors") {
    const std::string bytes16(16, '\0');
    auto view = [](const std::string& key, const std::string& type, int64_t numel) {
        pth_test::TensorSpec t;
        t.key = key;
        t.storage_type = type;
        t.storage_numel = numel;
        t.shape = {numel};
        t.strides = {1};
        return t;
    };
    const auto f = view("a", "FloatStorage", 4), l = view("b", "LongStorage", 2), h = view("c", "HalfStorage", 8);
    CHECK_THAT(error_of(zip_with(pth_test::state_dict_pickle({f, l}), {bytes16})),
               Catch::Contains("tensor 'b' views storage '0' as int64 but tensor 'a' types it as float32; torch.load "
                               "keeps a storage's first type, so it would read 'b' as float32"));
    CHECK_THAT(error_of(zip_with(pth_test::state_dict_pickle({l, f}), {bytes16})),
               Catch::Contains("tensor 'a' views storage '0' as float32 but tensor 'b' types it as int64"));
    CHECK_THAT(error_of(zip_with(pth_test::state_dict_pickle({f, h}), {bytes16})),
               Catch::Contains("tensor 'c' views storage '0' as float16 but tensor 'a' types it as float32"));
    // The legacy format: the same rule, the same error.
    std::string legacy = "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.";
    legacy += std::string("\x80\x02M\xe9\x03.", 6);
    legacy += std::string("\x80\x02}.", 4);
    legacy += pth_test::state_dict_pickle({f, l}, true);
    pth_test::Pickler keys;
    keys.op(']').op('(').str("0").op('e').stop();
    legacy += keys.out;
    put64(legacy, 4);
    legacy += bytes16;
    CHECK_THAT(error_of(legacy), Catch::Contains("tensor 'b' views storage '0' as int64 but tensor 'a' types it as float32"));
    // One dtype, shared: still fine.
    CHECK(error_of(zip_with(pth_test::state_dict_pickle({f, view("d", "FloatStorage", 4)}), {bytes16})) == "(no error)");
}

// ---- torch.save legacy -------------------------------------------------------------------------

TEST_CASE("catalog pth legacy: damage to the pickles and the storage tail") {
    const StateDict state = small_state();
    const std::string good = pth_test::torch_legacy(state);
    REQUIRE(error_of(good) == "(no error)");
    require_truncations_fail(good, "legacy");
    require_truncations_fail(pth_test::torch_zip(state), "zip");

    std::string b = good;
    b[5] ^= 1;  // the magic number
    CHECK_THAT(error_of(b), Catch::Contains("no legacy magic number"));
    b = good;
    b.replace(good.find("M\xe9\x03"), 3, "M\xea\x03");
    CHECK_THAT(error_of(b), Catch::Contains("legacy protocol version int 1002"));
    b = good;
    b.replace(good.find("little_endian") + 13, 1, "\x89");
    CHECK_THAT(error_of(b), Catch::Contains("written on a big-endian machine"));
    b = good + "junk";
    CHECK_THAT(error_of(b), Catch::Contains("4 unexpected bytes after the last storage"));
    // the element count before storage '1' (the int64 tensor): 1 -> 2
    b = good;
    b[b.size() - 16] = 2;
    CHECK_THAT(error_of(b), Catch::Contains("storage '1' has 2 elements in the file but 1 in its persistent id"));
    // key list naming an unused storage, or one storage twice
    b = good;
    const std::string key1("X\x01\0\0\0" "1", 6);  // BINUNICODE '1'; its last use is in the key list
    b.replace(b.rfind(key1), key1.size(), std::string("X\x01\0\0\0" "7", 6));
    CHECK_THAT(error_of(b), Catch::Contains("which no tensor uses"));
}

// ---- fuzz corpus and findings --------------------------------------------------------------------

TEST_CASE("catalog: every fuzz corpus input and fuzzer finding is an Error or a load, never a crash") {
    const std::string fuzz_dir = std::string(STRATA_FIXTURES_DIR) + "/../../fuzz";
    size_t replayed = 0;
    for (const char* kind : {"corpus", "regressions"}) {
        for (const std::string& path : files_in(fuzz_dir + "/" + kind + "/safetensors")) {
            const std::string bytes = slurp(path);
            INFO(path);
            REQUIRE_NOTHROW(strata_fuzz::safetensors_one(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
            ++replayed;
        }
        for (const std::string& path : files_in(fuzz_dir + "/" + kind + "/pth")) {
            const std::string bytes = slurp(path);
            INFO(path);
            REQUIRE_NOTHROW(strata_fuzz::pth_one(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
            ++replayed;
        }
    }
    REQUIRE(replayed > 0);
}
