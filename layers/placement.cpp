#include "placement.h"
#include "../io/mapped_file.h"
#include "../kernels/cuda_context.h"
#include "../kernels/layout.h"
#include "checks.h"

namespace strata {

CudaContext& cuda_context(const RunOptions& options, const char* layer) {
    STRATA_CHECK(options.cuda != nullptr, layer,
                 ": the cuda backend needs a context: RunOptions::cuda = CudaContext::create()");
    return *options.cuda;
}

bool stored_channels_last(const Tensor& x) { return x.dim() == 4 && !x.is_contiguous() && x.is_channels_last(); }

Tensor cuda_in_layout(const Tensor& x, const RunOptions& options, bool channels_last) {
    if (x.dim() != 4 || stored_channels_last(x) == channels_last || (x.is_contiguous() && x.is_channels_last()))
        return x;
    CudaContext& ctx = cuda_context(options, "layout conversion");
    Tensor y = ctx.empty(x.shape(), channels_last);
    cuda::convert_layout(ctx, x.size(0), x.size(1), x.size(2), x.size(3), x.data<float>(), !channels_last,
                         y.data<float>(), channels_last);
    return y;
}

void release_packed_source(const Tensor& weight) {
    if (weight.defined() && weight.device() == Device::CPU && !weight.storage()->owns_memory())
        release_file_pages(weight.raw_data(), weight.nbytes());
}

Tensor as_returned(const Tensor& y, const RunOptions& options) {
    if (options.backend != Backend::Cuda) return y;
    return cuda_in_layout(y, options, false);
}

Tensor cuda_weight_channels_last(const Tensor& weight) {
    const Tensor w = weight.to(Device::CPU).contiguous();
    const int64_t oc = w.size(0), c = w.size(1), kh = w.size(2), kw = w.size(3);
    Tensor out = Tensor::empty(w.shape());
    const float* src = w.data<float>();
    float* dst = out.data<float>();
    for (int64_t o = 0; o < oc; ++o)
        for (int64_t i = 0; i < c; ++i)
            for (int64_t y = 0; y < kh; ++y)
                for (int64_t x = 0; x < kw; ++x)
                    dst[((o * kh + y) * kw + x) * c + i] = src[((o * c + i) * kh + y) * kw + x];
    // The same logical [oc, c, kh, kw] tensor, its memory in channels_last order.
    return Tensor(out.storage(), 0, w.shape(), channels_last_strides(w.shape()), DType::Float32).to(Device::CUDA);
}

}  // namespace strata
