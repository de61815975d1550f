// Graph: a model's forward as a list of named nodes, as torch.fx traces it, so that any node can
// be asked for by the name FX gives it (torchvision's get_graph_node_names / create_feature_
// extractor): "x" (the input), "conv1", "layer1.0.conv2", "layer1.0.add", "layer1.0.relu_1"
// (the second call of layer1.0.relu), "layer2.0.downsample.0", "flatten", "fc".
//
// Modules describe themselves through Module::trace: a leaf module adds one Call node, a
// container traces its children (Sequential: in order; a ResNet block: its residual lines).
// Nodes are in execution order; a node's inputs are earlier nodes. Nothing here computes:
// IntermediateLayerGetter runs a graph (getter/node_plan.h) and infers its shapes.
#pragma once
#include <strata/export.h>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace strata {

class Module;

struct STRATA_API GraphNode {
    enum class Op {
        Input,    // the model's input "x"
        Call,     // module->forward(inputs[0])
        Add,      // inputs[0] + inputs[1] (a residual join)
        Flatten,  // torch.flatten(inputs[0], 1)
    };
    Op op = Op::Input;
    std::string name;         // FX's qualified name, unique in the graph
    std::string path;         // the module that runs it ("layer1.0.conv1"; for Add "layer1.0")
    const Module* module = nullptr;  // Op::Call
    std::vector<int> inputs;
};

class STRATA_API Graph {
public:
    Graph();  // holds the input node "x" (index 0)
    int input() const { return 0; }

    // Each returns the new node's index. `path` is the module's dotted path; the node is named
    // after it, with "_1", "_2", ... when a module is called more than once (FX's rule).
    int call(const Module& module, const std::string& path, int x);
    int add(const std::string& path, int a, int b);  // named "<path>.add"
    int flatten(const std::string& path, int x);     // named "<path>.flatten" ("flatten" at the root)

    const std::vector<GraphNode>& nodes() const { return nodes_; }
    // The node named `name`, or -1.
    int find(const std::string& name) const;

private:
    int push(GraphNode node, const std::string& base);
    std::vector<GraphNode> nodes_;
    std::map<std::string, int> by_name_;
    std::map<std::string, int> uses_;  // how often each base name was taken
};

// "a" + "." + "b", or whichever is non-empty.
STRATA_API std::string join_path(const std::string& a, const std::string& b);

}  // namespace strata
