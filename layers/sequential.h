// Sequential: runs its children in order, each on the previous one's output, as
// torch.nn.Sequential. It is also the executor every model and getter runs on:
//   - ResNet runs its own children through one (with the flatten before fc as the glue of a
//     step), a getter the children it keeps (with the requested outputs named);
//   - a nested Sequential (ResNet's layer1..layer4) is run in place, its children becoming steps
//     "layer1.0", "layer1.1", ... of the outer run;
//   - on a backend that fuses (backend_fuses), each Conv2d -> BatchNorm2d [-> ReLU] run of steps
//     becomes one FusedConv2d, but only across boundaries whose outputs nobody asked for: a
//     requested conv1 keeps its raw convolution, a requested bn1 its BatchNorm output. A fused
//     group ends at any requested output, so fusion never changes a returned value.
#pragma once
#include <strata/export.h>
#include <memory>
#include <string>
#include <vector>

#include "../core/module.h"
#include "fused_conv2d.h"

namespace strata {

class STRATA_API Sequential : public Module {
public:
    // One step of a run: a module, the model's glue before it (Module::child_input_adapter, or
    // nullptr), and the name its output is returned under ("": not returned).
    struct Step {
        std::string name;
        std::shared_ptr<Module> module;
        InputAdapter adapter;
        std::string out_name;
    };

    Sequential() = default;
    explicit Sequential(std::vector<std::shared_ptr<Module>> modules);
    // A run over modules that belong to another (a model's children, a getter's kept ones): they
    // become this Sequential's children under their step names too (shared, not copied).
    explicit Sequential(std::vector<Step> steps);
    // Appends a child named "0", "1", ... in order.
    void push_back(std::shared_ptr<Module> module);

    std::string type_name() const override { return "Sequential"; }
    Tensor forward(const Tensor& x, const RunOptions& options = {}) const override;
    // Runs every step on the previous one's output; the outputs of steps with an out_name go into
    // `out` (if given) in step order. Returns the last step's output.
    Tensor run(const Tensor& x, const RunOptions& options, OrderedDict<Tensor>* out) const;

private:
    struct Group {
        size_t first = 0, count = 1;         // count 1: a plain step; 2 or 3: conv + bn [+ relu]
        std::unique_ptr<FusedConv2d> fused;  // for count 2 and 3
    };
    void append(Step step);  // registers and flattens the step, then plans the groups again
    void plan();
    std::vector<Step> steps_;  // nested Sequentials flattened
    std::vector<Group> groups_;
};

}  // namespace strata
