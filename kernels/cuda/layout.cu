// NCHW <-> NHWC conversion through cudnnTransformTensor (used at the CUDA backend's edges).
#include "../layout.h"
#include "context.cuh"

namespace strata {
namespace cuda {

void convert_layout(Context& ctx, int64_t n, int64_t c, int64_t h, int64_t w, const float* x,
                    bool x_channels_last, float* y, bool y_channels_last) {
    Context& im = cuda_detail::use(ctx, "convert_layout");
    const int64_t count = n * c * h * w;
    if (count == 0) return;
    if (x_channels_last == y_channels_last) {
        STRATA_CUDA_CHECK("convert_layout", cudaMemcpyAsync(y, x, count * sizeof(float), cudaMemcpyDeviceToDevice, im.stream));
        return;
    }
    STRATA_CHECK(count <= INT32_MAX, "cuda convert_layout: ", count, " elements exceed cuDNN's int range");
    cudnnTensorDescriptor_t xd = nullptr, yd = nullptr;
    STRATA_CUDNN_CHECK("convert_layout", cudnnCreateTensorDescriptor(&xd));
    // The descriptors go with this scope, whatever happens below.
    std::unique_ptr<cudnnTensorStruct, cudnnStatus_t (*)(cudnnTensorDescriptor_t)> x_guard(xd, cudnnDestroyTensorDescriptor);
    STRATA_CUDNN_CHECK("convert_layout", cudnnCreateTensorDescriptor(&yd));
    std::unique_ptr<cudnnTensorStruct, cudnnStatus_t (*)(cudnnTensorDescriptor_t)> y_guard(yd, cudnnDestroyTensorDescriptor);
    auto format = [](bool cl) { return cl ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW; };
    const int in = static_cast<int>(n), ic = static_cast<int>(c), ih = static_cast<int>(h), iw = static_cast<int>(w);
    STRATA_CUDNN_CHECK("convert_layout", cudnnSetTensor4dDescriptor(xd, format(x_channels_last), CUDNN_DATA_FLOAT, in, ic, ih, iw));
    STRATA_CUDNN_CHECK("convert_layout", cudnnSetTensor4dDescriptor(yd, format(y_channels_last), CUDNN_DATA_FLOAT, in, ic, ih, iw));
    const float one = 1.0f, zero = 0.0f;
    STRATA_CUDNN_CHECK("convert_layout", cudnnTransformTensor(im.cudnn, &one, xd, x, &zero, yd, y));
}

}  // namespace cuda
}  // namespace strata
