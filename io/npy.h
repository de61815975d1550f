// NumPy .npy files (format versions 1, 2 and 3): float32 little-endian, C order. Other dtypes,
// Fortran order and truncated files are refused with the reason and the path.
#pragma once
#include <strata/export.h>
#include <string>

#include "../core/tensor.h"

namespace strata {

STRATA_API Tensor load_npy(const std::string& path);
STRATA_API Tensor parse_npy(const unsigned char* data, size_t size, const std::string& name);
STRATA_API void save_npy(const Tensor& t, const std::string& path);
// The bytes of a version 1.0 .npy file before its data: magic, version, header length and the
// header dict, padded so the data starts at a multiple of 64. `descr` is e.g. "<f4"; `shape` is
// Python's tuple syntax, "(2, 3)" or "(5,)". (Tests use it to write files save_npy would refuse.)
STRATA_API std::string npy_preamble(const std::string& descr, bool fortran_order, const std::string& shape);

}  // namespace strata
