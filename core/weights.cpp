#include "weights.h"

#include <cstring>

#include "mapped_file.h"

namespace strata {

WeightFormat detect_weight_format(const unsigned char* data, size_t size) {
    if (size >= 4 && std::memcmp(data, "PK\x03\x04", 4) == 0) return WeightFormat::TorchZip;
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

StateDict load(const std::string& path, Metadata* metadata) {
    const auto file = MappedFile::open(path);
    switch (detect_weight_format(file->data(), file->size())) {
        case WeightFormat::Safetensors:
            return read_safetensors(file->data(), file->size(), file, path, metadata);
        case WeightFormat::TorchZip:
        case WeightFormat::TorchLegacy:
            STRATA_FAIL(path, ": this is a PyTorch torch.save file; this build reads safetensors "
                              "only. Convert it with: python3 tools/export_torchvision.py "
                              "--weights ", path, " --out weights.safetensors");
        case WeightFormat::Unknown:
            break;
    }
    STRATA_FAIL(path, ": not a weight file strata knows (expected safetensors, or a torch.save "
                      ".pth to convert)");
}

void save(const StateDict& state, const std::string& path, const Metadata& metadata) {
    write_file_atomically(path, safetensors_bytes(state, metadata));
}

}  // namespace strata
