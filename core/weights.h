// Weight files: strata::load picks the reader by the file's first bytes, never its name.
//   safetensors        -> read (mmap, no copy)
//   zip (torch.save)   -> refused for now with how to convert (the .pth reader is issue 3)
//   pickle (legacy)    -> refused likewise
#pragma once
#include <string>

#include "safetensors.h"

namespace strata {

enum class WeightFormat { Safetensors, TorchZip, TorchLegacy, Unknown };

WeightFormat detect_weight_format(const unsigned char* data, size_t size);

StateDict load(const std::string& path, Metadata* metadata = nullptr);
// Writes safetensors atomically (temporary file + rename).
void save(const StateDict& state, const std::string& path, const Metadata& metadata = {});

}  // namespace strata
