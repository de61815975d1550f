// safetensors reader and writer. The reader trusts nothing: header size, JSON, dtypes, shapes,
// offsets (in range, sorted, contiguous, covering the data) and byte sizes are all checked.
#include "safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

namespace strata {

namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100u << 20;  // as the reference implementation
// A valid header nests 3 deep (object > tensor > shape). Deeper JSON is refused while parsing:
// printing or walking a value nested a million deep would overflow the stack.
constexpr int kMaxHeaderDepth = 8;

bool parse_dtype(const std::string& s, DType& dtype) {
    if (s == "F32") dtype = DType::Float32;
    else if (s == "F16") dtype = DType::Float16;
    else if (s == "BF16") dtype = DType::BFloat16;
    else if (s == "I64") dtype = DType::Int64;
    else return false;
    return true;
}

const char* dtype_code(DType dtype) {
    switch (dtype) {
        case DType::Float32: return "F32";
        case DType::Float16: return "F16";
        case DType::BFloat16: return "BF16";
        case DType::Int64: return "I64";
    }
    return "?";
}

struct Entry {
    std::string key;
    DType dtype;
    Shape shape;
    uint64_t begin, end;
};

// A value for messages: scalars as JSON, containers only by their type (never a huge dump).
std::string brief(const json& v) {
    if (v.is_structured()) return v.is_array() ? "an array" : "an object";
    const std::string text = v.dump();
    return text.size() <= 64 ? text : text.substr(0, 64) + "...";
}

uint64_t get_u64(const json& v, const std::string& where) {
    STRATA_CHECK(v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0),
                 where, " must be a non-negative integer, got ", brief(v));
    return v.get<uint64_t>();
}

}  // namespace

