// The backbones torchvision's own models use, against torchvision itself
// (tests/fixtures/backbones/, tools/make_fixtures.py --only backbones):
// - ResNeXt and Wide ResNet (groups, width_per_group): resnext50_32x4d and wide_resnet50_2 getter
//   outputs; every new name's state_dict keys, shapes and dtypes equal torchvision's;
// - dilation (replace_stride_with_dilation [F, T, T] as DeepLabV3/FCN, and [F, F, T]) on
//   resnet50: getter outputs, per-block dilation as torchvision's _make_layer sets it, and
//   BasicBlock's refusal;
// through the C++ API and the CLI (--model, --dilation, --layers).
//
// Weights: detgen (seed 2024, models/init.cpp == tools/detgen.py). Input 1x3x65x97. The fixtures
// hold each output subsampled over channels (out[:, ::channel_step], at most 4096 values, every
// spatial position of those channels) plus [sum, sum|x|, max|x|] of the full output.
// Tolerance, as tests/test_resnet.cpp: per subsampled tensor max|strata - torch| <= tol *
// max|torch| of the full output, tol = 1e-4 on the reference kernels and 1e-3 on the fast CPU
// path; the full output's sum and sum|x| within tol * sum|x|, its max|x| within tol * max|x|.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test_util.h"

using namespace strata;

namespace {

constexpr double kReferenceTolerance = 1e-4;
constexpr double kFastTolerance = 1e-3;

std::string backbone_fixture(const std::string& name) { return strata_test::fixture("backbones/" + name); }

struct OutputFixture {
    StateDict tensors;
    Metadata meta;
    ReturnLayers return_layers;
    std::array<bool, 3> dilation{};
    std::vector<std::string> outputs;
    nlohmann::json steps, shapes;
};

OutputFixture load_output_fixture(const std::string& name) {
    OutputFixture f;
    f.tensors = load(backbone_fixture(name + ".safetensors"), &f.meta);
    REQUIRE(f.meta.at("seed") == "2024");
    for (const auto& pair : nlohmann::json::parse(f.meta.at("return_layers")))
        f.return_layers.emplace_back(pair[0].get<std::string>(), pair[1].get<std::string>());
    const auto d = nlohmann::json::parse(f.meta.at("replace_stride_with_dilation"));
    for (size_t i = 0; i < 3; ++i) f.dilation[i] = d.at(i).get<bool>();
    f.outputs = nlohmann::json::parse(f.meta.at("outputs")).get<std::vector<std::string>>();
    f.steps = nlohmann::json::parse(f.meta.at("channel_step"));
    f.shapes = nlohmann::json::parse(f.meta.at("output_shapes"));
    return f;
}

// out[:, ::step], contiguous.
Tensor channel_subsample(const Tensor& t_in, int64_t step) {
    const Tensor t = t_in.contiguous();
    const int64_t n = t.size(0), c = t.size(1), hw = t.size(2) * t.size(3);
    const int64_t kept = (c + step - 1) / step;
    Tensor out = Tensor::empty({n, kept, t.size(2), t.size(3)});
    for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < kept; ++k)
            std::copy_n(t.data<float>() + (i * c + k * step) * hw, hw, out.data<float>() + (i * kept + k) * hw);
    return out;
}

// Compares one full output with the fixture's subsample and statistics; returns the observed
// max relative error of the subsample.
double check_output(const OutputFixture& f, const std::string& name, const Tensor& actual, double tol) {
    INFO("output " << name);
    REQUIRE(actual.shape() == f.shapes.at(name).get<Shape>());
    const Tensor& stats = f.tensors.at("stats." + name);  // sum, sum|x|, max|x| (float64, stored as F32)
    const double sum_t = stats.data<float>()[0], abs_t = stats.data<float>()[1], max_t = stats.data<float>()[2];
    const Tensor sub = channel_subsample(actual, f.steps.at(name).get<int64_t>());
    const Tensor& expected = f.tensors.at("sub." + name);
    REQUIRE(sub.shape() == expected.shape());
    const float* a = sub.data<float>();
    const float* e = expected.data<float>();
    double max_diff = 0;
    for (int64_t i = 0; i < sub.numel(); ++i) max_diff = std::max(max_diff, std::fabs(double(a[i]) - e[i]));
    INFO("subsample max|diff| " << max_diff << ", tolerance " << tol * max_t);
    REQUIRE(max_diff <= tol * max_t);
    const Tensor full = actual.contiguous();
    double sum = 0, abs_sum = 0, max_abs = 0;
    for (int64_t i = 0; i < full.numel(); ++i) {
        const double v = full.data<float>()[i];
        sum += v;
        abs_sum += std::fabs(v);
        max_abs = std::max(max_abs, std::fabs(v));
    }
    INFO("sum " << sum << " vs " << sum_t << ", sum|x| " << abs_sum << " vs " << abs_t << ", max|x| " << max_abs
                << " vs " << max_t);
    REQUIRE(std::fabs(sum - sum_t) <= tol * abs_t);
    REQUIRE(std::fabs(abs_sum - abs_t) <= tol * abs_t);
    REQUIRE(std::fabs(max_abs - max_t) <= tol * max_t);
    return max_diff / max_t;
}

