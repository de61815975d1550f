// Memory-layout conversion between NCHW and NHWC (channels_last) for 4-D float32 tensors, for
// the CUDA backend's edges: a model input arriving NCHW when the context keeps NHWC, and
// requested outputs returned NCHW. (The CPU backends are NCHW throughout and need none.)
//   x: [n, c, h, w] stored NCHW or NHWC per x_channels_last; y the same shape per y_channels_last
#pragma once
#include <cstdint>

namespace strata {

class CudaContext;
namespace cuda {
void convert_layout(CudaContext& ctx, int64_t n, int64_t c, int64_t h, int64_t w, const float* x,
                    bool x_channels_last, float* y, bool y_channels_last);
}  // namespace cuda

}  // namespace strata
