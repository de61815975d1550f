#include "checks.h"
#include <cstdio>

namespace strata {

Device backend_device(Backend backend) {
    return backend == Backend::Cuda ? Device::CUDA : Device::CPU;
}

void expect_on_backend_device(const Tensor& x, const char* layer, const RunOptions& options) {
    STRATA_CHECK(x.device() == backend_device(options.backend), layer, ": input is on ",
                 device_name(x.device()), " but the backend is ", backend_name(options.backend),
                 x.device() == Device::CPU ? "; move it first: x.to(Device::CUDA)"
                                           : "; move it first: x.to(Device::CPU)");
}

namespace {
// "596.0 GiB", "3.0 MiB", "512 bytes"
std::string bytes_str(double bytes) {
    char text[64];
    if (bytes >= 1024.0 * 1024 * 1024) std::snprintf(text, sizeof text, "%.1f GiB", bytes / (1024.0 * 1024 * 1024));
    else if (bytes >= 1024.0 * 1024) std::snprintf(text, sizeof text, "%.1f MiB", bytes / (1024.0 * 1024));
    else std::snprintf(text, sizeof text, "%.0f bytes", bytes);
    return text;
}
}  // namespace

void check_activation_size(const Shape& shape, const RunOptions& options, const char* layer, const char* what) {
    if (options.max_activation_bytes <= 0) return;
    // In double: the element count of an absurd shape may not fit int64 once multiplied by 4.
    double bytes = static_cast<double>(dtype_size(DType::Float32));
    for (int64_t d : shape) bytes *= static_cast<double>(d);
    STRATA_CHECK(bytes <= static_cast<double>(options.max_activation_bytes), layer, " ", what, " ",
                 shape_str(shape), " needs ", bytes_str(bytes), ", over the limit of ",
                 bytes_str(static_cast<double>(options.max_activation_bytes)),
                 " per activation (RunOptions::max_activation_bytes); use a smaller batch or input size, "
                 "or raise the limit");
}

Tensor expect_nchw(const Tensor& x, const char* layer, const RunOptions& options) {
    STRATA_CHECK(x.defined(), layer, " got an undefined tensor");
    STRATA_CHECK(x.dtype() == DType::Float32, layer, " expects float32 input, got ",
                 dtype_name(x.dtype()));
    expect_on_backend_device(x, layer, options);
    expect_nchw_shape(x.shape(), layer);
    check_activation_size(x.shape(), options, layer, "input");
    if (x.device() == Device::CPU) return x.contiguous();
    STRATA_CHECK(x.is_contiguous() || x.is_channels_last(), layer,
                 ": a cuda input must be NCHW-contiguous or channels_last, got strides ",
                 shape_str(x.strides()), " for shape ", shape_str(x.shape()));
    return x;
}

void expect_nchw_shape(const Shape& shape, const char* layer) {
    STRATA_CHECK(shape.size() == 4, layer, " expects a 4-D input [N, C, H, W], got shape ", shape_str(shape));
    STRATA_CHECK(shape[0] > 0, layer, " got an empty batch (shape ", shape_str(shape), ")");
}

Tensor expect_nchw(const Tensor& x, const char* layer) { return expect_nchw(x, layer, RunOptions{}); }

void expect_weights_on_backend_device(std::initializer_list<const Tensor*> weights, const char* layer,
                                      const RunOptions& options) {
    const Device want = backend_device(options.backend);
    for (const Tensor* w : weights)
        STRATA_CHECK(!w->defined() || w->device() == want, layer, ": weights are on ", device_name(w->device()),
                     " but the backend is ", backend_name(options.backend), "; move the model first: model->to(",
                     want == Device::CUDA ? "Device::CUDA" : "Device::CPU", ")");
}

}  // namespace strata
