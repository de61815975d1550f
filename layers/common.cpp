#include "common.h"

namespace strata {

std::string Size2::str() const {
    return "(" + std::to_string(h) + ", " + std::to_string(w) + ")";
}

Tensor expect_nchw(const Tensor& x, const char* layer) {
    STRATA_CHECK(x.defined(), layer, " got an undefined tensor");
    STRATA_CHECK(x.dtype() == DType::Float32, layer, " expects float32 input, got ",
                 dtype_name(x.dtype()));
    STRATA_CHECK(x.device() == Device::CPU, layer, " expects a CPU tensor, got ",
                 device_name(x.device()));
    STRATA_CHECK(x.dim() == 4, layer, " expects a 4-D input [N, C, H, W], got shape ",
                 shape_str(x.shape()));
    STRATA_CHECK(x.size(0) > 0, layer, " got an empty batch (shape ", shape_str(x.shape()), ")");
    return x.contiguous();
}

}  // namespace strata
