// What every layer checks before it computes: that the input is a float32 [N, C, H, W] tensor on
// the backend's device, that its weights are there too, and that no activation exceeds
// RunOptions::max_activation_bytes. Errors name the layer and say how to fix the call.
#pragma once
#include <initializer_list>

#include "../core/run_options.h"
#include "../core/tensor.h"

namespace strata {

// The device a backend computes on: Cuda on Device::CUDA, Reference and Cpu on Device::CPU.
Device backend_device(Backend backend);

// Checks that x is on the backend's device ("Conv2d: input is on cuda but the backend is cpu").
void expect_on_backend_device(const Tensor& x, const char* layer, const RunOptions& options);

// Checks that x is a defined float32 tensor of shape [N, C, H, W] with N >= 1 on the backend's
// device. On the CPU it returns x contiguous (a non-contiguous input is copied, not refused);
// on CUDA it accepts NCHW-contiguous or channels_last memory and returns x as it is.
Tensor expect_nchw(const Tensor& x, const char* layer, const RunOptions& options);
// The shape part of it, for shape inference: 4-D, N >= 1.
void expect_nchw_shape(const Shape& shape, const char* layer);
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

}  // namespace strata
