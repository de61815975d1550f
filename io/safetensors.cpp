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

// A scalar for messages, as JSON (cut at 64 bytes); containers only by their type.
std::string brief_text(std::string text) { return text.size() <= 64 ? text : text.substr(0, 64) + "..."; }

// The header, read by nlohmann's SAX parser straight into Entry records: no DOM is built, so
// parsing is linear in the header's size (the DOM parser with a callback, used before, rescanned
// the top-level object at the end of every tensor: quadratic, 40,000 tensors took 50 s).
// Every event is checked where it arrives; nesting deeper than kMaxHeaderDepth is refused at once.
class HeaderReader {
public:
    using string_t = json::string_t;
    using number_integer_t = json::number_integer_t;
    using number_unsigned_t = json::number_unsigned_t;
    using number_float_t = json::number_float_t;
    using binary_t = json::binary_t;

    HeaderReader(const std::string& where, uint64_t body_size, Metadata* metadata)
        : where_(where), body_size_(body_size), metadata_(metadata) {}

    std::vector<Entry> entries;
    bool saw_metadata_twice = false;

    // ---- scalars ----
    bool null() { return scalar("null"); }
    bool boolean(bool b) { return scalar(b ? "true" : "false"); }
    bool number_integer(number_integer_t v) {
        if (v >= 0) return number_unsigned(static_cast<number_unsigned_t>(v));
        return scalar(std::to_string(v));
    }
    bool number_unsigned(number_unsigned_t v) {
        switch (parent()) {
            case Ctx::Shape:
                STRATA_CHECK(v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), tensor_at(),
                             " shape entry ", v, " is too large");
                cur_.shape.push_back(static_cast<int64_t>(v));
                return true;
            case Ctx::Offsets:
                if (offsets_ < 2) (offsets_ == 0 ? cur_.begin : cur_.end) = v;
                ++offsets_;
                return true;
            default:
                return scalar(std::to_string(v));
        }
    }
    bool number_float(number_float_t, const string_t& text) { return scalar(text); }
    bool string(string_t& s) {
        const Ctx p = parent();
        if (p == Ctx::Tensor && field_ == Field::DType) {
            dtype_ = s;
            has_dtype_ = true;
            return true;
        }
        if (p == Ctx::Metadata) {
            if (metadata_) (*metadata_)[key_] = s;
            return true;
        }
        return scalar(json(s).dump());
    }
    bool binary(binary_t&) { return scalar("binary"); }

    // ---- containers ----
    bool start_object(std::size_t) { return open(true); }
    bool start_array(std::size_t) { return open(false); }
    bool key(string_t& k) {
        const Ctx p = parent();
        if (p == Ctx::Root) {
            key_ = std::move(k);
        } else if (p == Ctx::Tensor) {
            field_ = k == "dtype" ? Field::DType : k == "shape" ? Field::Shape
                   : k == "data_offsets" ? Field::Offsets : Field::Other;
            if (field_ != Field::Other) {
                const unsigned bit = 1u << static_cast<unsigned>(field_);
                STRATA_CHECK(!(fields_seen_ & bit), tensor_at(), " has the field '", k, "' twice");
                fields_seen_ |= bit;
            }
        } else if (p == Ctx::Metadata) {
            STRATA_CHECK(!metadata_keys_.count(k), where_, " __metadata__ has the key '", k, "' twice");
            metadata_keys_.insert(k);
            key_ = std::move(k);
        }
        return true;
    }
    bool end_object() {
        const Ctx closing = stack_.back();
        stack_.pop_back();
        if (closing == Ctx::Tensor) finish_tensor();
        if (closing == Ctx::Metadata) key_ = "__metadata__";  // for the messages of its siblings
        return true;
    }
    bool end_array() {
        const Ctx closing = stack_.back();
        stack_.pop_back();
        if ((closing == Ctx::Shape || closing == Ctx::Offsets) && !pending_.empty()) throw Error(pending_);
        return true;
    }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) {
        STRATA_FAIL(where_, " header is not valid JSON: ", e.what());
    }

