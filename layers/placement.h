// Where a layer's tensors live: the CUDA backend's context, activation layouts (NCHW or NHWC)
// and weight layout, what a model hands back, and the release of a weight file's pages once a
// kernel has packed them.
#pragma once
#include "../core/run_options.h"
#include "../core/tensor.h"

namespace strata {

class CudaContext;

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
