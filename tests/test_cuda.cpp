// The CUDA backend: each op against the reference kernels, the layouts (NCHW and NHWC
// activations), Module::to and Tensor::to, ResNet-18 and the getter against PyTorch's fixtures
// and against the CPU backend, CUDA graphs, and the errors. Compiled in every build; where the
// build has no CUDA backend or the machine no GPU, each device test prints
// "skipped: <reason>" and ctest reports it as skipped (tests/CMakeLists.txt). The error tests
// that need no device run everywhere.
//
// Tolerances (fp32, TF32 off): max|cuda - ref| <= 1e-4 * max|ref| per tensor, the project's
// PyTorch tolerance. cuDNN picks its fastest algorithm per shape (implicit GEMM, Winograd or FFT),
// whose float32 rounding differs from the reference's double sums by up to ~1e-5 relative;
// 1e-4 leaves margin and still catches any indexing or fusion error (those move results by
// whole terms, > 1e-2). Pooling and ReLU select values: bit for bit. With TF32 (10-bit mantissa
// products) ResNet-18's outputs move by ~1e-3 relative: 1e-2 there.
#include <cmath>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kernels/cuda_context.h"
#include "test_util.h"

using namespace strata;
using strata_test::compare;
using strata_test::compare_bitwise;
using strata_test::random_tensor;

namespace {

constexpr double kTolerance = 1e-4;
constexpr double kTf32Tolerance = 1e-2;

// The device check every device test starts with: a context, or nullptr after printing why
// the test is skipped ("skipped: this build has no CUDA backend; ...").
std::shared_ptr<CudaContext> context_or_skip(int channels_last = -1, bool tf32 = false) {
    std::string why;
    if (cuda_device_count(&why) == 0) {
        WARN("skipped: " << why);
        return nullptr;
    }
    CudaOptions options;
    options.channels_last = channels_last;
    options.tf32 = tf32;
    return CudaContext::create(options);
}

RunOptions on_cuda(const std::shared_ptr<CudaContext>& ctx) { return RunOptions(Backend::Cuda, 0, ctx); }

// Every parameter of `m` from the deterministic stream `key` + its name, BatchNorm variances
// positive.
void fill_parameters(Module& m, const std::string& key) {
    for (auto& [name, t] : m.state_dict()) {
        if (t.dtype() != DType::Float32) continue;
        const bool var = name.find("running_var") != std::string::npos;
        Tensor(t).copy_from(random_tensor(t.shape(), key + "." + name, var ? 0.5 : -1.0, var ? 2.0 : 1.0));
    }
    m.notify_weights_changed();
}

// The module on the reference backend (CPU), then moved to the device and run there on the same
// input; returns {reference, cuda result on the CPU}. The module is moved back afterwards.
std::pair<Tensor, Tensor> reference_and_cuda(Module& m, const Tensor& x, const RunOptions& cuda) {
    const Tensor ref = m.forward(x, RunOptions{Backend::Reference, 1});
    m.to(Device::CUDA);
    const Tensor y = m.forward(x.to(Device::CUDA), cuda);
    REQUIRE(y.device() == Device::CUDA);
    const Tensor back = y.to(Device::CPU);
    m.to(Device::CPU);
    return {ref, back};
}

struct ConvCase {
    int64_t n, c, h, w, oc, k, stride, pad, dil, groups;
    bool bias;
};

std::string describe(const ConvCase& t) {
    std::ostringstream os;
    os << "x [" << t.n << ", " << t.c << ", " << t.h << ", " << t.w << "] -> " << t.oc << " channels, kernel " << t.k
       << ", stride " << t.stride << ", padding " << t.pad << ", dilation " << t.dil << ", groups " << t.groups
       << ", bias " << (t.bias ? "yes" : "no");
    return os.str();
}

}  // namespace

// ---- errors, everywhere (no device needed) ------------------------------------------------