std::shared_ptr<models::ResNet> detgen_model(const OutputFixture& f) {
    models::ResNetOptions o;
    o.replace_stride_with_dilation = f.dilation;
    o.init = models::Init::None;
    auto model = models::create(f.meta.at("model"), o);
    fill_deterministic(*model, 2024);
    return model;
}

// `up_to`: request only the fixture's outputs up to this many (the reference kernels are slow).
void check_output_fixture(const std::string& name, const RunOptions& options, size_t up_to = 4) {
    INFO("fixture backbones/" << name << ", backend " << backend_name(options.backend));
    const OutputFixture f = load_output_fixture(name);
    auto model = detgen_model(f);
    ReturnLayers request;
    for (const auto& [layer, new_name] : f.return_layers)
        if (std::find(f.outputs.begin(), f.outputs.begin() + static_cast<std::ptrdiff_t>(up_to), new_name) !=
            f.outputs.begin() + static_cast<std::ptrdiff_t>(up_to))
            request.emplace_back(layer, new_name);
    const IntermediateLayerGetter getter(*model, request);
    const auto out = getter(f.tensors.at("input"), options);
    REQUIRE(out.keys() == std::vector<std::string>(f.outputs.begin(), f.outputs.begin() + static_cast<std::ptrdiff_t>(up_to)));
    const double tol = options.backend == Backend::Reference ? kReferenceTolerance : kFastTolerance;
    for (const auto& [new_name, t] : out) {
        const double rel = check_output(f, new_name, t, tol);
        if (options.backend == Backend::Cpu)
            std::printf("fast path max rel error %-22s %-4s %.2e\n", name.c_str(), new_name.c_str(), rel);
    }
}

// "layer4.1.conv2" -> its extra_repr, e.g. "512, 512, kernel_size=(3, 3), ..., dilation=(2, 2), ..."
std::string repr_of(const Module& model, const std::string& path) {
    for (const auto& [p, m] : model.named_modules())
        if (p == path) return m->extra_repr();
    FAIL("no module " << path);
    return "";
}

}  // namespace

TEST_CASE("backbones: resnext50_32x4d vs torchvision (grouped 3x3 on the fast path)") {
    check_output_fixture("resnext50_32x4d", RunOptions{Backend::Cpu, 2});
}

TEST_CASE("backbones: wide_resnet50_2 vs torchvision") {
    check_output_fixture("wide_resnet50_2", RunOptions{Backend::Cpu, 2});
}

TEST_CASE("backbones: resnet50 with replace_stride_with_dilation [F, T, T] (DeepLabV3, FCN) vs torchvision") {
    check_output_fixture("resnet50_dilation_011", RunOptions{Backend::Cpu, 2});
}

TEST_CASE("backbones: resnet50 with replace_stride_with_dilation [F, F, T] vs torchvision") {
    check_output_fixture("resnet50_dilation_001", RunOptions{Backend::Cpu, 2});
}

TEST_CASE("backbones: lean packing (direct kernel only) matches too") {
    RunOptions lean{Backend::Cpu, 1};
    lean.packing = WeightPacking::Lean;
    check_output_fixture("resnet50_dilation_011", lean);
}

TEST_CASE("backbones: the reference kernels match too (grouped and dilated, layer1 and layer2)") {
    check_output_fixture("resnext50_32x4d", RunOptions{Backend::Reference, 2}, 2);
    check_output_fixture("resnet50_dilation_001", RunOptions{Backend::Reference, 2}, 1);
}

