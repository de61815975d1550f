// Small pieces shared by the layers: a (height, width) pair that converts from one int, as
// torch.nn accepts `kernel_size=3` or `kernel_size=(3, 5)`, input and device checks, and the
// CUDA backend's output allocation and layout handling.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>

#include "../core/run_options.h"
#include "../core/tensor.h"

namespace strata {

class CudaContext;

struct Size2 {
    int64_t h, w;
    Size2(int64_t both) : h(both), w(both) {}  // NOLINT: implicit on purpose, like torch's int
    Size2(int64_t h_, int64_t w_) : h(h_), w(w_) {}
    std::string str() const;  // "(3, 3)"
    bool operator==(const Size2& o) const { return h == o.h && w == o.w; }
};

// The device a backend computes on: Cuda on Device::CUDA, Reference and Cpu on Device::CPU.
Device backend_device(Backend backend);

// Checks that x is on the backend's device ("Conv2d: input is on cuda but the backend is cpu").
void expect_on_backend_device(const Tensor& x, const char* layer, const RunOptions& options);

// Checks that x is a defined float32 tensor of shape [N, C, H, W] with N >= 1 on the backend's
// device. On the CPU it returns x contiguous (a non-contiguous input is copied, not refused);
// on CUDA it accepts NCHW-contiguous or channels_last memory and returns x as it is.
Tensor expect_nchw(const Tensor& x, const char* layer, const RunOptions& options);
// The same for the CPU backends (RunOptions{Backend::Cpu}).
Tensor expect_nchw(const Tensor& x, const char* layer);

// Refuses a float32 activation of `shape` (the layer's input or its output, `what`) larger than
// RunOptions::max_activation_bytes, before it is allocated: "Conv2d output [1, 64, 50000, 50000]
// needs 596.0 GiB, over the limit of 16.0 GiB per activation (RunOptions::max_activation_bytes)".
void check_activation_size(const Shape& shape, const RunOptions& options, const char* layer, const char* what);

// Checks that a layer's parameters are where the backend computes ("Conv2d: weights are on cpu
// but the backend is cuda; move the model first: model->to(Device::CUDA)").
void expect_weights_on_backend_device(std::initializer_list<const Tensor*> weights, const char* layer,
                                      const RunOptions& options);

// ---- Backend::Cuda -----------------------------------------------------------------------
// The call's context; fails naming the layer when RunOptions::cuda is missing.
CudaContext& cuda_context(const RunOptions& options, const char* layer);
// Whether a validated CUDA activation is stored NHWC (channels_last and not also contiguous).
bool stored_channels_last(const Tensor& x);
// x stored NCHW (false) or NHWC (true): x itself when it already is, else a converted copy.
Tensor cuda_in_layout(const Tensor& x, const RunOptions& options, bool channels_last);
// After a kernel has packed `weight`: drops its pages from memory if they are clean pages of a
// mapped weight file (parameters loaded with LoadMode::Share); they are read back if needed.
void release_packed_source(const Tensor& weight);
// What a model or getter hands back: on CUDA, 4-D outputs are converted to NCHW-contiguous.
Tensor as_returned(const Tensor& y, const RunOptions& options);
// A conv weight [oc, c, kh, kw] as [oc, kh, kw, c] on the device (what NHWC cuDNN wants).
Tensor cuda_weight_channels_last(const Tensor& weight);

}  // namespace strata
