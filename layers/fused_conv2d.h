// Inference-time fusion for the CPU backend.
//
// FusedConv2d is Conv2d with a following BatchNorm2d folded into its weights and bias
//   scale[o] = gamma[o] / sqrt(var[o] + eps),  W'[o] = W[o] * scale[o],
//   b'[o] = beta[o] + (b[o] - mean[o]) * scale[o]
// and an epilogue (+ residual, ReLU) applied as the output is written. Weights are packed once.
//
// SequenceRunner runs a list of children (a model's, or a getter's kept ones) and fuses each
// Conv2d -> BatchNorm2d [-> ReLU] run into one FusedConv2d, but only across boundaries whose
// outputs nobody asked for: a requested conv1 keeps its raw convolution, a requested bn1 its
// BatchNorm output. Fused weights are rebuilt whenever weights_epoch() moves.
#pragma once
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../core/epoch_cache.h"
#include "../core/module.h"
#include "batch_norm2d.h"
#include "conv2d.h"
#include "fused_conv2d_cuda.h"

namespace strata {

// W'[o] = float(W[o] * scale[o]),  b'[o] = beta[o] + (b[o] - mean[o]) * scale[o],
// scale[o] = gamma[o] / sqrt(var[o] + eps) (in double); with bn == nullptr, W' = W and b' = b
// (or 0). Reads host copies of the parameters wherever they live; returns CPU tensors weight
// [oc, c/groups, kh, kw] (undefined unless with_weight) and bias [oc], and the scale (empty
// without bn). CudaFusedConv2d uploads W'; FusedConv2d hands the scale to the packing
// functions instead, so no folded copy of the weights is ever made on the CPU.
struct FoldedConv2d {
    Tensor weight, bias;
    std::vector<double> scale;
};
FoldedConv2d fold_batch_norm(const Conv2d& conv, const BatchNorm2d* bn, bool with_weight = true);

class FusedConv2d {
public:
    FusedConv2d(const Conv2d& conv, const BatchNorm2d* bn, bool relu);
    FusedConv2d(FusedConv2d&& other) noexcept;  // (the mutex is not moved; a fresh one is made)
    // x: [N, C, H, W]; residual (or nullptr): the output's shape, added before the ReLU.
    Tensor forward(const Tensor& x, const Tensor* residual, const RunOptions& options) const;

private:
    const double* row_scale() const { return scale_.empty() ? nullptr : scale_.data(); }
    const Conv2d* conv_;  // for input checks and geometry
    std::vector<double> scale_;  // BatchNorm's per-channel scale, applied as weights are packed
    Tensor bias_;                // folded
    bool relu_;
    // Packed forms of the folded weights, made on first use: the direct kernel's, and Winograd's
    // for m = 2 and 4 (which one runs depends on the input size, see cpu::winograd_tile_for, and
    // on RunOptions::packing). They are packed from the layer's own weights with scale_ applied,
    // and those weights are then released (release_packed_source).
    mutable std::mutex pack_mutex_;
    mutable std::shared_ptr<const cpu::PackedConv2dWeight> direct_;
    mutable std::shared_ptr<const cpu::WinogradConv2dWeight> winograd_[2];
};

class SequenceRunner {
public:
    struct Step {
        std::string name;
        std::shared_ptr<Module> module;
        Module::InputAdapter adapter;  // the model's glue before this child, or nullptr
        std::string out_name;          // "" when this step's output is not returned
    };
    explicit SequenceRunner(std::vector<Step> steps);

    // Runs every step on the previous one's output; requested outputs go into `out` (if given)
    // in step order. Returns the last step's output.
    Tensor run(const Tensor& x, const RunOptions& options, OrderedDict<Tensor>* out) const;

    const std::vector<Step>& steps() const { return steps_; }

private:
    struct Group {
        size_t first = 0, count = 1;  // count 1: a plain child; 2 or 3: conv + bn [+ relu]
        std::unique_ptr<EpochCache<FusedConv2d>> fused;
        std::unique_ptr<EpochCache<CudaFusedConv2d>> fused_cuda;  // the same run on Backend::Cuda
    };
    // Backend::Cuda's form of a fused group (fused_conv2d_cuda.cpp).
    Tensor run_fused_cuda(const Group& g, const Tensor& x, const RunOptions& options, OrderedDict<Tensor>* out) const;
    std::vector<Step> steps_;
    std::vector<Group> groups_;
};

}  // namespace strata