TEST_CASE("backbones: dilation follows torchvision's _make_layer (the first block keeps the previous dilation)") {
    models::ResNetOptions o;
    o.init = models::Init::None;
    o.replace_stride_with_dilation = {false, true, true};
    auto m = models::create("resnet50", o);
    // layer2 as usual; layer3: stride 1, first block dilation 1, the rest 2; layer4: first 2, rest 4.
    REQUIRE(repr_of(*m, "layer2.0.conv2").find("stride=(2, 2), padding=(1, 1)") != std::string::npos);
    REQUIRE(repr_of(*m, "layer3.0.conv2").find("stride=(1, 1), padding=(1, 1), bias") != std::string::npos);
    REQUIRE(repr_of(*m, "layer3.0.downsample.0").find("stride=(1, 1)") != std::string::npos);
    REQUIRE(repr_of(*m, "layer3.1.conv2").find("padding=(2, 2), dilation=(2, 2)") != std::string::npos);
    REQUIRE(repr_of(*m, "layer3.5.conv2").find("padding=(2, 2), dilation=(2, 2)") != std::string::npos);
    REQUIRE(repr_of(*m, "layer4.0.conv2").find("stride=(1, 1), padding=(2, 2), dilation=(2, 2)") != std::string::npos);
    REQUIRE(repr_of(*m, "layer4.2.conv2").find("padding=(4, 4), dilation=(4, 4)") != std::string::npos);
    // The example: input 2x3x97x131, layer4 at 1/8: [2, 2048, 13, 17] as torchvision.
    const IntermediateLayerGetter getter(*m, {{"layer4", "out"}, {"layer3", "aux"}});
    const auto out = getter(Tensor::zeros({2, 3, 97, 131}), RunOptions{Backend::Cpu, 2});
    REQUIRE(out.keys() == std::vector<std::string>{"aux", "out"});
    REQUIRE(out.at("aux").shape() == Shape{2, 1024, 13, 17});
    REQUIRE(out.at("out").shape() == Shape{2, 2048, 13, 17});
}

TEST_CASE("backbones: BasicBlock refuses dilation, groups and width, as torchvision") {
    for (const char* name : {"resnet18", "resnet34"}) {
        for (const std::array<bool, 3>& d : {std::array<bool, 3>{true, false, false}, std::array<bool, 3>{false, true, true},
                                             std::array<bool, 3>{false, false, true}}) {
            models::ResNetOptions o;
            o.replace_stride_with_dilation = d;
            o.init = models::Init::None;
            REQUIRE_THROWS_WITH(models::create(name, o),
                                Catch::Contains(std::string(name) + ": dilation > 1 is not supported in BasicBlock"));
        }
        models::ResNetOptions g;
        g.groups = 2;
        REQUIRE_THROWS_WITH(models::create(name, g), Catch::Contains("BasicBlock only supports groups=1 and base_width=64"));
    }
    // A name that fixes groups / width refuses another value (torchvision's _ovewrite_named_param).
    models::ResNetOptions g;
    g.groups = 8;
    REQUIRE_THROWS_WITH(models::create("resnext50_32x4d", g),
                        Catch::Contains("resnext50_32x4d has groups=32; ResNetOptions asks for 8"));
    models::ResNetOptions w;
    w.width_per_group = 64;
    REQUIRE_THROWS_WITH(models::create("wide_resnet50_2", w), Catch::Contains("wide_resnet50_2 has width_per_group=128"));
    REQUIRE_THROWS_WITH(models::create("resnext50", models::ResNetOptions{}), Catch::Contains("unknown model 'resnext50'"));
}

TEST_CASE("backbones: every new name's state_dict equals torchvision's (keys, order, shapes, dtypes)") {
    std::ifstream in(backbone_fixture("structure.json"));
    const auto doc = nlohmann::json::parse(in);
    const auto& expected_models = doc.at("models");
    REQUIRE(expected_models.size() == 5);
    for (const auto& [name, entries] : expected_models.items()) {
        INFO("model " << name);
        models::ResNetOptions o;
        o.init = models::Init::None;  // structure only
        const StateDict sd = models::create(name, o)->state_dict();
        REQUIRE(sd.size() == entries.size());
        for (size_t i = 0; i < sd.size(); ++i) {
            const auto& [key, t] = sd[i];
            INFO("entry " << i);
            REQUIRE(key == entries[i][0].get<std::string>());
            REQUIRE(t.shape() == entries[i][1].get<Shape>());
            REQUIRE(std::string(dtype_name(t.dtype())) == entries[i][2].get<std::string>());
        }
    }
    // resnet50(groups=32, width_per_group=4) is resnext50_32x4d, as in torchvision.
    models::ResNetOptions o;
    o.groups = 32;
    o.width_per_group = 4;
    o.init = models::Init::None;
    const StateDict custom = models::create("resnet50", o)->state_dict();
    const StateDict named = models::resnext50_32x4d()->state_dict();
    REQUIRE(custom.keys() == named.keys());
    for (const auto& [k, t] : named) REQUIRE(custom.at(k).shape() == t.shape());
}