StateDict read_safetensors(const unsigned char* data, size_t size,
                           std::shared_ptr<const void> keep_alive, const std::string& name,
                           Metadata* metadata) {
    const std::string where = name + ": safetensors";
    STRATA_CHECK(size >= 8, where, " file is ", size, " bytes, too short for the 8-byte header length");
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
    STRATA_CHECK(header_len <= kMaxHeaderBytes, where, " header length ", header_len,
                 " is over the 100 MB limit");
    STRATA_CHECK(header_len <= size - 8, where, " header length ", header_len,
                 " runs past the end of the ", size, "-byte file");
    const unsigned char* body = data + 8 + header_len;
    const uint64_t body_size = size - 8 - header_len;

    // Parse the JSON, refusing duplicate top-level keys (nlohmann would keep the last one).
    std::set<std::string> top_keys;
    std::string duplicate;
    json header;
    try {
        const auto* begin = reinterpret_cast<const char*>(data + 8);
        header = json::parse(begin, begin + header_len,
                             [&](int depth, json::parse_event_t event, json& parsed) {
                                 if (depth > kMaxHeaderDepth)
                                     STRATA_FAIL(where, " header nests deeper than ", kMaxHeaderDepth,
                                                 " levels; a valid header nests 3");
                                 if (depth == 1 && event == json::parse_event_t::key &&
                                     !top_keys.insert(parsed.get<std::string>()).second &&
                                     duplicate.empty())
                                     duplicate = parsed.get<std::string>();
                                 return true;
                             });
    } catch (const json::exception& e) {
        STRATA_FAIL(where, " header is not valid JSON: ", e.what());
    }
    STRATA_CHECK(duplicate.empty(), where, " header has the key '", duplicate, "' twice");
    STRATA_CHECK(header.is_object(), where, " header must be a JSON object");

    std::vector<Entry> entries;
    for (auto it = header.begin(); it != header.end(); ++it) {
        const std::string& key = it.key();
        const json& v = it.value();
        if (key == "__metadata__") {
            STRATA_CHECK(v.is_object(), where, " __metadata__ must be an object");
            for (auto m = v.begin(); m != v.end(); ++m) {
                STRATA_CHECK(m.value().is_string(), where, " __metadata__ value of '", m.key(),
                             "' must be a string");
                if (metadata) (*metadata)[m.key()] = m.value().get<std::string>();
            }
            continue;
        }
        const std::string at = where + " tensor '" + key + "'";
        STRATA_CHECK(v.is_object(), at, " must be an object");
        STRATA_CHECK(v.contains("dtype") && v["dtype"].is_string(), at, " has no dtype");
        STRATA_CHECK(v.contains("shape") && v["shape"].is_array(), at, " has no shape");
        STRATA_CHECK(v.contains("data_offsets") && v["data_offsets"].is_array() &&
                         v["data_offsets"].size() == 2,
                     at, " needs data_offsets [begin, end]");
        Entry e{key, DType::Float32, {}, 0, 0};
        const std::string dtype = v["dtype"].get<std::string>();
        STRATA_CHECK(parse_dtype(dtype, e.dtype), at, " has dtype ", dtype,
                     "; strata reads F32, F16, BF16 and I64");
        for (const json& d : v["shape"]) {
            const uint64_t extent = get_u64(d, at + " shape entry");
            STRATA_CHECK(extent <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), at,
                         " shape entry ", extent, " is too large");
            e.shape.push_back(static_cast<int64_t>(extent));
        }
        e.begin = get_u64(v["data_offsets"][0], at + " data_offsets");
        e.end = get_u64(v["data_offsets"][1], at + " data_offsets");
        STRATA_CHECK(e.begin <= e.end, at, " data_offsets [", e.begin, ", ", e.end,
                     "] are reversed (begin after end)");
        STRATA_CHECK(e.end <= body_size, at, " data_offsets [", e.begin, ", ",
                     e.end, "] lie outside the ", body_size, " bytes of data");
        int64_t numel = 0;
        try {
            numel = shape_numel(e.shape);
        } catch (const Error& err) {
            STRATA_FAIL(at, ": ", err.what());
        }
        const uint64_t esize = dtype_size(e.dtype);
        STRATA_CHECK(static_cast<uint64_t>(numel) <= std::numeric_limits<uint64_t>::max() / esize &&
                         static_cast<uint64_t>(numel) * esize == e.end - e.begin,
                     at, " has shape ", shape_str(e.shape), " and dtype ", dtype, " (", numel,
                     " elements) but ", e.end - e.begin, " bytes of data");
        entries.push_back(std::move(e));
    }

    // Offsets must tile the data exactly: sorted, no overlap, no gap, nothing left over.
    std::vector<const Entry*> by_offset;
    for (const Entry& e : entries) by_offset.push_back(&e);
    std::sort(by_offset.begin(), by_offset.end(), [](const Entry* a, const Entry* b) {
        return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    uint64_t expected = 0;
    for (const Entry* e : by_offset) {
        STRATA_CHECK(e->begin == expected, where, " tensor '", e->key, "' starts at byte ", e->begin,
                     " but the previous tensor ends at ", expected,
                     e->begin < expected ? " (overlap)" : " (gap)");
        expected = e->end;
    }
    STRATA_CHECK(expected == body_size, where, " tensors cover ", expected, " bytes but the file holds ",
                 body_size, " bytes of data");

    // Build the tensors in file order (by offset), which is the writer's state-dict order.
    StateDict state;
    for (const Entry* e : by_offset) {
        const unsigned char* p = body + e->begin;
        const size_t nbytes = static_cast<size_t>(e->end - e->begin);
        const bool aligned = reinterpret_cast<uintptr_t>(p) % dtype_size(e->dtype) == 0;
        Tensor t;
        if (aligned) {
            t = Tensor(Storage::borrow(const_cast<unsigned char*>(p), nbytes, keep_alive), 0,
                       e->shape, contiguous_strides(e->shape), e->dtype);
        } else {  // unaligned data: copy it rather than read misaligned values
            t = Tensor::empty(e->shape, e->dtype);
            if (nbytes) std::memcpy(t.raw_data(), p, nbytes);
        }
        state.insert(e->key, t);
    }
    return state;
}

std::string safetensors_bytes(const StateDict& state, const Metadata& metadata) {
    json header = json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    uint64_t offset = 0;
    for (const auto& [key, t] : state) {
        STRATA_CHECK(t.defined(), "save: tensor '", key, "' is undefined");
        header[key] = {{"dtype", dtype_code(t.dtype())},
                       {"shape", t.shape()},
                       {"data_offsets", {offset, offset + t.nbytes()}}};
        offset += t.nbytes();
    }
    std::string text = header.dump();
    while ((8 + text.size()) % 8 != 0) text += ' ';
    std::string out(8, '\0');
    const uint64_t n = text.size();
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    out += text;
    out.reserve(out.size() + offset);
    for (const auto& item : state) {
        const Tensor c = item.second.contiguous();
        out.append(static_cast<const char*>(c.raw_data()), c.nbytes());
    }
    return out;
}

}  // namespace strata
