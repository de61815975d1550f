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

// torchvision's conv3x3: padding = dilation, so a stride-1 3x3 keeps the spatial size.
std::shared_ptr<Conv2d> conv3x3(int64_t in, int64_t out, int64_t stride, int64_t groups, int64_t dilation) {
    return std::make_shared<Conv2d>(
        Conv2dOptions(in, out, 3).stride(stride).padding(dilation).dilation(dilation).groups(groups).bias(false));
}

// Bottleneck's inner width, as torchvision computes it: int(planes * (base_width / 64.)) * groups.
int64_t bottleneck_width(int64_t planes, int64_t base_width, int64_t groups) {
    return static_cast<int64_t>(static_cast<double>(planes) * (static_cast<double>(base_width) / 64.0)) * groups;
}

int64_t checked_basic(int64_t planes, int64_t groups, int64_t base_width, int64_t dilation) {
    // torchvision: ValueError / NotImplementedError, with these words.
    STRATA_CHECK(groups == 1 && base_width == 64, "BasicBlock only supports groups=1 and base_width=64 (got groups=",
                 groups, ", base_width=", base_width, "), as in torchvision; use a Bottleneck model");
    STRATA_CHECK(dilation == 1, "dilation > 1 is not supported in BasicBlock (got dilation ", dilation,
                 "), as in torchvision; replace_stride_with_dilation needs a Bottleneck model (resnet50 and deeper, "
                 "resnext*, wide_resnet*)");
    return planes;
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

BasicBlock::BasicBlock(int64_t inplanes, int64_t planes, int64_t stride, std::shared_ptr<Module> downsample,
                       int64_t groups, int64_t base_width, int64_t dilation)
    : conv1_(conv3x3(inplanes, checked_basic(planes, groups, base_width, dilation), stride, 1, 1)),
      conv2_(conv3x3(planes, planes, 1, 1, 1)),
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

Bottleneck::Bottleneck(int64_t inplanes, int64_t planes, int64_t stride, std::shared_ptr<Module> downsample,
                       int64_t groups, int64_t base_width, int64_t dilation)
    : conv1_(conv(inplanes, bottleneck_width(planes, base_width, groups), 1, 1)),
      conv2_(conv3x3(conv1_->out_channels(), conv1_->out_channels(), stride, groups, dilation)),
      conv3_(conv(conv1_->out_channels(), planes * expansion, 1, 1)),
      bn1_(std::make_shared<BatchNorm2d>(conv1_->out_channels())),
      bn2_(std::make_shared<BatchNorm2d>(conv1_->out_channels())),
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

// torchvision's ResNet._make_layer: the first block may change stride and width. With `dilate`,
// the stride becomes dilation (dilation *= stride, stride = 1); the first block still uses the
// previous dilation, the later blocks the new one.
struct LayerBuilder {
    BlockKind kind;
    int64_t groups, base_width;
    int64_t inplanes = 64, dilation = 1;

    std::shared_ptr<Sequential> make_layer(int64_t planes, int64_t blocks, int64_t stride, bool dilate) {
        const int64_t expansion = kind == BlockKind::Basic ? BasicBlock::expansion : Bottleneck::expansion;
        const int64_t previous_dilation = dilation;
        if (dilate) {
            dilation *= stride;
            stride = 1;
        }
        std::shared_ptr<Module> downsample;
        if (stride != 1 || inplanes != planes * expansion) {
            downsample = std::make_shared<Sequential>(std::vector<std::shared_ptr<Module>>{
                conv(inplanes, planes * expansion, 1, stride), std::make_shared<BatchNorm2d>(planes * expansion)});
        }
        auto layer = std::make_shared<Sequential>();
        for (int64_t i = 0; i < blocks; ++i) {
            const int64_t s = i == 0 ? stride : 1;
            const int64_t d = i == 0 ? previous_dilation : dilation;
            std::shared_ptr<Module> ds = i == 0 ? downsample : nullptr;
            if (kind == BlockKind::Basic)
                layer->push_back(std::make_shared<BasicBlock>(inplanes, planes, s, ds, groups, base_width, d));
            else
                layer->push_back(std::make_shared<Bottleneck>(inplanes, planes, s, ds, groups, base_width, d));
            inplanes = planes * expansion;
        }
        return layer;
    }
};

}  // namespace

