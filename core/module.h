// Module: a node of the model tree, as in torch.nn. Children are named and ordered (insertion
// order is forward order); parameters and buffers are named tensors. state_dict() keys are the
// dotted paths PyTorch uses, so torchvision's files load one-to-one.
//
// forward() is const: after loading, a module is read-only and may be called from many threads
// at once. Everything a call needs (scratch memory, threads) is created per call.
#pragma once
#include <strata/export.h>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "graph.h"
#include "ordered_dict.h"
#include "run_options.h"
#include "tensor.h"

namespace strata {

using StateDict = OrderedDict<Tensor>;

// What Module::output_shape throws for a module that has no shape inference (a user's layer):
// shape inference then says "unknown" from there on instead of failing a call.
class STRATA_API UnknownShape : public Error {
public:
    using Error::Error;
};

// How load_state_dict takes the values in.
//   Copy:  into the module's own memory; the source can be dropped or changed afterwards.
//   Share: a source tensor that is float32, contiguous, 4-byte aligned and on the parameter's
//          device becomes the parameter's memory, without a copy (Storage::share); others are
//          copied. With strata::load's tensors the parameters then live in the mapped weight
//          file: nothing is copied at load, and the OS may drop their pages once the kernels
//          have packed them (release_file_pages) and read them back if they are used again.
//          The module keeps the source's memory alive. Writing into a shared parameter through
//          its data pointer writes into the source's (private, copy-on-write) memory; loading
//          again with Copy first gives each parameter memory of its own.
enum class LoadMode { Copy, Share };

class STRATA_API Module {
public:
    virtual ~Module() = default;
    Module() = default;
    Module(const Module&) = delete;
    Module& operator=(const Module&) = delete;

    // "Conv2d", "BasicBlock", ... as torch prints them.
    virtual std::string type_name() const = 0;
    // The constructor arguments, as in torch's repr: "3, 64, kernel_size=(7, 7), ...".
    virtual std::string extra_repr() const { return ""; }
    virtual Tensor forward(const Tensor& x, const RunOptions& options = {}) const;

    Tensor operator()(const Tensor& x, const RunOptions& options = {}) const {
        return forward(x, options);
    }

    // Shape inference: the shape forward() returns for an input of shape `input`, found without
    // computing anything, and failing with the error forward() would give for that input. Leaf
    // layers implement it; a container's shapes come from its graph (trace).
    virtual Shape output_shape(const Shape& input) const;
    // How far apart two outputs are in the input's pixels, per input pixel step: a strided
    // convolution or pooling returns its stride, most layers 1, and 0 where the output is not a
    // feature map with a fixed stride (adaptive pooling, Linear).
    virtual int64_t spatial_stride() const { return 1; }
    // This module's forward as graph nodes (core/graph.h) under the name `path`, reading node
    // `x`; returns the node holding its output. The default: a module without children is one
    // Call node; a module with children runs them in order, as Sequential does (a model whose
    // forward does more, like ResNet's residual blocks or its flatten, overrides it).
    virtual int trace(Graph& graph, const std::string& path, int x) const;

    // What a model does to a child's input outside child modules (ResNet's flatten before fc).
    // Returns nullptr when the child takes the previous child's output unchanged. The getter
    // copies these so that a truncated model computes what the full model computes.
    using InputAdapter = std::function<Tensor(const Tensor&)>;
    virtual InputAdapter child_input_adapter(const std::string& child_name) const;

    template <typename M>
    std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
        add_child(name, module);
        return module;
    }
    Tensor register_parameter(const std::string& name, Tensor tensor);
    Tensor register_buffer(const std::string& name, Tensor tensor);

    const OrderedDict<std::shared_ptr<Module>>& named_children() const { return children_; }
    std::shared_ptr<Module> child(const std::string& name) const;
    // Every module below and including this one, with dotted paths; this one is "".
    std::vector<std::pair<std::string, std::shared_ptr<const Module>>> named_modules() const;
    std::vector<std::pair<std::string, Tensor>> named_parameters() const;
    std::vector<std::pair<std::string, Tensor>> named_buffers() const;
    int64_t num_parameters() const;

    // Parameters then buffers of each module, depth first, as torch orders them.
    StateDict state_dict() const;
    // Copies (or with LoadMode::Share, adopts) matching tensors (converting float16/bfloat16 to
    // float32). With strict, any missing key, unexpected key or shape mismatch fails, all of them
    // listed in one Error; without strict, only shape mismatches fail. Nothing is changed when
    // it fails.
    void load_state_dict(const StateDict& state, bool strict = true, LoadMode mode = LoadMode::Copy);

    // Moves every parameter and buffer to `device` (a copy there; the old memory is released).
    // The move is in place (Storage::move_to), so the tensor handles layers keep, and any
    // state_dict() taken earlier, see the new memory. Moves weights_version(): folded and packed
    // weights are rebuilt, and CUDA graphs captured before must be captured again. Not
    // concurrent with forward calls, like loading. Returns *this for chaining.
    Module& to(Device device);

    // A multi-line description in torch's print(model) format.
    std::string repr() const;

    // Weights derived from this module's parameters (BatchNorm folded into a convolution, packed
    // or Winograd-transformed copies) are built on first use and tagged with the versions of the
    // modules they come from; they are rebuilt when a version moves. Versions are per module:
    // loading one model never touches another model's derived weights. load_state_dict, to(),
    // fill_deterministic and init_like_torchvision move them; code that writes parameters through
    // their data pointers must call notify_weights_changed() on the module (or any ancestor).
    uint64_t weights_version() const { return weights_version_.load(std::memory_order_acquire); }
    // Gives this module and every module below it a new version, greater than any before.
    void notify_weights_changed();

protected:
    // Runs a child's forward so that its errors carry its path ("layer2" + ".0.conv1: ...").
    Tensor run_child(const std::string& name, const Module& child, const Tensor& x,
                     const RunOptions& options) const;
    void add_child(const std::string& name, std::shared_ptr<Module> module);

private:
    void collect_state(const std::string& prefix, std::vector<std::pair<std::string, Tensor>>& out,
                       bool parameters, bool buffers) const;
    OrderedDict<std::shared_ptr<Module>> children_;
    OrderedDict<Tensor> parameters_;
    OrderedDict<Tensor> buffers_;
    std::atomic<uint64_t> weights_version_{next_weights_version()};
    static uint64_t next_weights_version();
};

// How many times derived weights (folded, packed, transformed) have been built in this process.
// A service can watch it to see that loading one model repacked only that model's layers.
STRATA_API uint64_t derived_weight_builds();

}  // namespace strata
