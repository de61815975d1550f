// ResNet as torchvision builds it (torchvision/models/resnet.py), module for module.
#include "resnet.h"

#include "init.h"
#include "../layers/adaptive_avg_pool2d.h"
#include "../layers/flatten.h"
#include "../layers/linear.h"
#include "../layers/max_pool2d.h"
#include "../layers/relu.h"

namespace strata {
namespace models {

BasicBlock::BasicBlock(int64_t inplanes, int64_t planes, int64_t stride,
                       std::shared_ptr<Module> downsample) {
    conv1_ = register_module("conv1", std::make_shared<Conv2d>(inplanes, planes, 3, stride, 1, 1, 1, false));
    bn1_ = register_module("bn1", std::make_shared<BatchNorm2d>(planes));
    relu_ = register_module("relu", std::make_shared<ReLU>(true));
    conv2_ = register_module("conv2", std::make_shared<Conv2d>(planes, planes, 3, 1, 1, 1, 1, false));
    bn2_ = register_module("bn2", std::make_shared<BatchNorm2d>(planes));
    if (downsample) downsample_ = register_module("downsample", std::move(downsample));
}

namespace {

// A block's fused form runs a FusedConv2d (or CudaFusedConv2d); its errors carry the
// convolution's name.
template <typename Fused>
Tensor run_fused(const char* name, const Fused& f, const Tensor& x, const Tensor* residual,
                 const RunOptions& o) {
    try {
        return f.forward(x, residual, o);
    } catch (...) {
        rethrow_within(name);
    }
}

// downsample = Sequential(Conv2d, BatchNorm2d), folded into one FusedConv2d (or CudaFusedConv2d).
template <typename Fused = FusedConv2d>
std::unique_ptr<Fused> fuse_downsample(const std::shared_ptr<Module>& downsample) {
    if (!downsample) return nullptr;
    const auto* conv = dynamic_cast<const Conv2d*>(downsample->child("0").get());
    const auto* bn = dynamic_cast<const BatchNorm2d*>(downsample->child("1").get());
    STRATA_CHECK(conv && bn, "downsample must be Sequential(Conv2d, BatchNorm2d)");
    return std::make_unique<Fused>(*conv, bn, false);
}

}  // namespace

struct BasicBlock::Fused {
    FusedConv2d c1, c2;
    std::unique_ptr<FusedConv2d> down;
};

struct BasicBlock::FusedCuda {
    CudaFusedConv2d c1, c2;
    std::unique_ptr<CudaFusedConv2d> down;
};

Tensor BasicBlock::forward(const Tensor& x, const RunOptions& o) const {
    if (o.backend == Backend::Cuda) {  // as below, each convolution one cuDNN call
        expect_nchw(x, "BasicBlock", o);
        const auto f = fused_cuda_.get([&] {
            return FusedCuda{CudaFusedConv2d(*conv1_, bn1_.get(), true), CudaFusedConv2d(*conv2_, bn2_.get(), true),
                             fuse_downsample<CudaFusedConv2d>(downsample_)};
        });
        const Tensor t = run_fused("conv1", f->c1, x, nullptr, o);
        const Tensor identity = f->down ? run_fused("downsample.0", *f->down, x, nullptr, o) : x;
        return run_fused("conv2", f->c2, t, &identity, o);
    }
    if (o.backend == Backend::Cpu) {
        // relu(bn2(conv2(relu(bn1(conv1(x))))) + identity) as three fused convolutions.
        const auto f = fused_.get([&] {
            return Fused{FusedConv2d(*conv1_, bn1_.get(), true), FusedConv2d(*conv2_, bn2_.get(), true),
                         fuse_downsample(downsample_)};
        });
        const Tensor t = run_fused("conv1", f->c1, x, nullptr, o);
        const Tensor identity = f->down ? run_fused("downsample.0", *f->down, x, nullptr, o) : x;
        return run_fused("conv2", f->c2, t, &identity, o);
    }
    Tensor out = run_child("conv1", *conv1_, x, o);
    out = run_child("bn1", *bn1_, out, o);
    out = run_child("relu", *relu_, out, o);
    out = run_child("conv2", *conv2_, out, o);
    out = run_child("bn2", *bn2_, out, o);
    const Tensor identity = downsample_ ? run_child("downsample", *downsample_, x, o) : x;
    return add_relu(out, identity, o);
}

Bottleneck::Bottleneck(int64_t inplanes, int64_t planes, int64_t stride,
                       std::shared_ptr<Module> downsample) {
    conv1_ = register_module("conv1", std::make_shared<Conv2d>(inplanes, planes, 1, 1, 0, 1, 1, false));
    bn1_ = register_module("bn1", std::make_shared<BatchNorm2d>(planes));
    conv2_ = register_module("conv2", std::make_shared<Conv2d>(planes, planes, 3, stride, 1, 1, 1, false));
    bn2_ = register_module("bn2", std::make_shared<BatchNorm2d>(planes));
    conv3_ = register_module("conv3", std::make_shared<Conv2d>(planes, planes * expansion, 1, 1, 0, 1, 1, false));
    bn3_ = register_module("bn3", std::make_shared<BatchNorm2d>(planes * expansion));
    relu_ = register_module("relu", std::make_shared<ReLU>(true));
    if (downsample) downsample_ = register_module("downsample", std::move(downsample));
}

struct Bottleneck::Fused {
    FusedConv2d c1, c2, c3;
    std::unique_ptr<FusedConv2d> down;
};

struct Bottleneck::FusedCuda {
    CudaFusedConv2d c1, c2, c3;
    std::unique_ptr<CudaFusedConv2d> down;
};

Tensor Bottleneck::forward(const Tensor& x, const RunOptions& o) const {
    if (o.backend == Backend::Cuda) {
        expect_nchw(x, "Bottleneck", o);
        const auto f = fused_cuda_.get([&] {
            return FusedCuda{CudaFusedConv2d(*conv1_, bn1_.get(), true), CudaFusedConv2d(*conv2_, bn2_.get(), true),
                             CudaFusedConv2d(*conv3_, bn3_.get(), true), fuse_downsample<CudaFusedConv2d>(downsample_)};
        });
        Tensor t = run_fused("conv1", f->c1, x, nullptr, o);
        t = run_fused("conv2", f->c2, t, nullptr, o);
        const Tensor identity = f->down ? run_fused("downsample.0", *f->down, x, nullptr, o) : x;
        return run_fused("conv3", f->c3, t, &identity, o);
    }
    if (o.backend == Backend::Cpu) {
        const auto f = fused_.get([&] {
            return Fused{FusedConv2d(*conv1_, bn1_.get(), true), FusedConv2d(*conv2_, bn2_.get(), true),
                         FusedConv2d(*conv3_, bn3_.get(), true), fuse_downsample(downsample_)};
        });
        Tensor t = run_fused("conv1", f->c1, x, nullptr, o);
        t = run_fused("conv2", f->c2, t, nullptr, o);
        const Tensor identity = f->down ? run_fused("downsample.0", *f->down, x, nullptr, o) : x;
        return run_fused("conv3", f->c3, t, &identity, o);
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

namespace {

// torchvision's ResNet._make_layer: the first block may change stride and width.
std::shared_ptr<Sequential> make_layer(BlockKind kind, int64_t& inplanes, int64_t planes,
                                       int64_t blocks, int64_t stride) {
    const int64_t expansion = kind == BlockKind::Basic ? BasicBlock::expansion : Bottleneck::expansion;
    std::shared_ptr<Module> downsample;
    if (stride != 1 || inplanes != planes * expansion) {
        downsample = std::make_shared<Sequential>(std::vector<std::shared_ptr<Module>>{
            std::make_shared<Conv2d>(inplanes, planes * expansion, 1, stride, 0, 1, 1, false),
            std::make_shared<BatchNorm2d>(planes * expansion)});
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
    register_module("conv1", std::make_shared<Conv2d>(3, 64, 7, 2, 3, 1, 1, false));
    register_module("bn1", std::make_shared<BatchNorm2d>(64));
    register_module("relu", std::make_shared<ReLU>(true));
    register_module("maxpool", std::make_shared<MaxPool2d>(3, 2, 1));
    register_module("layer1", make_layer(block, inplanes, 64, layers[0], 1));
    register_module("layer2", make_layer(block, inplanes, 128, layers[1], 2));
    register_module("layer3", make_layer(block, inplanes, 256, layers[2], 2));
    register_module("layer4", make_layer(block, inplanes, 512, layers[3], 2));
    register_module("avgpool", std::make_shared<AdaptiveAvgPool2d>(Size2(1, 1)));
    register_module("fc", std::make_shared<Linear>(inplanes, num_classes));
    std::vector<SequenceRunner::Step> steps;
    for (const auto& [name, child] : named_children())
        steps.push_back({name, child, child_input_adapter(name), ""});
    runner_ = std::make_unique<SequenceRunner>(std::move(steps));
}

Module::InputAdapter ResNet::child_input_adapter(const std::string& child_name) const {
    // torchvision: x = self.avgpool(x); x = torch.flatten(x, 1); x = self.fc(x)
    if (child_name == "fc") return [](const Tensor& x) { return flatten(x, 1); };
    return nullptr;
}

Tensor ResNet::forward(const Tensor& x, const RunOptions& options) const {
    return as_returned(runner_->run(x, options, nullptr), options);
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
