// The one entry point for weight files: format by content, then the key options.
#include "weights.h"

#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "mapped_file.h"
#include "pth.h"

namespace strata {

namespace {

bool json_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// The strongest evidence of safetensors: a little-endian length N that fits the file, and the N
// bytes after it hold a JSON object: '{' first and '}' last, whitespace aside.
bool safetensors_header_fits(const unsigned char* data, size_t size) {
    if (size < 10) return false;
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
    if (n < 2 || n > size - 8) return false;
    size_t first = 8, last = 8 + static_cast<size_t>(n) - 1;
    while (first < last && json_space(data[first])) ++first;
    while (last > first && json_space(data[last])) --last;
    return data[first] == '{' && data[last] == '}';
}

}  // namespace

WeightFormat detect_weight_format(const unsigned char* data, size_t size) {
    // First the evidence no other format can show: a safetensors header length whose bytes happen
    // to read "\x80\x02" (640, 896, 1152, 1408, ... are pickle protocol markers) or "PK\x03\x04"
    // (67,324,752) must not make a valid safetensors file a broken pickle or zip. A torch.save
    // file never passes this test: its first 8 bytes, read as a length, exceed the file (a zip
    // local header's flags and a pickle's magic put bits in the top bytes).
    if (safetensors_header_fits(data, size)) return WeightFormat::Safetensors;
    // A zip starts with a local header; an empty one with its end record (plain or zip64).
    if (size >= 4 && (std::memcmp(data, "PK\x03\x04", 4) == 0 || std::memcmp(data, "PK\x05\x06", 4) == 0 ||
                      std::memcmp(data, "PK\x06\x06", 4) == 0))
        return WeightFormat::TorchZip;
    if (size >= 2 && data[0] == 0x80 && data[1] >= 2 && data[1] <= 5) return WeightFormat::TorchLegacy;
    // A damaged safetensors file: a little-endian length, then JSON that opens with '{' (maybe
    // after spaces). Read as safetensors so that its error says what is wrong with the header.
    if (size >= 9) {
        for (size_t i = 8; i < size && i < 64; ++i) {
            if (data[i] == '{') return WeightFormat::Safetensors;
            if (!json_space(data[i])) break;
        }
    }
    return WeightFormat::Unknown;
}

namespace {

StateDict apply_key_options(StateDict state, const LoadOptions& options, const std::string& name) {
    if (!options.strip_prefix.empty()) {
        const std::string& prefix = options.strip_prefix;
        StateDict out;
        for (const auto& [key, t] : state)
            if (key.compare(0, prefix.size(), prefix) == 0) out.insert(key.substr(prefix.size()), t);
        STRATA_CHECK(!out.empty(), name, ": no key starts with the prefix '", prefix, "' (first key: '",
                     state.empty() ? std::string() : state[0].first, "')");
        return out;
    }
    if (options.strip_data_parallel && !state.empty()) {
        const std::string prefix = "module.";
        for (const auto& item : state)
            if (item.first.compare(0, prefix.size(), prefix) != 0) return state;
        StateDict out;
        for (const auto& [key, t] : state) out.insert(key.substr(prefix.size()), t);
        return out;
    }
    return state;
}

}  // namespace

StateDict load_from_memory(const unsigned char* data, size_t size,
                           std::shared_ptr<const void> keep_alive, const std::string& name,
                           const LoadOptions& options, Metadata* metadata) {
    StateDict state;
    switch (detect_weight_format(data, size)) {
        case WeightFormat::Safetensors:
            state = read_safetensors(data, size, std::move(keep_alive), name, metadata);
            break;
        case WeightFormat::TorchZip:
        case WeightFormat::TorchLegacy: {
            PthOptions pth;
            pth.verify_checksums = options.verify_checksums;
            state = read_pth(data, size, std::move(keep_alive), name, pth);
            break;
        }
        case WeightFormat::Unknown:
            STRATA_FAIL(name, ": not a weight file strata knows (expected safetensors, or a "
                              "torch.save .pth file: a zip archive or a legacy pickle)");
    }
    return apply_key_options(std::move(state), options, name);
}

StateDict load(const std::string& path, const LoadOptions& options, Metadata* metadata) {
    const auto file = MappedFile::open(path);
    StateDict state = load_from_memory(file->data(), file->size(), file, path, options, metadata);
    // Tensors that are views of the map check the file before their bytes are read.
    const unsigned char* begin = file->data();
    for (auto& item : state) {
        Storage& s = *item.second.storage();
        const auto* p = static_cast<const unsigned char*>(s.data());
        if (!s.owns_memory() && begin && p >= begin && p < begin + file->size()) s.set_source(file);
    }
    return state;
}

StateDict load(const std::string& path, Metadata* metadata) { return load(path, LoadOptions{}, metadata); }

void save(const StateDict& state, const std::string& path, const Metadata& metadata) {
    // The header, then each tensor's bytes from its own memory: no second copy of the data.
    const std::string header = safetensors_header(state, metadata);
    std::vector<Tensor> contiguous;
    contiguous.reserve(state.size());
    std::vector<std::pair<const void*, size_t>> pieces{{header.data(), header.size()}};
    for (const auto& item : state) {
        contiguous.push_back(item.second.contiguous());
        pieces.emplace_back(contiguous.back().raw_data(), contiguous.back().nbytes());
    }
    write_file_atomically(path, pieces);
}

std::string find_key_prefix(const std::vector<std::string>& found,
                            const std::vector<std::string>& expected) {
    // Count, for each candidate prefix, how many found keys are prefix + an expected key.
    // Candidates are cut at a '.', so "backbone.body.layer1.0.conv1.weight" offers
    // "backbone." and "backbone.body.".
    const std::unordered_set<std::string> wanted(expected.begin(), expected.end());
    std::unordered_map<std::string, size_t> votes;
    for (const std::string& key : found) {
        for (size_t dot = key.find('.'); dot != std::string::npos; dot = key.find('.', dot + 1))
            if (wanted.count(key.substr(dot + 1))) ++votes[key.substr(0, dot + 1)];
    }
    std::string best;
    size_t best_votes = 0;
    for (const auto& [prefix, n] : votes)
        if (n > best_votes || (n == best_votes && prefix < best)) best = prefix, best_votes = n;
    return best_votes * 2 > expected.size() ? best : "";
}

}  // namespace strata
