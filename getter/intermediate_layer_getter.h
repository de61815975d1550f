// IntermediateLayerGetter: torchvision's feature extractor (torchvision.models._utils), native.
//
//   auto model = strata::models::resnet18();
//   strata::IntermediateLayerGetter getter(*model, {{"layer1", "feat1"}, {"layer3", "feat2"}});
//   strata::OrderedDict<strata::Tensor> out = getter(x);   // feat1 [1,64,56,56], feat2 [1,256,14,14]
//
// As torchvision: keys are direct children; the getter keeps the model's children up to and
// including the last requested one (the rest are neither held nor run) and returns the
// requested outputs in model order under their new names. Unlike torchvision: errors name the
// bad key, the valid names and the nearest one; two layers may not share a new name; every
// returned tensor is that layer's true output (no in-place aliasing); and `fc` works, because
// the model's glue between children (ResNet's flatten) is copied in as an input adapter.
//
// Keys may also be nested, as torchvision's create_feature_extractor takes them: any node FX
// names ("layer1.0.conv2", "layer1.0.add", "layer1.0.relu_1", "layer2.0.downsample.1",
// "flatten", "x"; node_names() lists them) or a module inside a child ("layer2.1": its last
// node). Then only the nodes the requests need run, and values are freed after their last use.
//   IntermediateLayerGetter getter(*model, {{"layer1.0.bn1", "bn"}, {"layer2.0.add", "sum"}});
#pragma once
#include <strata/export.h>
#include <string>
#include <utility>
#include <vector>

#include <memory>

#include "../core/module.h"
#include "../layers/sequential.h"
#include "node_plan.h"

namespace strata {

using ReturnLayers = std::vector<std::pair<std::string, std::string>>;  // child -> new name

class STRATA_API IntermediateLayerGetter : public Module {
public:
    IntermediateLayerGetter(const Module& model, const ReturnLayers& return_layers);

    std::string type_name() const override { return "IntermediateLayerGetter"; }

    // Runs the kept children and returns {new_name: output} in model order.
    OrderedDict<Tensor> operator()(const Tensor& x, const RunOptions& options = {}) const;
    // The getter returns several tensors: forward() refuses, pointing at operator().
    Tensor forward(const Tensor& x, const RunOptions& options = {}) const override;

    const ReturnLayers& return_layers() const { return return_layers_; }

    // Name, shape, channels and stride (relative to the input) of each requested output for an
    // input of `input_shape`, by shape inference alone (nothing runs, nothing is allocated);
    // fails as a call with that input would, naming the module. timm's feature_info, per shape.
    std::vector<OutputInfo> output_info(const Shape& input_shape) const;

    // Every node name a request may use, in execution order, as torchvision's
    // get_graph_node_names(model) lists them: "x", "conv1", ..., "layer1.0.add", "flatten", "fc".
    static std::vector<std::string> node_names(const Module& model);

private:
    ReturnLayers return_layers_;
    // The kept children in order, with their adapters and new names; it fuses
    // Conv2d -> BatchNorm2d -> ReLU runs only where the intermediate outputs are not requested.
    std::unique_ptr<Sequential> runner_;  // requests of direct children only
    std::unique_ptr<NodePlan> nodes_;     // nested requests; shape inference for all
};

}  // namespace strata