TEST_CASE("cuda: asking for CUDA without a usable device fails with the reason", "[cuda]") {
    std::string why;
    if (cuda_device_count(&why) > 0) {
        SUCCEED("a device is present: nothing to check here");
        return;
    }
    INFO("reason: " << why);
    REQUIRE_FALSE(why.empty());
    REQUIRE_THROWS_WITH(CudaContext::create(), Catch::Contains(cuda_built() ? "CUDA was asked for but" : "rebuild with -DSTRATA_CUDA=ON"));
    REQUIRE_THROWS_AS(Tensor::zeros({2, 3}).to(Device::CUDA), Error);
    if (!cuda_built())
        REQUIRE_THROWS_WITH(Tensor::zeros({2, 3}).to(Device::CUDA), "this build has no CUDA backend; rebuild with -DSTRATA_CUDA=ON");
}

TEST_CASE("cuda: a CPU tensor on the cuda backend, or no context, is refused naming the layer", "[cuda]") {
    Conv2d conv(3, 4, 3);
    const Tensor x = Tensor::zeros({1, 3, 8, 8});
    REQUIRE_THROWS_WITH(conv(x, RunOptions{Backend::Cuda}),
                        "Conv2d: input is on cpu but the backend is cuda; move it first: x.to(Device::CUDA)");
    REQUIRE_THROWS_WITH(ReLU()(x, RunOptions{Backend::Cuda}), Catch::StartsWith("ReLU: input is on cpu but the backend is cuda"));
    auto model = models::resnet18();
    IntermediateLayerGetter getter(*model, {{"layer1", "feat"}});
    REQUIRE_THROWS_WITH(getter(x, RunOptions{Backend::Cuda}), Catch::StartsWith("conv1: Conv2d: input is on cpu but the backend is cuda"));
}

// ---- with a device ----------------------------------------------------------------------

TEST_CASE("cuda: Tensor::to copies across and back, keeping shape, strides and dtype", "[cuda]") {
    const auto ctx = context_or_skip();
    if (!ctx) return;
    INFO(ctx->device_name());
    const Tensor x = random_tensor({2, 3, 5, 7}, "to");
    const Tensor d = x.to(Device::CUDA);
    REQUIRE(d.device() == Device::CUDA);
    REQUIRE(d.shape() == x.shape());
    STRATA_REQUIRE_CMP(compare_bitwise(d.to(Device::CPU), x), "round trip");
    // A channels_last view crosses with its strides.
    const Tensor cl = ctx->empty({2, 3, 5, 7}, true);
    REQUIRE(cl.is_channels_last());
    REQUIRE(cl.to(Device::CPU).strides() == cl.strides());
    // copy_from across devices, with dtype conversion on the host side.
    Tensor dst = Tensor::empty({2, 3, 5, 7}, DType::Float32, Device::CUDA);
    dst.copy_from(x.to(DType::Float16));
    STRATA_REQUIRE_CLOSE(dst.to(Device::CPU), x, 1e-3, "copy_from float16 -> cuda float32");
    REQUIRE_THROWS_WITH(d.item_at({0, 0, 0, 0}), Catch::Contains("move it to the cpu first"));
}

TEST_CASE("cuda: Module::to moves parameters in place, so the layers' handles follow", "[cuda]") {
    const auto ctx = context_or_skip();
    if (!ctx) return;
    auto model = models::resnet18();
    fill_deterministic(*model, 2024);
    const StateDict before = model->state_dict();
    std::vector<Tensor> host;
    for (const auto& item : before) host.push_back(item.second.clone());
    model->to(Device::CUDA);
    auto* conv1 = dynamic_cast<Conv2d*>(model->child("conv1").get());
    REQUIRE(conv1->weight().device() == Device::CUDA);
    for (const auto& item : model->state_dict()) REQUIRE(item.second.device() == Device::CUDA);
    model->to(Device::CPU);
    size_t i = 0;
    for (const auto& item : model->state_dict()) {
        INFO(item.first);
        STRATA_REQUIRE_CMP(compare_bitwise(item.second, host[i++]), item.first);
    }
    // A CPU model on the cuda backend is refused with the remedy.
    REQUIRE_THROWS_WITH((*model)(Tensor::zeros({1, 3, 32, 32}).to(Device::CUDA), on_cuda(ctx)),
                        Catch::Contains("weights are on cpu but the backend is cuda; move the model first"));
    // And a CUDA input on the cpu backend.
    REQUIRE_THROWS_WITH(Conv2d(3, 4, 3)(Tensor::zeros({1, 3, 8, 8}).to(Device::CUDA), RunOptions{Backend::Cpu}),
                        Catch::StartsWith("Conv2d: input is on cuda but the backend is cpu"));
}

