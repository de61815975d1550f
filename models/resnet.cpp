// ResNet as torchvision builds it (torchvision/models/resnet.py), module for module.
#include "resnet.h"

#include "init.h"
#include "../layers/adaptive_avg_pool2d.h"
#include "../layers/flatten.h"
#include "../layers/linear.h"
#include "../layers/max_pool2d.h"
#include "../layers/placement.h"
#include "../layers/relu.h"

namespace strata {
namespace models {

namespace {

std::shared_ptr<Conv2d> conv(int64_t in, int64_t out, int64_t kernel, int64_t stride) {
    return std::make_shared<Conv2d>(Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2).bias(false));
}

// A fused convolution's errors carry the convolution's name, as the unfused child's would.
Tensor run_fused(const char* name, const FusedConv2d& f, const Tensor& x, const Tensor* residual,
                 const RunOptions& o) {
    try {
        return f.forward(x, residual, o);
    } catch (...) {
        rethrow_within(name);
    }
}

}  // namespace

BasicBlock::BasicBlock(int64_t inplanes, int64_t planes, int64_t stride, std::shared_ptr<Module> downsample)
    : conv1_(conv(inplanes, planes, 3, stride)),
      conv2_(conv(planes, planes, 3, 1)),
      bn1_(std::make_shared<BatchNorm2d>(planes)),
      bn2_(std::make_shared<BatchNorm2d>(planes)),
      relu_(std::make_shared<ReLU>(true)),
      fused1_(conv1_, bn1_, true),
      fused2_(conv2_, bn2_, true) {
    // Registered in torchvision's order: state_dict keys and their order match its files.
    register_module("conv1", conv1_);
    register_module("bn1", bn1_);
    register_module("relu", relu_);
    register_module("conv2", conv2_);
    register_module("bn2", bn2_);
    if (downsample) downsample_ = register_module("downsample", std::move(downsample));
}

Tensor BasicBlock::forward(const Tensor& x, const RunOptions& o) const {
    if (backend_fuses(o.backend)) {  // the lines below as two fused convolutions
        const Tensor out = run_fused("conv1", fused1_, x, nullptr, o);
        const Tensor identity = downsample_ ? run_child("downsample", *downsample_, x, o) : x;
        return run_fused("conv2", fused2_, out, &identity, o);
    }
    Tensor out = run_child("conv1", *conv1_, x, o);
    out = run_child("bn1", *bn1_, out, o);
    out = run_child("relu", *relu_, out, o);
    out = run_child("conv2", *conv2_, out, o);
    out = run_child("bn2", *bn2_, out, o);
    const Tensor identity = downsample_ ? run_child("downsample", *downsample_, x, o) : x;
    return add_relu(out, identity, o);
}

// The same lines as graph nodes, named as torch.fx names them: the second use of relu is relu_1.
int BasicBlock::trace(Graph& g, const std::string& path, int x) const {
    int out = conv1_->trace(g, join_path(path, "conv1"), x);
    out = bn1_->trace(g, join_path(path, "bn1"), out);
    out = relu_->trace(g, join_path(path, "relu"), out);
    out = conv2_->trace(g, join_path(path, "conv2"), out);
    out = bn2_->trace(g, join_path(path, "bn2"), out);
    const int identity = downsample_ ? downsample_->trace(g, join_path(path, "downsample"), x) : x;
    out = g.add(path, out, identity);
    return relu_->trace(g, join_path(path, "relu"), out);
}

Bottleneck::Bottleneck(int64_t inplanes, int64_t planes, int64_t stride, std::shared_ptr<Module> downsample)
    : conv1_(conv(inplanes, planes, 1, 1)),
      conv2_(conv(planes, planes, 3, stride)),
      conv3_(conv(planes, planes * expansion, 1, 1)),
      bn1_(std::make_shared<BatchNorm2d>(planes)),
      bn2_(std::make_shared<BatchNorm2d>(planes)),
      bn3_(std::make_shared<BatchNorm2d>(planes * expansion)),
      relu_(std::make_shared<ReLU>(true)),
      fused1_(conv1_, bn1_, true),
      fused2_(conv2_, bn2_, true),
      fused3_(conv3_, bn3_, true) {
    register_module("conv1", conv1_);  // in torchvision's order, as above
    register_module("bn1", bn1_);
    register_module("conv2", conv2_);
    register_module("bn2", bn2_);
    register_module("conv3", conv3_);
    register_module("bn3", bn3_);
    register_module("relu", relu_);
    if (downsample) downsample_ = register_module("downsample", std::move(downsample));
}

Tensor Bottleneck::forward(const Tensor& x, const RunOptions& o) const {
    if (backend_fuses(o.backend)) {  // the lines below as three fused convolutions
        Tensor out = run_fused("conv1", fused1_, x, nullptr, o);
        out = run_fused("conv2", fused2_, out, nullptr, o);
        const Tensor identity = downsample_ ? run_child("downsample", *downsample_, x, o) : x;
        return run_fused("conv3", fused3_, out, &identity, o);
    }
    Tensor out = run_child("conv1", *conv1_, x, o);
    out = run_child("bn1", *bn1_, out, o);
    out = run_child("relu", *relu_, out, o);
    out = run_child("conv2", *conv2_, out, o);
    out = run_child("bn2", *bn2_, out, o);
    out = run_child("relu", *relu_, out, o);
    out = run_child("conv3", *conv3_, out, o);
    out = run_child("bn3", *bn3_, out, o);
    const Tensor identity = downsample_ ? run_child("downsample", *downsample_, x, o) : x;
    return add_relu(out, identity, o);
}

int Bottleneck::trace(Graph& g, const std::string& path, int x) const {
    int out = conv1_->trace(g, join_path(path, "conv1"), x);
    out = bn1_->trace(g, join_path(path, "bn1"), out);
    out = relu_->trace(g, join_path(path, "relu"), out);
    out = conv2_->trace(g, join_path(path, "conv2"), out);
    out = bn2_->trace(g, join_path(path, "bn2"), out);
    out = relu_->trace(g, join_path(path, "relu"), out);
    out = conv3_->trace(g, join_path(path, "conv3"), out);
    out = bn3_->trace(g, join_path(path, "bn3"), out);
    const int identity = downsample_ ? downsample_->trace(g, join_path(path, "downsample"), x) : x;
    out = g.add(path, out, identity);
    return relu_->trace(g, join_path(path, "relu"), out);
}

namespace {

// torchvision's ResNet._make_layer: the first block may change stride and width.
std::shared_ptr<Sequential> make_layer(BlockKind kind, int64_t& inplanes, int64_t planes,
                                       int64_t blocks, int64_t stride) {
    const int64_t expansion = kind == BlockKind::Basic ? BasicBlock::expansion : Bottleneck::expansion;
    std::shared_ptr<Module> downsample;
    if (stride != 1 || inplanes != planes * expansion) {
        downsample = std::make_shared<Sequential>(std::vector<std::shared_ptr<Module>>{
            conv(inplanes, planes * expansion, 1, stride), std::make_shared<BatchNorm2d>(planes * expansion)});
    }
    auto layer = std::make_shared<Sequential>();
    for (int64_t i = 0; i < blocks; ++i) {
        const int64_t s = i == 0 ? stride : 1;
        if (kind == BlockKind::Basic)
            layer->push_back(std::make_shared<BasicBlock>(inplanes, planes, s, i == 0 ? downsample : nullptr));
        else
            layer->push_back(std::make_shared<Bottleneck>(inplanes, planes, s, i == 0 ? downsample : nullptr));
        inplanes = planes * expansion;
    }
    return layer;
}

}  // namespace

ResNet::ResNet(BlockKind block, std::vector<int64_t> layers, int64_t num_classes) {
    STRATA_CHECK(layers.size() == 4, "ResNet needs 4 stage depths, got ", layers.size());
    STRATA_CHECK(num_classes > 0, "ResNet: num_classes must be positive, got ", num_classes);
    int64_t inplanes = 64;
    register_module("conv1", conv(3, 64, 7, 2));
    register_module("bn1", std::make_shared<BatchNorm2d>(64));
    register_module("relu", std::make_shared<ReLU>(true));
    register_module("maxpool", std::make_shared<MaxPool2d>(3, 2, 1));
    register_module("layer1", make_layer(block, inplanes, 64, layers[0], 1));
    register_module("layer2", make_layer(block, inplanes, 128, layers[1], 2));
    register_module("layer3", make_layer(block, inplanes, 256, layers[2], 2));
    register_module("layer4", make_layer(block, inplanes, 512, layers[3], 2));
    register_module("avgpool", std::make_shared<AdaptiveAvgPool2d>(Size2(1, 1)));
    register_module("fc", std::make_shared<Linear>(inplanes, num_classes));
    std::vector<Sequential::Step> steps;
    for (const auto& [name, child] : named_children())
        steps.push_back({name, child, child_input_adapter(name), ""});
    body_ = std::make_unique<Sequential>(std::move(steps));
}

Module::InputAdapter ResNet::child_input_adapter(const std::string& child_name) const {
    // torchvision: x = self.avgpool(x); x = torch.flatten(x, 1); x = self.fc(x)
    if (child_name == "fc") return [](const Tensor& x) { return flatten(x, 1); };
    return nullptr;
}

int ResNet::trace(Graph& g, const std::string& path, int x) const {
    for (const auto& [name, child] : named_children()) {
        if (name == "fc") x = g.flatten(path, x);  // torch.flatten(x, 1), as in child_input_adapter
        x = child->trace(g, join_path(path, name), x);
    }
    return x;
}

Tensor ResNet::forward(const Tensor& x, const RunOptions& options) const {
    return as_returned(body_->run(x, options, nullptr), options);
}

namespace {
std::shared_ptr<ResNet> build(BlockKind kind, std::vector<int64_t> layers, int64_t num_classes,
                              uint64_t seed, Init init = Init::Torchvision) {
    auto model = std::make_shared<ResNet>(kind, std::move(layers), num_classes);
    if (init == Init::Torchvision) init_like_torchvision(*model, seed);
    return model;
}
}  // namespace

std::shared_ptr<ResNet> resnet18(int64_t nc, uint64_t seed) { return create("resnet18", nc, seed); }
std::shared_ptr<ResNet> resnet34(int64_t nc, uint64_t seed) { return create("resnet34", nc, seed); }
std::shared_ptr<ResNet> resnet50(int64_t nc, uint64_t seed) { return create("resnet50", nc, seed); }
std::shared_ptr<ResNet> resnet101(int64_t nc, uint64_t seed) { return create("resnet101", nc, seed); }
std::shared_ptr<ResNet> resnet152(int64_t nc, uint64_t seed) { return create("resnet152", nc, seed); }

std::vector<std::string> names() { return {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152"}; }

std::shared_ptr<ResNet> create(const std::string& name, int64_t num_classes, uint64_t seed, Init init) {
    if (name == "resnet18") return build(BlockKind::Basic, {2, 2, 2, 2}, num_classes, seed, init);
    if (name == "resnet34") return build(BlockKind::Basic, {3, 4, 6, 3}, num_classes, seed, init);
    if (name == "resnet50") return build(BlockKind::Bottleneck, {3, 4, 6, 3}, num_classes, seed, init);
    if (name == "resnet101") return build(BlockKind::Bottleneck, {3, 4, 23, 3}, num_classes, seed, init);
    if (name == "resnet152") return build(BlockKind::Bottleneck, {3, 8, 36, 3}, num_classes, seed, init);
    std::string known;
    for (const auto& n : names()) known += (known.empty() ? "" : ", ") + n;
    STRATA_FAIL("unknown model '", name, "'; known models: ", known);
}

}  // namespace models
}  // namespace strata
