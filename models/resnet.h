// torchvision's ResNet family with torchvision's child names, so state_dict keys match:
//   conv1 bn1 relu maxpool layer1 layer2 layer3 layer4 avgpool fc
//   layerK.i.{conv1,bn1,relu,conv2,bn2[,conv3,bn3],downsample.{0,1}}
// Also ResNeXt and Wide ResNet (groups, width_per_group) and torchvision's
// replace_stride_with_dilation, built exactly as torchvision's ResNet._make_layer builds them.
// The model's forward flattens avgpool's output before fc; that step is published through
// child_input_adapter("fc") so IntermediateLayerGetter can reproduce it.
#pragma once
#include <strata/export.h>
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../core/module.h"
#include "../layers/batch_norm2d.h"
#include "../layers/conv2d.h"
#include "../layers/fused_conv2d.h"
#include "../layers/sequential.h"

namespace strata {
namespace models {

// conv3x3 -> bn -> relu -> conv3x3 -> bn, + identity (or downsample(x)), -> relu
// As torchvision: groups must be 1, base_width 64 and dilation 1 (anything else throws).
class STRATA_API BasicBlock : public Module {
public:
    static constexpr int64_t expansion = 1;
    BasicBlock(int64_t inplanes, int64_t planes, int64_t stride, std::shared_ptr<Module> downsample,
               int64_t groups = 1, int64_t base_width = 64, int64_t dilation = 1);
    std::string type_name() const override { return "BasicBlock"; }
    Tensor forward(const Tensor& x, const RunOptions& options = {}) const override;
    int trace(Graph& graph, const std::string& path, int x) const override;

private:
    std::shared_ptr<Conv2d> conv1_, conv2_;
    std::shared_ptr<BatchNorm2d> bn1_, bn2_;
    std::shared_ptr<Module> relu_, downsample_;
    // The fused form, where the backend fuses: conv1+bn1+relu, conv2+bn2+residual+relu.
    FusedConv2d fused1_, fused2_;
};

// 1x1 -> 3x3 (stride here, torchvision's "ResNet v1.5") -> 1x1 (x4 channels), + identity.
// The inner width is int(planes * (base_width / 64.)) * groups; the 3x3 convolution has
// `groups` groups, dilation `dilation` and padding `dilation` (torchvision's conv3x3).
class STRATA_API Bottleneck : public Module {
public:
    static constexpr int64_t expansion = 4;
    Bottleneck(int64_t inplanes, int64_t planes, int64_t stride, std::shared_ptr<Module> downsample,
               int64_t groups = 1, int64_t base_width = 64, int64_t dilation = 1);
    std::string type_name() const override { return "Bottleneck"; }
    Tensor forward(const Tensor& x, const RunOptions& options = {}) const override;
    int trace(Graph& graph, const std::string& path, int x) const override;

private:
    std::shared_ptr<Conv2d> conv1_, conv2_, conv3_;
    std::shared_ptr<BatchNorm2d> bn1_, bn2_, bn3_;
    std::shared_ptr<Module> relu_, downsample_;
    // The fused form: conv1+bn1+relu, conv2+bn2+relu, conv3+bn3+residual+relu.
    FusedConv2d fused1_, fused2_, fused3_;
};

enum class BlockKind { Basic, Bottleneck };

// torchvision's ResNet(block, layers, num_classes, zero_init_residual=False, groups,
// width_per_group, replace_stride_with_dilation). replace_stride_with_dilation[i] turns stage
// i + 2's stride 2 into dilation (layer2, layer3, layer4): its first block keeps the previous
// dilation, the later blocks use the new one, as torchvision's _make_layer does.
class STRATA_API ResNet : public Module {
public:
    ResNet(BlockKind block, std::vector<int64_t> layers, int64_t num_classes = 1000, int64_t groups = 1,
           int64_t width_per_group = 64, std::array<bool, 3> replace_stride_with_dilation = {false, false, false});
    std::string type_name() const override { return "ResNet"; }
    Tensor forward(const Tensor& x, const RunOptions& options = {}) const override;
    int trace(Graph& graph, const std::string& path, int x) const override;
    InputAdapter child_input_adapter(const std::string& child_name) const override;

private:
    std::unique_ptr<Sequential> body_;  // runs the children in order (the stem conv+bn+relu fused)
};

// How a model's parameters start.
//   Torchvision: initialised like torchvision's constructors (init_like_torchvision), under a
//                seed: a usable untrained model (about 0.3 s for ResNet-18).
//   None:        left as the layers make them (zeros, BatchNorm's ones): for a model whose
//                every parameter is loaded next (a strict load_state_dict), skipping that work.
enum class Init { Torchvision, None };

// What models::create builds, beyond the name. groups and width_per_group are 0 for the named
// model's own values (1 and 64; resnext50_32x4d: 32 and 4; wide_resnet50_2: 1 and 128); a
// different non-zero value is accepted for resnet* (torchvision's resnet50(groups=...,
// width_per_group=...)) and refused for the names that fix it, as torchvision refuses it.
struct ResNetOptions {
    int64_t num_classes = 1000;
    int64_t groups = 0;
    int64_t width_per_group = 0;
    // DeepLabV3 / FCN use {false, true, true} (outputs at 1/8 of the input); some detection
    // models {false, false, true}. Needs a Bottleneck model: BasicBlock refuses dilation.
    std::array<bool, 3> replace_stride_with_dilation{false, false, false};
    uint64_t seed = 0;
    Init init = Init::Torchvision;
};

// Built and initialised like torchvision's constructors (see init_like_torchvision), under `seed`.
STRATA_API std::shared_ptr<ResNet> resnet18(int64_t num_classes = 1000, uint64_t seed = 0);
STRATA_API std::shared_ptr<ResNet> resnet34(int64_t num_classes = 1000, uint64_t seed = 0);
STRATA_API std::shared_ptr<ResNet> resnet50(int64_t num_classes = 1000, uint64_t seed = 0);
STRATA_API std::shared_ptr<ResNet> resnet101(int64_t num_classes = 1000, uint64_t seed = 0);
STRATA_API std::shared_ptr<ResNet> resnet152(int64_t num_classes = 1000, uint64_t seed = 0);

STRATA_API std::shared_ptr<ResNet> resnext50_32x4d(int64_t num_classes = 1000, uint64_t seed = 0);
STRATA_API std::shared_ptr<ResNet> resnext101_32x8d(int64_t num_classes = 1000, uint64_t seed = 0);
STRATA_API std::shared_ptr<ResNet> resnext101_64x4d(int64_t num_classes = 1000, uint64_t seed = 0);
STRATA_API std::shared_ptr<ResNet> wide_resnet50_2(int64_t num_classes = 1000, uint64_t seed = 0);
STRATA_API std::shared_ptr<ResNet> wide_resnet101_2(int64_t num_classes = 1000, uint64_t seed = 0);

// By torchvision's name (see names()); an unknown name lists the known ones.
STRATA_API std::shared_ptr<ResNet> create(const std::string& name, const ResNetOptions& options);
STRATA_API std::shared_ptr<ResNet> create(const std::string& name, int64_t num_classes = 1000, uint64_t seed = 0,
                                          Init init = Init::Torchvision);
// resnet18, resnet34, resnet50, resnet101, resnet152, resnext50_32x4d, resnext101_32x8d,
// resnext101_64x4d, wide_resnet50_2, wide_resnet101_2.
STRATA_API std::vector<std::string> names();

}  // namespace models
}  // namespace strata
