// torch.save files (.pth/.pt) without Python or libtorch. Two container formats:
//   zip (PyTorch >= 1.6): entries <prefix>/data.pkl (the pickled object), <prefix>/data/<key>
//     (one per storage, raw little-endian bytes, 64-byte aligned), <prefix>/version, and in newer
//     versions <prefix>/byteorder and <prefix>/.data/serialization_id;
//   legacy (torch.save(..., _use_new_zipfile_serialization=False) and PyTorch < 1.6): five pickles
//     in a row — magic number, protocol version 1001, system info, the object, the list of storage
//     keys — then each storage as an int64 element count and its raw bytes.
// The object is unpickled by the data-only machine in pickle.h with a whitelist of the globals
// a state_dict uses; tensors are views of the storages, which stay in the mapped file
// (no copy) when they are aligned. The state_dict may be the object itself or sit under
// 'state_dict', 'model_state_dict' or 'model' in a checkpoint dict.
#pragma once
#include <memory>
#include <string>

#include "../core/module.h"

namespace strata {

struct PthOptions {
    // Check the CRC-32 of each zip entry that is read (one pass over the data).
    bool verify_checksums = true;
};

// Reads the torch.save file in data[0, size) (either format, told apart by content).
// `keep_alive` owns `data` (tensors may borrow it); `name` (the path) starts every error.
StateDict read_pth(const unsigned char* data, size_t size, std::shared_ptr<const void> keep_alive,
                   const std::string& name, const PthOptions& options = {});

}  // namespace strata
