// NodePlan: runs the nodes of a model's graph (core/graph.h) that requested nodes need, as
// torchvision's create_feature_extractor does with an FX graph:
//   - only the requested nodes and what they depend on run: a request for layer2.0.conv1 runs
//     no later convolution;
//   - a value is dropped as soon as the last node that reads it has run (FX sets it to None);
//   - where the backend fuses, Conv2d -> BatchNorm2d [-> ReLU] and Conv2d -> BatchNorm2d ->
//     add -> ReLU chains become one FusedConv2d, but only through values nobody asked for and
//     that nothing else reads, so fusion never changes a returned value;
//   - shapes (and strides relative to the input) are inferred without computing anything.
// The plan holds raw pointers into the model's modules: its owner (IntermediateLayerGetter)
// keeps them alive.
#pragma once
#include <strata/export.h>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../core/module.h"
#include "../layers/fused_conv2d.h"

namespace strata {

// What a requested output will be, found by shape inference alone (IntermediateLayerGetter::
// output_info): its name, shape, channels (dim 1) and stride relative to the input (0 for an
// output that is not a feature map with a fixed stride, such as pooled or fc outputs).
struct STRATA_API OutputInfo {
    std::string name;
    Shape shape;
    int64_t channels = 0;
    int64_t stride = 0;
};

class STRATA_API NodePlan {
public:
    // requests: (node index, name to return it under); returned in execution order.
    NodePlan(const Graph& graph, const std::vector<std::pair<int, std::string>>& requests);
    NodePlan(NodePlan&&) = default;

    OrderedDict<Tensor> run(const Tensor& x, const RunOptions& options) const;
    // The shape and stride of every requested output for an input of shape `input`; fails, with
    // the module path, where an input would fail (too small, wrong channels). A module without
    // shape inference fails it too, unless `partial`: then it and what follows are skipped
    // (the check before a call runs that way).
    std::vector<OutputInfo> infer(const Shape& input, bool partial = false) const;

private:
    struct Step {
        int node = 0;                         // the node whose value it produces
        int first = 0;                        // the node it starts at (a fused chain's conv): errors name it
        std::vector<int> reads;               // the nodes it reads (conv input, residual)
        std::shared_ptr<FusedConv2d> fused;   // null: run the node itself
        std::vector<int> drop_after;          // values no later step reads
    };
    std::vector<Step> schedule(bool fuse) const;
    Tensor run_node(const GraphNode& n, const std::vector<Tensor>& values, const RunOptions& options) const;

    std::vector<GraphNode> nodes_;                       // the graph's nodes (pruned ones unused)
    std::vector<std::pair<int, std::string>> requests_;  // in execution order
    std::vector<bool> requested_;                        // per node
    std::vector<Step> fused_, plain_;                    // schedules with and without fusion
};

}  // namespace strata
