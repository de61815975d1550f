// Weight files: strata::load picks the reader by the file's first bytes, never its name.
//   safetensors        -> safetensors.h (mmap, no copy); recognised first, by a header length
//                         that fits the file and a JSON object in it, whatever its first bytes
//   zip (torch.save)   -> pth.h, PyTorch >= 1.6 files such as torchvision's resnet18-f37072fd.pth
//   pickle (legacy)    -> pth.h, torch.save(..., _use_new_zipfile_serialization=False)
// Then the key options below apply, the same for every format.
#pragma once
#include <strata/export.h>
#include <memory>
#include <string>
#include <vector>

#include "safetensors.h"

namespace strata {

enum class WeightFormat { Safetensors, TorchZip, TorchLegacy, Unknown };

STRATA_API WeightFormat detect_weight_format(const unsigned char* data, size_t size);

struct STRATA_API LoadOptions {
    // When every key starts with "module." (a torch.nn.DataParallel or DistributedDataParallel
    // checkpoint), remove it, so the keys match the bare model.
    bool strip_data_parallel = true;
    // When non-empty: keep only the keys that start with this prefix, with the prefix removed
    // (e.g. "backbone.body." to take a ResNet out of a torchvision detection model). Fails when
    // no key has it. Applied instead of strip_data_parallel.
    std::string strip_prefix;
    // .pth zip files: check each entry's CRC-32 (one pass over the file; catches damage).
    bool verify_checksums = true;
};

// `metadata` receives safetensors' __metadata__ (torch.save files have none).
STRATA_API StateDict load(const std::string& path, Metadata* metadata = nullptr);
STRATA_API StateDict load(const std::string& path, const LoadOptions& options, Metadata* metadata = nullptr);
// The same for a file already in memory: `keep_alive` owns `data` (tensors may borrow it),
// `name` is used in errors. This is what the fuzzers call.
STRATA_API StateDict load_from_memory(const unsigned char* data, size_t size,
                           std::shared_ptr<const void> keep_alive, const std::string& name,
                           const LoadOptions& options = {}, Metadata* metadata = nullptr);

// Writes safetensors atomically (temporary file + rename).
STRATA_API void save(const StateDict& state, const std::string& path, const Metadata& metadata = {});

// For error hints: a prefix P such that most of `expected` keys appear in `found` as P + key
// ("module.", "backbone.body."), or "" when there is none.
STRATA_API std::string find_key_prefix(const std::vector<std::string>& found,
                            const std::vector<std::string>& expected);

}  // namespace strata