TEST_CASE("cuda: Conv2d matches the reference (strides, padding, dilation, groups, bias, odd sizes)", "[cuda]") {
    const std::vector<ConvCase> cases = {
        {1, 3, 224, 224, 64, 7, 2, 3, 1, 1, false},  // ResNet's stem
        {2, 64, 56, 56, 64, 3, 1, 1, 1, 1, false},  // layer1
        {3, 64, 57, 31, 128, 1, 2, 0, 1, 1, false},  // a downsample on odd sizes
        {2, 16, 13, 17, 24, 3, 1, 2, 2, 1, true},    // dilation
        {2, 16, 11, 9, 32, 3, 2, 1, 1, 4, true},     // groups
        {8, 32, 7, 5, 48, 5, 1, 2, 1, 1, true},      // batch 8, 5x5
        {1, 5, 3, 3, 7, 3, 1, 0, 1, 1, true},        // output 1x1
    };
    for (int channels_last : {0, 1}) {
        const auto ctx = context_or_skip(channels_last);
        if (!ctx) return;
        for (size_t i = 0; i < cases.size(); ++i) {
            const ConvCase& t = cases[i];
            INFO(describe(t) << (channels_last ? ", NHWC activations" : ", NCHW activations"));
            Conv2d conv(t.c, t.oc, t.k, t.stride, t.pad, t.dil, t.groups, t.bias);
            fill_parameters(conv, "cuda conv " + std::to_string(i));
            const Tensor x = random_tensor({t.n, t.c, t.h, t.w}, "cuda conv x " + std::to_string(i));
            const auto [ref, y] = reference_and_cuda(conv, x, on_cuda(ctx));
            REQUIRE(y.is_channels_last() == (channels_last == 1));
            STRATA_REQUIRE_CLOSE(y, ref, kTolerance, "Conv2d cuda vs reference");
        }
    }
}

