// safetensors: round trip (all dtypes, metadata, zero-copy mmap), format detection by content,
// and the reader's checks on malformed headers.
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "test_util.h"

using namespace strata;

namespace {

// ctest runs test cases as parallel processes in one folder: names carry the pid.
std::string temp_path(const std::string& name) { return "st_test_" + std::to_string(::getpid()) + "_" + name; }

void write_bytes(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A file with the given JSON header and `data_bytes` zero bytes of data.
std::string with_header(const std::string& json, size_t data_bytes) {
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((json.size() >> (8 * i)) & 0xff);
    return out + json + std::string(data_bytes, '\0');
}

std::string load_error(const std::string& bytes) {
    const std::string path = temp_path("bad.safetensors");
    write_bytes(path, bytes);
    try {
        load(path);
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

}  // namespace

TEST_CASE("safetensors: round trip keeps keys, order, dtypes, values and metadata") {
    StateDict state;
    state.insert("b.weight", strata_test::random_tensor({3, 4, 5}, "w"));
    state.insert("a.bias", strata_test::random_tensor({7}, "b"));
    state.insert("half", strata_test::random_tensor({2, 3}, "h").to(DType::Float16));
    state.insert("brain", strata_test::random_tensor({5}, "bf").to(DType::BFloat16));
    Tensor steps = Tensor::zeros({}, DType::Int64);
    steps.data<int64_t>()[0] = 123456789012345LL;
    state.insert("num_batches_tracked", steps);
    state.insert("empty", Tensor::zeros({0, 3}));
    const std::string path = temp_path("roundtrip.safetensors");
    save(state, path, {{"format", "pt"}, {"note", "ünïcode"}});

    Metadata meta;
    const StateDict back = load(path, &meta);
    REQUIRE(back.keys() == state.keys());
    REQUIRE(meta.at("format") == "pt");
    REQUIRE(meta.at("note") == "ünïcode");
    for (const auto& [key, t] : state) {
        const Tensor& b = back.at(key);
        INFO(key);
        REQUIRE(b.dtype() == t.dtype());
        REQUIRE(b.shape() == t.shape());
        REQUIRE((t.nbytes() == 0 || std::memcmp(b.raw_data(), t.raw_data(), t.nbytes()) == 0));
    }
    // float32 data is borrowed from the mapping, not copied
    REQUIRE_FALSE(back.at("b.weight").storage()->owns_memory());
}

TEST_CASE("safetensors: the format is chosen by content, not by the file name") {
    StateDict state;
    state.insert("x", strata_test::random_tensor({4}, "x"));
    const std::string path = temp_path("no_extension");
    save(state, path);
    REQUIRE(load(path).at("x").numel() == 4);
    write_bytes(temp_path("fake.safetensors"), "PK\x03\x04 rest of a zip");
    REQUIRE_THROWS_WITH(load(temp_path("fake.safetensors")), Catch::Contains("zip archive"));
    write_bytes(temp_path("text.safetensors"), "hello world, not weights");
    REQUIRE_THROWS_WITH(load(temp_path("text.safetensors")), Catch::Contains("not a weight file"));
    REQUIRE_THROWS_WITH(load(temp_path("does_not_exist")), Catch::Contains("cannot open"));
    REQUIRE_THROWS_WITH(load("."), Catch::Contains("directory"));
}

TEST_CASE("safetensors: malformed files give specific errors") {
    CHECK_THAT(load_error(std::string("\x10\0\0\0\0\0\0\0{", 9)), Catch::Contains("runs past the end"));
    CHECK_THAT(load_error(with_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]", 8)),
               Catch::Contains("not valid JSON"));
    CHECK_THAT(load_error(with_header(R"({"a": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}})", 8)),
               Catch::Contains("dtype F64"));
    CHECK_THAT(load_error(with_header(R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 8)),
               Catch::Contains("3 elements") && Catch::Contains("8 bytes"));
    CHECK_THAT(load_error(with_header(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 16]}})", 8)),
               Catch::Contains("outside"));
    CHECK_THAT(load_error(with_header(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})", 12)),
               Catch::Contains("overlap"));
    CHECK_THAT(load_error(with_header(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", 8)),
               Catch::Contains("gap"));
    CHECK_THAT(load_error(with_header(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", 8)),
               Catch::Contains("'a' twice"));
    CHECK_THAT(load_error(with_header(R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296, 4294967296], "data_offsets": [0, 4]}})", 4)),
               Catch::Contains("more elements than int64"));
    CHECK_THAT(load_error(with_header("{\"\xff\xfe\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4)),
               Catch::Contains("not valid JSON"));
    CHECK_THAT(load_error(with_header(R"({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4)),
               Catch::Contains("non-negative"));
    // A 1 KB file that claims a 10 GB tensor is refused by the size check, before any allocation.
    CHECK_THAT(load_error(with_header(R"({"a": {"dtype": "F32", "shape": [2500000000], "data_offsets": [0, 10000000000]}})", 1000)),
               Catch::Contains("outside"));
    // Truncated at every offset: always an Error, never a crash.
    StateDict state;
    state.insert("w", strata_test::random_tensor({3, 5}, "w"));
    const std::string good = safetensors_bytes(state);
    for (size_t cut = 0; cut < good.size(); ++cut) {
        INFO("truncated at " << cut);
        REQUIRE_THROWS_AS(read_safetensors(reinterpret_cast<const unsigned char*>(good.data()), cut, nullptr, "t"), Error);
    }
}

TEST_CASE("npy: float32 C-order loads, other dtypes, Fortran order and truncation are refused") {
    const Tensor x = strata_test::random_tensor({2, 3, 4, 5}, "npy");
    const std::string path = temp_path("x.npy");
    save_npy(x, path);
    const Tensor back = load_npy(path);
    REQUIRE(back.shape() == x.shape());
    REQUIRE(std::memcmp(back.raw_data(), x.raw_data(), x.nbytes()) == 0);

    auto npy = [](const std::string& dict, size_t data_bytes) {
        std::string header = dict;
        while ((10 + header.size() + 1) % 64) header += ' ';
        header += '\n';
        std::string b = "\x93NUMPY\x01";
        b += '\0';
        b += static_cast<char>(header.size());
        b += '\0';
        return b + header + std::string(data_bytes, '\0');
    };
    auto err = [&](const std::string& bytes) {
        write_bytes(temp_path("bad.npy"), bytes);
        try { load_npy(temp_path("bad.npy")); } catch (const Error& e) { return std::string(e.what()); }
        return std::string("(no error)");
    };
    CHECK_THAT(err(npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", 16)), Catch::Contains("'<f8'"));
    CHECK_THAT(err(npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16)), Catch::Contains("Fortran"));
    CHECK_THAT(err(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", 12)), Catch::Contains("truncated"));
    CHECK_THAT(err("not numpy at all"), Catch::Contains("bad magic"));
    REQUIRE(load_npy(temp_path("x.npy")).numel() == 120);
}
