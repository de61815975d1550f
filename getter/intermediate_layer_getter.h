// IntermediateLayerGetter: torchvision's feature extractor (torchvision.models._utils), native.
//
//   auto model = strata::models::resnet18();
//   strata::IntermediateLayerGetter getter(*model, {{"layer1", "feat1"}, {"layer3", "feat2"}});
//   strata::OrderedDict<strata::Tensor> out = getter(x);   // feat1 [1,64,56,56], feat2 [1,256,14,14]
//
// As torchvision: keys must be direct children; the getter keeps the model's children up to and
// including the last requested one (the rest are neither held nor run) and returns the
// requested outputs in model order under their new names. Unlike torchvision: errors name the
// bad key, the valid names and the nearest one; two layers may not share a new name; every
// returned tensor is that layer's true output (no in-place aliasing); and `fc` works, because
// the model's glue between children (ResNet's flatten) is copied in as an input adapter.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include <memory>

#include "../core/module.h"
#include "../layers/sequential.h"

namespace strata {

using ReturnLayers = std::vector<std::pair<std::string, std::string>>;  // child -> new name

class IntermediateLayerGetter : public Module {
public:
    IntermediateLayerGetter(const Module& model, const ReturnLayers& return_layers);

    std::string type_name() const override { return "IntermediateLayerGetter"; }

    // Runs the kept children and returns {new_name: output} in model order.
    OrderedDict<Tensor> operator()(const Tensor& x, const RunOptions& options = {}) const;
    // The getter returns several tensors: forward() refuses, pointing at operator().
    Tensor forward(const Tensor& x, const RunOptions& options = {}) const override;

    const ReturnLayers& return_layers() const { return return_layers_; }

private:
    ReturnLayers return_layers_;
    // The kept children in order, with their adapters and new names; it fuses
    // Conv2d -> BatchNorm2d -> ReLU runs only where the intermediate outputs are not requested.
    std::unique_ptr<Sequential> runner_;
};

}  // namespace strata
