// torchvision's ResNet family with torchvision's child names, so state_dict keys match:
//   conv1 bn1 relu maxpool layer1 layer2 layer3 layer4 avgpool fc
//   layerK.i.{conv1,bn1,relu,conv2,bn2[,conv3,bn3],downsample.{0,1}}
// The model's forward flattens avgpool's output before fc; that step is published through
// child_input_adapter("fc") so IntermediateLayerGetter can reproduce it.
#pragma once
#include <strata/export.h>
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
class STRATA_API BasicBlock : public Module {
public:
    static constexpr int64_t expansion = 1;
    BasicBlock(int64_t inplanes, int64_t planes, int64_t stride, std::shared_ptr<Module> downsample);
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

// 1x1 -> 3x3 (stride here, torchvision's "ResNet v1.5") -> 1x1 (x4 channels), + identity
class STRATA_API Bottleneck : public Module {
public:
    static constexpr int64_t expansion = 4;
    Bottleneck(int64_t inplanes, int64_t planes, int64_t stride, std::shared_ptr<Module> downsample);
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

class STRATA_API ResNet : public Module {
public:
    ResNet(BlockKind block, std::vector<int64_t> layers, int64_t num_classes = 1000);
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

// Built and initialised like torchvision's constructors (see init_like_torchvision), under `seed`.
STRATA_API std::shared_ptr<ResNet> resnet18(int64_t num_classes = 1000, uint64_t seed = 0);
STRATA_API std::shared_ptr<ResNet> resnet34(int64_t num_classes = 1000, uint64_t seed = 0);
STRATA_API std::shared_ptr<ResNet> resnet50(int64_t num_classes = 1000, uint64_t seed = 0);
STRATA_API std::shared_ptr<ResNet> resnet101(int64_t num_classes = 1000, uint64_t seed = 0);
STRATA_API std::shared_ptr<ResNet> resnet152(int64_t num_classes = 1000, uint64_t seed = 0);

// By name, for the CLI: "resnet18", ..., "resnet152"; an unknown name lists the known ones.
STRATA_API std::shared_ptr<ResNet> create(const std::string& name, int64_t num_classes = 1000, uint64_t seed = 0,
                               Init init = Init::Torchvision);
STRATA_API std::vector<std::string> names();

}  // namespace models
}  // namespace strata