ResNet::ResNet(BlockKind block, std::vector<int64_t> layers, int64_t num_classes, int64_t groups,
               int64_t width_per_group, std::array<bool, 3> replace_stride_with_dilation) {
    STRATA_CHECK(layers.size() == 4, "ResNet needs 4 stage depths, got ", layers.size());
    for (int64_t depth : layers) STRATA_CHECK(depth > 0, "ResNet: stage depths must be positive, got ", depth);
    STRATA_CHECK(num_classes > 0, "ResNet: num_classes must be positive, got ", num_classes);
    STRATA_CHECK(groups > 0 && width_per_group > 0, "ResNet: groups and width_per_group must be positive, got ",
                 groups, " and ", width_per_group);
    STRATA_CHECK(block == BlockKind::Basic || bottleneck_width(64, width_per_group, groups) > 0,
                 "ResNet: width_per_group ", width_per_group, " gives Bottleneck width 0");
    LayerBuilder b{block, groups, width_per_group};
    register_module("conv1", conv(3, 64, 7, 2));
    register_module("bn1", std::make_shared<BatchNorm2d>(64));
    register_module("relu", std::make_shared<ReLU>(true));
    register_module("maxpool", std::make_shared<MaxPool2d>(3, 2, 1));
    register_module("layer1", b.make_layer(64, layers[0], 1, false));
    register_module("layer2", b.make_layer(128, layers[1], 2, replace_stride_with_dilation[0]));
    register_module("layer3", b.make_layer(256, layers[2], 2, replace_stride_with_dilation[1]));
    register_module("layer4", b.make_layer(512, layers[3], 2, replace_stride_with_dilation[2]));
    register_module("avgpool", std::make_shared<AdaptiveAvgPool2d>(Size2(1, 1)));
    register_module("fc", std::make_shared<Linear>(b.inplanes, num_classes));
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

struct Architecture {
    const char* name;
    BlockKind block;
    std::vector<int64_t> layers;
    int64_t groups, width_per_group;  // torchvision's values for the name
    bool fixes_width;                 // the builder overwrites groups / width_per_group (resnext, wide)
};

const std::vector<Architecture>& architectures() {
    static const std::vector<Architecture> table = {
        {"resnet18", BlockKind::Basic, {2, 2, 2, 2}, 1, 64, false},
        {"resnet34", BlockKind::Basic, {3, 4, 6, 3}, 1, 64, false},
        {"resnet50", BlockKind::Bottleneck, {3, 4, 6, 3}, 1, 64, false},
        {"resnet101", BlockKind::Bottleneck, {3, 4, 23, 3}, 1, 64, false},
        {"resnet152", BlockKind::Bottleneck, {3, 8, 36, 3}, 1, 64, false},
        {"resnext50_32x4d", BlockKind::Bottleneck, {3, 4, 6, 3}, 32, 4, true},
        {"resnext101_32x8d", BlockKind::Bottleneck, {3, 4, 23, 3}, 32, 8, true},
        {"resnext101_64x4d", BlockKind::Bottleneck, {3, 4, 23, 3}, 64, 4, true},
        {"wide_resnet50_2", BlockKind::Bottleneck, {3, 4, 6, 3}, 1, 64 * 2, true},
        {"wide_resnet101_2", BlockKind::Bottleneck, {3, 4, 23, 3}, 1, 64 * 2, true},
    };
    return table;
}

// torchvision's _ovewrite_named_param: a name that fixes a value refuses a different one.
int64_t resolve(const Architecture& a, const char* what, int64_t fixed, int64_t asked) {
    if (asked == 0) return fixed;
    STRATA_CHECK(asked > 0, a.name, ": ", what, " must be positive (or 0 for the model's own), got ", asked);
    STRATA_CHECK(!a.fixes_width || asked == fixed, a.name, " has ", what, "=", fixed, "; ResNetOptions asks for ",
                 asked, " (leave it 0, or build resnet50/resnet101 with your own ", what, ")");
    return asked;
}

}  // namespace

std::shared_ptr<ResNet> resnet18(int64_t nc, uint64_t seed) { return create("resnet18", nc, seed); }
std::shared_ptr<ResNet> resnet34(int64_t nc, uint64_t seed) { return create("resnet34", nc, seed); }
std::shared_ptr<ResNet> resnet50(int64_t nc, uint64_t seed) { return create("resnet50", nc, seed); }
std::shared_ptr<ResNet> resnet101(int64_t nc, uint64_t seed) { return create("resnet101", nc, seed); }
std::shared_ptr<ResNet> resnet152(int64_t nc, uint64_t seed) { return create("resnet152", nc, seed); }
std::shared_ptr<ResNet> resnext50_32x4d(int64_t nc, uint64_t seed) { return create("resnext50_32x4d", nc, seed); }
std::shared_ptr<ResNet> resnext101_32x8d(int64_t nc, uint64_t seed) { return create("resnext101_32x8d", nc, seed); }
std::shared_ptr<ResNet> resnext101_64x4d(int64_t nc, uint64_t seed) { return create("resnext101_64x4d", nc, seed); }
std::shared_ptr<ResNet> wide_resnet50_2(int64_t nc, uint64_t seed) { return create("wide_resnet50_2", nc, seed); }
std::shared_ptr<ResNet> wide_resnet101_2(int64_t nc, uint64_t seed) { return create("wide_resnet101_2", nc, seed); }

std::vector<std::string> names() {
    std::vector<std::string> out;
    for (const auto& a : architectures()) out.emplace_back(a.name);
    return out;
}

std::shared_ptr<ResNet> create(const std::string& name, const ResNetOptions& options) {
    for (const auto& a : architectures()) {
        if (name != a.name) continue;
        const int64_t groups = resolve(a, "groups", a.groups, options.groups);
        const int64_t width = resolve(a, "width_per_group", a.width_per_group, options.width_per_group);
        std::shared_ptr<ResNet> model;
        try {
            model = std::make_shared<ResNet>(a.block, a.layers, options.num_classes, groups, width,
                                             options.replace_stride_with_dilation);
        } catch (const Error& e) {
            STRATA_FAIL(name, ": ", e.what());
        }
        if (options.init == Init::Torchvision) init_like_torchvision(*model, options.seed);
        return model;
    }
    std::string known;
    for (const auto& n : names()) known += (known.empty() ? "" : ", ") + n;
    STRATA_FAIL("unknown model '", name, "'; known models: ", known);
}

std::shared_ptr<ResNet> create(const std::string& name, int64_t num_classes, uint64_t seed, Init init) {
    ResNetOptions options;
    options.num_classes = num_classes;
    options.seed = seed;
    options.init = init;
    return create(name, options);
}

}  // namespace models
}  // namespace strata