TEST_CASE("cuda: BatchNorm2d, ReLU, pooling, Linear and the residual add match the reference", "[cuda]") {
    for (int channels_last : {0, 1}) {
        const auto ctx = context_or_skip(channels_last);
        if (!ctx) return;
        const RunOptions cuda = on_cuda(ctx);
        INFO((channels_last ? "NHWC" : "NCHW") << " activations");
        // Inputs in the context's layout, as a previous Conv2d would leave them.
        Conv2d make(3, 12, 1);
        fill_parameters(make, "cuda ops producer");
        const Tensor x = make(random_tensor({3, 3, 13, 11}, "cuda ops x"), RunOptions{Backend::Reference, 1});
        make.to(Device::CUDA);
        const Tensor xd = make(random_tensor({3, 3, 13, 11}, "cuda ops x").to(Device::CUDA), cuda);
        STRATA_REQUIRE_CLOSE(xd.to(Device::CPU), x, kTolerance, "producer");
        const Tensor xc = xd.to(Device::CPU).contiguous();  // exactly the device's values

        BatchNorm2d bn(12);
        fill_parameters(bn, "cuda bn");
        const Tensor bn_ref = bn(xc, RunOptions{Backend::Reference, 1});
        bn.to(Device::CUDA);
        STRATA_REQUIRE_CLOSE(bn(xd, cuda).to(Device::CPU), bn_ref, 1e-6, "BatchNorm2d");

        STRATA_REQUIRE_CMP(compare_bitwise(ReLU()(xd, cuda).to(Device::CPU).contiguous(),
                                           ReLU()(xc, RunOptions{Backend::Reference, 1})), "ReLU");
        for (const auto& pool : {std::make_shared<MaxPool2d>(3, 2, 1), std::make_shared<MaxPool2d>(2, 0, 0, 1, true),
                                 std::make_shared<MaxPool2d>(3, 2, 1, 2, true)}) {
            INFO(pool->extra_repr());
            STRATA_REQUIRE_CMP(compare_bitwise((*pool)(xd, cuda).to(Device::CPU).contiguous(),
                                               (*pool)(xc, RunOptions{Backend::Reference, 1})), "MaxPool2d");
        }
        for (const Size2 out : {Size2(1, 1), Size2(3, 4), Size2(13, 11), Size2(5, 2)}) {
            INFO("AdaptiveAvgPool2d " << out.str());
            AdaptiveAvgPool2d pool(out);
            STRATA_REQUIRE_CLOSE(pool(xd, cuda).to(Device::CPU), pool(xc, RunOptions{Backend::Reference, 1}), 1e-6,
                                 "AdaptiveAvgPool2d");
        }
        const Tensor other = random_tensor(xc.shape(), "cuda add other");
        STRATA_REQUIRE_CLOSE(add_relu(xd, other.to(Device::CUDA), cuda).to(Device::CPU),
                             add_relu(xc, other, RunOptions{Backend::Reference, 1}), 1e-6, "add_relu (mixed layouts)");

        for (bool bias : {true, false}) {
            Linear fc(96, 10, bias);
            fill_parameters(fc, "cuda fc");
            const Tensor in = random_tensor({5, 96}, "cuda fc x");
            const auto [ref, y] = reference_and_cuda(fc, in, cuda);
            STRATA_REQUIRE_CLOSE(y, ref, 1e-5, std::string("Linear, bias ") + (bias ? "yes" : "no"));
        }
    }
}

TEST_CASE("cuda: max_pool2d keeps NaN, as torch does", "[cuda]") {
    const auto ctx = context_or_skip(0);
    if (!ctx) return;
    Tensor x = random_tensor({1, 2, 6, 6}, "cuda nan");
    x.data<float>()[7] = std::numeric_limits<float>::quiet_NaN();
    const MaxPool2d pool(3, 2, 1);
    STRATA_REQUIRE_CMP(compare_bitwise(pool(x.to(Device::CUDA), on_cuda(ctx)).to(Device::CPU),
                                       pool(x, RunOptions{Backend::Reference, 1})), "NaN");
}

namespace {

struct Fixture {
    StateDict tensors;
    Metadata meta;
    ReturnLayers return_layers;
};

Fixture load_fixture(const std::string& name) {
    Fixture f;
    f.tensors = load(strata_test::fixture("resnet18_" + name + ".safetensors"), &f.meta);
    for (const auto& pair : nlohmann::json::parse(f.meta.at("return_layers")))
        f.return_layers.emplace_back(pair[0].get<std::string>(), pair[1].get<std::string>());
    return f;
}

}  // namespace

TEST_CASE("cuda: ResNet-18 and the getter match torchvision's fixtures, both layouts", "[cuda]") {
    for (int channels_last : {0, 1}) {
        const auto ctx = context_or_skip(channels_last);
        if (!ctx) return;
        auto model = models::resnet18();
        fill_deterministic(*model, 2024);
        model->to(Device::CUDA);
        for (const char* name : {"seed", "full", "odd_all", "odd_b3", "bn1_relu", "small_layer2"}) {
            INFO("fixture resnet18_" << name << ", " << (channels_last ? "NHWC" : "NCHW") << " activations");
            const Fixture f = load_fixture(name);
            IntermediateLayerGetter getter(*model, f.return_layers);
            const auto out = getter(f.tensors.at("input").to(Device::CUDA), on_cuda(ctx));
            REQUIRE(out.keys() == nlohmann::json::parse(f.meta.at("outputs")).get<std::vector<std::string>>());
            for (const auto& [new_name, tensor] : out) {
                REQUIRE(tensor.device() == Device::CUDA);
                REQUIRE(tensor.is_contiguous());  // returned NCHW whatever the inner layout
                STRATA_REQUIRE_CLOSE(tensor.to(Device::CPU), f.tensors.at("out." + new_name), kTolerance, new_name);
            }
        }
        const Fixture full = load_fixture("full");
        STRATA_REQUIRE_CLOSE(model->forward(full.tensors.at("input").to(Device::CUDA), on_cuda(ctx)).to(Device::CPU),
                             full.tensors.at("out.logits"), kTolerance, "forward logits");
    }
}

