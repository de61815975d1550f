// safetensors: 8-byte little-endian header length N, N bytes of JSON
//   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value"}}
// then the raw little-endian data; offsets are relative to the end of the header.
// Reading validates everything before touching data and borrows aligned tensors from the
// caller's buffer (an mmap) without copying. F32, F16, BF16 and I64 are supported.
#pragma once
#include <strata/export.h>
#include <map>
#include <memory>
#include <string>

#include "../core/module.h"

namespace strata {

using Metadata = std::map<std::string, std::string>;

// `name` is used in error messages (the file path). `keep_alive` owns `data`.
STRATA_API StateDict read_safetensors(const unsigned char* data, size_t size,
                           std::shared_ptr<const void> keep_alive, const std::string& name,
                           Metadata* metadata = nullptr);

// Throws Error unless `name` may name a tensor in a safetensors file: "__metadata__" is the
// header's key for the metadata, so a tensor of that name would make a file that every reader
// (strata included) refuses or misreads. `what` starts the message ("--layers new name").
STRATA_API void check_tensor_name(const std::string& name, const std::string& what);

// The bytes of a safetensors file holding `state` (refuses a tensor named "__metadata__") (tensors in state order, header padded to 8).
STRATA_API std::string safetensors_bytes(const StateDict& state, const Metadata& metadata = {});
// Its first part alone: the 8-byte length and the JSON header (padded to 8); the tensors' bytes
// follow it in state order, each contiguous (what save() writes without joining them).
STRATA_API std::string safetensors_header(const StateDict& state, const Metadata& metadata = {});

}  // namespace strata