private:
    enum class Ctx { Root, Tensor, Metadata, Shape, Offsets, Skip };
    enum class Field { DType = 0, Shape = 1, Offsets = 2, Other = 3 };

    Ctx parent() const { return stack_.empty() ? Ctx::Skip : stack_.back(); }
    std::string tensor_at() const { return where_ + " tensor '" + key_ + "'"; }

    // A scalar where one of the structural slots expected something else.
    bool scalar(const std::string& text) {
        if (stack_.empty()) STRATA_FAIL(where_, " header must be a JSON object");
        return value_here(brief_text(text));
    }
    // Checks a value (`what` describes it) against the slot it fills; true when it is allowed.
    bool value_here(const std::string& what) {
        switch (parent()) {
            case Ctx::Root:
                if (key_ == "__metadata__") STRATA_FAIL(where_, " __metadata__ must be an object");
                STRATA_FAIL(tensor_at(), " must be an object");
            case Ctx::Tensor:
                if (field_ == Field::DType) STRATA_FAIL(tensor_at(), " has no dtype");
                if (field_ == Field::Shape) STRATA_FAIL(tensor_at(), " has no shape");
                if (field_ == Field::Offsets) STRATA_FAIL(tensor_at(), " needs data_offsets [begin, end]");
                return true;
            case Ctx::Metadata:
                STRATA_FAIL(where_, " __metadata__ value of '", key_, "' must be a string");
            case Ctx::Shape:
                STRATA_FAIL(tensor_at(), " shape entry must be a non-negative integer, got ", what);
            case Ctx::Offsets:
                STRATA_FAIL(tensor_at(), " data_offsets must be a non-negative integer, got ", what);
            case Ctx::Skip:
                return true;
        }
        return true;
    }
    bool open(bool object) {
        if (stack_.size() >= static_cast<size_t>(kMaxHeaderDepth))
            STRATA_FAIL(where_, " header nests deeper than ", kMaxHeaderDepth, " levels; a valid header nests 3");
        if (stack_.empty()) {
            STRATA_CHECK(object && !root_seen_, where_, " header must be a JSON object");
            root_seen_ = true;
            stack_.push_back(Ctx::Root);
            return true;
        }
        const Ctx p = parent();
        Ctx next = Ctx::Skip;
        if (p == Ctx::Root && object) {
            if (key_ == "__metadata__") {
                saw_metadata_twice |= saw_metadata_;
                saw_metadata_ = true;
                next = Ctx::Metadata;
            } else {
                next = Ctx::Tensor;
                cur_ = Entry{key_, DType::Float32, {}, 0, 0};
                dtype_.clear();
                has_dtype_ = false;
                fields_seen_ = 0;
                offsets_ = 0;
            }
        } else if (p == Ctx::Tensor && !object && field_ == Field::Shape) {
            next = Ctx::Shape;
        } else if (p == Ctx::Tensor && !object && field_ == Field::Offsets) {
            next = Ctx::Offsets;
        } else if (p == Ctx::Shape || p == Ctx::Offsets) {
            // Reported when the array closes, so that nesting past the limit is reported first.
            if (pending_.empty()) {
                try {
                    value_here(object ? "an object" : "an array");
                } catch (const Error& e) {
                    pending_ = e.what();
                }
            }
        } else {
            value_here(object ? "an object" : "an array");
        }
        stack_.push_back(next);
        return true;
    }
    void finish_tensor() {
        const std::string at = tensor_at();
        STRATA_CHECK(has_dtype_, at, " has no dtype");
        STRATA_CHECK(fields_seen_ & (1u << static_cast<unsigned>(Field::Shape)), at, " has no shape");
        STRATA_CHECK((fields_seen_ & (1u << static_cast<unsigned>(Field::Offsets))) && offsets_ == 2, at,
                     " needs data_offsets [begin, end]");
        Entry& e = cur_;
        STRATA_CHECK(parse_dtype(dtype_, e.dtype), at, " has dtype ", dtype_, "; strata reads F32, F16, BF16 and I64");
        STRATA_CHECK(e.begin <= e.end, at, " data_offsets [", e.begin, ", ", e.end, "] are reversed (begin after end)");
        STRATA_CHECK(e.end <= body_size_, at, " data_offsets [", e.begin, ", ", e.end, "] lie outside the ",
                     body_size_, " bytes of data");
        int64_t numel = 0;
        try {
            numel = shape_numel(e.shape);
        } catch (const Error& err) {
            STRATA_FAIL(at, ": ", err.what());
        }
        const uint64_t esize = dtype_size(e.dtype);
        STRATA_CHECK(static_cast<uint64_t>(numel) <= std::numeric_limits<uint64_t>::max() / esize &&
                         static_cast<uint64_t>(numel) * esize == e.end - e.begin,
                     at, " has shape ", shape_str(e.shape), " and dtype ", dtype_, " (", numel, " elements) but ",
                     e.end - e.begin, " bytes of data");
        entries.push_back(std::move(cur_));
    }

    const std::string& where_;
    uint64_t body_size_;
    Metadata* metadata_;
    std::vector<Ctx> stack_;
    bool root_seen_ = false, saw_metadata_ = false;
    std::string key_;  // the current top-level key (or __metadata__ key)
    Field field_ = Field::Other;
    Entry cur_{};
    std::string dtype_;
    bool has_dtype_ = false;
    unsigned fields_seen_ = 0;
    size_t offsets_ = 0;
    std::set<std::string> metadata_keys_;
    std::string pending_;  // an error found inside a shape or data_offsets array
};

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

    // Metadata goes to a local map first, so a header refused half-way leaves *metadata alone.
    Metadata meta;
    HeaderReader reader(where, body_size, metadata ? &meta : nullptr);
    const auto* begin = reinterpret_cast<const char*>(data + 8);
    json::sax_parse(begin, begin + header_len, &reader);
    std::vector<Entry>& entries = reader.entries;

    // Duplicate keys (nlohmann's DOM would keep the last one; safetensors' own reader refuses).
    STRATA_CHECK(!reader.saw_metadata_twice, where, " header has the key '__metadata__' twice");
    {
        std::vector<const Entry*> by_key;
        by_key.reserve(entries.size());
        for (const Entry& e : entries) by_key.push_back(&e);
        std::sort(by_key.begin(), by_key.end(), [](const Entry* a, const Entry* b) { return a->key < b->key; });
        for (size_t i = 1; i < by_key.size(); ++i)
            STRATA_CHECK(by_key[i - 1]->key != by_key[i]->key, where, " header has the key '", by_key[i]->key, "' twice");
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
    if (metadata)
        for (auto& [k, v] : meta) (*metadata)[k] = std::move(v);
    return state;
}

void check_tensor_name(const std::string& name, const std::string& what) {
    STRATA_CHECK(name != "__metadata__", what, " '__metadata__' is reserved: safetensors keeps the file's metadata "
                 "under that key, so no tensor may have that name; rename it");
}

std::string safetensors_header(const StateDict& state, const Metadata& metadata) {
    for (const auto& item : state) check_tensor_name(item.first, "save: tensor name");
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
    return out;
}

std::string safetensors_bytes(const StateDict& state, const Metadata& metadata) {
    std::string out = safetensors_header(state, metadata);
    uint64_t data = 0;
    for (const auto& item : state) data += item.second.nbytes();
    out.reserve(out.size() + data);
    for (const auto& item : state) {
        const Tensor c = item.second.contiguous();
        out.append(static_cast<const char*>(c.raw_data()), c.nbytes());
    }
    return out;
}

}  // namespace strata