TEST_CASE("cuda: ResNet-18 on CUDA equals the CPU backend at batch 1 and 8, several getters", "[cuda]") {
    const auto ctx = context_or_skip();
    if (!ctx) return;
    auto model = models::resnet18();
    fill_deterministic(*model, 7);
    const std::vector<ReturnLayers> requests = {
        {{"layer1", "feat1"}, {"layer3", "feat2"}},
        {{"conv1", "conv1"}, {"bn1", "bn1"}, {"maxpool", "pool"}},
        {{"layer4", "c5"}, {"layer2", "c3"}, {"fc", "logits"}},
    };
    for (int64_t batch : {1, 8}) {
        const Tensor x = random_tensor({batch, 3, 112, 96}, "cuda vs cpu " + std::to_string(batch), 0.0, 1.0);
        for (const auto& request : requests) {
            model->to(Device::CPU);
            IntermediateLayerGetter getter(*model, request);
            const auto cpu = getter(x, RunOptions{Backend::Cpu, 0});
            model->to(Device::CUDA);
            const auto gpu = getter(x.to(Device::CUDA), on_cuda(ctx));
            for (const auto& [name, t] : cpu) {
                INFO("batch " << batch << ", " << name);
                STRATA_REQUIRE_CLOSE(gpu.at(name).to(Device::CPU), t, kTolerance, name);
            }
        }
    }
}

TEST_CASE("cuda: a CUDA graph replays the forward call, reading the input's current values", "[cuda]") {
    const auto ctx = context_or_skip();
    if (!ctx) return;
    auto model = models::resnet18();
    fill_deterministic(*model, 2024);
    model->to(Device::CUDA);
    IntermediateLayerGetter getter(*model, {{"layer2", "mid"}, {"fc", "logits"}});
    const Tensor a = random_tensor({2, 3, 64, 64}, "graph a", 0.0, 1.0);
    const Tensor b = random_tensor({2, 3, 64, 64}, "graph b", 0.0, 1.0);
    const RunOptions cuda = on_cuda(ctx);
    const auto eager_b = getter(b.to(Device::CUDA), cuda);

    Tensor x = a.to(Device::CUDA);
    OrderedDict<Tensor> out;
    auto graph = CudaGraph::capture(*ctx, [&] { out = getter(x, cuda); });
    x.copy_from(b);  // new input, same memory
    graph->replay();
    for (const auto& [name, t] : eager_b) {
        INFO(name);
        STRATA_REQUIRE_CMP(compare_bitwise(out.at(name).to(Device::CPU), t.to(Device::CPU)), "graph vs eager");
    }
}

TEST_CASE("cuda: TF32 on stays within its stated tolerance of torchvision", "[cuda]") {
    const auto ctx = context_or_skip(-1, true);
    if (!ctx) return;
    INFO(ctx->device_name());
    auto model = models::resnet18();
    fill_deterministic(*model, 2024);
    model->to(Device::CUDA);
    const Fixture f = load_fixture("seed");
    IntermediateLayerGetter getter(*model, f.return_layers);
    const auto out = getter(f.tensors.at("input").to(Device::CUDA), on_cuda(ctx));
    for (const auto& [name, t] : out)
        STRATA_REQUIRE_CLOSE(t.to(Device::CPU), f.tensors.at("out." + name), kTf32Tolerance, name + " (TF32)");
}