TEST_CASE("backbones: grouped and dilated 3x3 convolutions are not given to Winograd") {
    Conv2dParams p{};
    p.n = 1, p.c = 128, p.h = 14, p.w = 14, p.oc = 128, p.kh = 3, p.kw = 3;
    p.stride_h = p.stride_w = 1, p.pad_h = p.pad_w = 1, p.dil_h = p.dil_w = 1, p.groups = 1;
    p.oh = 14, p.ow = 14;
    REQUIRE(cpu::winograd_applicable(p));  // the plain case takes it
    Conv2dParams grouped = p;
    grouped.groups = 32;
    REQUIRE_FALSE(cpu::winograd_applicable(grouped));
    Conv2dParams dilated = p;
    dilated.dil_h = dilated.dil_w = 2, dilated.pad_h = dilated.pad_w = 2;
    REQUIRE_FALSE(cpu::winograd_applicable(dilated));
}

// ---- the CLI: --model, --dilation, --layers ------------------------------------------------------
namespace {

using Run = strata_test::CliRun;
using strata_test::slurp;

// ctest runs test cases as parallel processes in one folder: every file name carries the pid.
std::string tmp(const std::string& name) { return "backbones_" + std::to_string(::getpid()) + "_" + name; }

Run run_cli(const std::string& args) { return strata_test::run_cli(args, "backbones"); }

}  // namespace

TEST_CASE("backbones cli: features --model resnet50 --dilation 0,1,1 --layers ... equals torchvision") {
    const OutputFixture f = load_output_fixture("resnet50_dilation_011");
    save(detgen_model(f)->state_dict(), tmp("weights.safetensors"));
    save_npy(f.tensors.at("input"), tmp("x.npy"));
    const Run r = run_cli("features --model resnet50 --dilation 0,1,1 --weights " + tmp("weights.safetensors") +
                          " --input " + tmp("x.npy") + " --layers layer4:out,layer3:aux,layer2:l2,layer1:l1 --threads 2 --out " +
                          tmp("out.safetensors"));
    INFO(r.err);
    REQUIRE(r.rc == 0);
    REQUIRE(r.out ==
            "[('l1', [1, 256, 17, 25]), ('l2', [1, 512, 9, 13]), ('aux', [1, 1024, 9, 13]), ('out', [1, 2048, 9, 13])]\n");
    Metadata meta;
    const StateDict out = load(tmp("out.safetensors"), &meta);
    REQUIRE(meta.at("dilation") == "0,1,1");
    for (const auto& name : f.outputs) check_output(f, name, out.at(name), kFastTolerance);
    for (const char* file : {"weights.safetensors", "x.npy", "out.safetensors"}) std::remove(tmp(file).c_str());
}

TEST_CASE("backbones cli: layers lists the new models and the dilated shapes") {
    Run r = run_cli("layers --model resnext101_64x4d --all");
    INFO(r.err);
    REQUIRE(r.rc == 0);
    REQUIRE(r.out.find("layer3.22.conv2  Conv2d(1024, 1024, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), "
                       "groups=64, bias=False)") != std::string::npos);
    r = run_cli("layers --model wide_resnet50_2 --dilation 0,0,1 --size 65");
    REQUIRE(r.rc == 0);
    REQUIRE(r.out.find("layer3  Sequential  [1, 1024, 5, 5]") != std::string::npos);
    REQUIRE(r.out.find("layer4  Sequential  [1, 2048, 5, 5]") != std::string::npos);
    r = run_cli("layers --model resnext50_32x4d --all");
    REQUIRE(r.out.find("layer1.0.conv2  Conv2d(128, 128, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), groups=32, "
                       "bias=False)") != std::string::npos);
}
