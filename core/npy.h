// NumPy .npy files (format versions 1, 2 and 3): float32 little-endian, C order. Other dtypes,
// Fortran order and truncated files are refused with the reason and the path.
#pragma once
#include <string>

#include "tensor.h"

namespace strata {

Tensor load_npy(const std::string& path);
Tensor parse_npy(const unsigned char* data, size_t size, const std::string& name);
void save_npy(const Tensor& t, const std::string& path);

}  // namespace strata
