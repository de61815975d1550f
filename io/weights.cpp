// The one entry point for weight files: format by content, then the key options.
#include "weights.h"

#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "mapped_file.h"
#include "pth.h"

namespace strata {

WeightFormat detect_weight_format(const unsigned char* data, size_t size) {
    // A zip starts with a local header; an empty one with its end record (plain or zip64).
    if (size >= 4 && (std::memcmp(data, "PK\x03\x04", 4) == 0 || std::memcmp(data, "PK\x05\x06", 4) == 0 ||
                      std::memcmp(data, "PK\x06\x06", 4) == 0))
        return WeightFormat::TorchZip;
    if (size >= 2 && data[0] == 0x80 && data[1] >= 2 && data[1] <= 5) return WeightFormat::TorchLegacy;
    // safetensors: a little-endian length, then JSON that opens with '{' (maybe after spaces).
    if (size >= 9) {
        for (size_t i = 8; i < size && i < 64; ++i) {
            if (data[i] == '{') return WeightFormat::Safetensors;
            if (data[i] != ' ' && data[i] != '\t' && data[i] != '\n' && data[i] != '\r') break;
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
    return load_from_memory(file->data(), file->size(), file, path, options, metadata);
}

StateDict load(const std::string& path, Metadata* metadata) { return load(path, LoadOptions{}, metadata); }

void save(const StateDict& state, const std::string& path, const Metadata& metadata) {
    write_file_atomically(path, safetensors_bytes(state, metadata));
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
