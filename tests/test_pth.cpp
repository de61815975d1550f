// torch.save files: the torch-written fixtures in tests/fixtures/pth/ (zip and legacy formats,
// pickle protocols 2/4/5, views, offsets, shared storages, checkpoint layouts) load bitwise
// equal to the values torch stored; refused files say why; files from the test writer
// (tests/pth_writer.h) cover zip64, missing data descriptors and unaligned data; and the CLI
// takes .pth weights (features bit for bit equal to the same weights in safetensors, `convert`,
// strict-load errors).
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "layers/batch_norm2d.h"
#include "layers/conv2d.h"
#include "layers/relu.h"
#include "pth_writer.h"
#include "test_util.h"

using namespace strata;

namespace {

std::string pth_fixture(const std::string& name) { return strata_test::fixture("pth/" + name); }

// ctest runs test cases as parallel processes in one folder: names carry the pid.
std::string tmp(const std::string& name) { return "pth_" + std::to_string(::getpid()) + "_" + name; }

void write_bytes(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// Same keys in the same order, same dtypes and shapes, same bits.
void require_same_state(const StateDict& actual, const StateDict& expected, const std::string& what) {
    INFO(what);
    REQUIRE(actual.keys() == expected.keys());
    for (const auto& [key, t] : expected)
        STRATA_REQUIRE_CMP(strata_test::compare_bitwise(actual.at(key), t), what << " '" << key << "'");
}

std::string load_error(const std::string& path, const LoadOptions& options = {}) {
    try {
        load(path, options);
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

struct Run {
    int rc;
    std::string out, err;
};

Run run_cli(const std::string& args) {
    const std::string out = tmp("stdout.txt"), err = tmp("stderr.txt");
    const std::string cmd = std::string(STRATA_CLI_PATH) + " " + args + " >" + out + " 2>" + err;
    const int status = std::system(cmd.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(out), slurp(err)};
}

// The fixtures' tiny model: Sequential(Conv2d(3, 4, 3, bias=False), BatchNorm2d(4), ReLU(),
// Conv2d(4, 2, 1)), as in tools/make_fixtures.py.
std::shared_ptr<Sequential> tiny_model() {
    return std::make_shared<Sequential>(std::vector<std::shared_ptr<Module>>{
        std::make_shared<Conv2d>(3, 4, 3, 1, 0, 1, 1, false), std::make_shared<BatchNorm2d>(4),
        std::make_shared<ReLU>(), std::make_shared<Conv2d>(4, 2, 1)});
}

// ResNet-18 with the deterministic weights (seed 2024) the other tests use.
StateDict resnet18_state() {
    auto model = models::resnet18();
    fill_deterministic(*model, 2024);
    return model->state_dict();
}

}  // namespace

TEST_CASE("pth: torch-written zip and legacy files hold exactly torch's values") {
    const StateDict expected = load(pth_fixture("small_expected.safetensors"));
    REQUIRE(expected.size() == 15);
    for (const char* name : {"small_zip.pth", "small_zip_proto4.pth", "small_zip_proto5.pth", "small_legacy.pth"})
        require_same_state(load(pth_fixture(name)), expected, name);
}

TEST_CASE("pth: views keep their offsets and strides, share storage and borrow the mapped file") {
    const StateDict s = load(pth_fixture("small_zip.pth"));
    const Tensor& base = s.at("shared.base");
    REQUIRE(base.shape() == Shape{6, 8});
    for (const char* view : {"view.rows", "view.transposed", "view.column", "view.strided"}) {
        INFO(view);
        REQUIRE(s.at(view).storage() == base.storage());  // one storage, as torch saved it
    }
    REQUIRE(s.at("view.rows").byte_offset() == 16 * 4);
    REQUIRE(s.at("view.transposed").strides() == Shape{1, 8});
    REQUIRE(s.at("view.column").byte_offset() == 5 * 4);
    REQUIRE(s.at("view.column").strides() == Shape{8});
    REQUIRE(s.at("view.strided").strides() == Shape{16, 3});
    REQUIRE(s.at("channels_last").strides() == Shape{60, 1, 15, 3});
    REQUIRE(s.at("expand").strides() == Shape{0, 1});
    REQUIRE(s.at("bn.num_batches_tracked").dtype() == DType::Int64);
    REQUIRE(s.at("bn.num_batches_tracked").item_at({}) == 17);
    REQUIRE(s.at("half").dtype() == DType::Float16);
    REQUIRE(s.at("bfloat16").dtype() == DType::BFloat16);
    REQUIRE(s.at("empty").shape() == Shape{0, 4});
    // Zip entries are 64-byte aligned: every storage is borrowed from the mapping, not copied.
    for (const auto& [key, t] : s) {
        INFO(key);
        REQUIRE_FALSE(t.storage()->owns_memory());
    }
    // Legacy files place storages at arbitrary offsets: misaligned ones are copied, once each.
    const StateDict legacy = load(pth_fixture("small_legacy.pth"));
    REQUIRE(legacy.at("view.transposed").storage() == legacy.at("shared.base").storage());
}

TEST_CASE("pth: checkpoints as people save them load the state_dict they hold") {
    const StateDict expected = load(pth_fixture("tiny_expected.safetensors"));
    REQUIRE(expected.keys() == std::vector<std::string>{"0.weight", "1.weight", "1.bias", "1.running_mean",
                                                        "1.running_var", "1.num_batches_tracked", "3.weight", "3.bias"});
    // bare state_dict (zip and legacy), DataParallel's "module." keys, {'state_dict': ...} with
    // DataParallel keys, an optimizer and a tensor beside it, {'model': ...} with an
    // argparse.Namespace and a NumPy scalar beside it, {'model_state_dict': ...} (legacy).
    for (const char* name : {"tiny_model.pth", "tiny_model_legacy.pth", "tiny_dataparallel.pth",
                             "ckpt_state_dict.pth", "ckpt_model.pth", "ckpt_model_state_dict_legacy.pth"}) {
        const StateDict s = load(pth_fixture(name));
        require_same_state(s, expected, name);
        auto model = tiny_model();
        model->load_state_dict(s);  // strict
        require_same_state(model->state_dict(), expected, std::string(name) + " in a model");
    }
    // nn.Parameter objects (torch._utils._rebuild_parameter): the parameters only.
    const StateDict params = load(pth_fixture("tiny_parameters.pth"));
    REQUIRE(params.keys() == std::vector<std::string>{"0.weight", "1.weight", "1.bias", "3.weight", "3.bias"});
    for (const auto& [key, t] : params) STRATA_REQUIRE_CMP(strata_test::compare_bitwise(t, expected.at(key)), key);
}

TEST_CASE("pth: key options: module. stripped when every key has it, any prefix on request") {
    LoadOptions keep;
    keep.strip_data_parallel = false;
    const StateDict raw = load(pth_fixture("tiny_dataparallel.pth"), keep);
    REQUIRE(raw.keys().front() == "module.0.weight");
    LoadOptions sub;
    sub.strip_prefix = "module.1.";
    REQUIRE(load(pth_fixture("tiny_dataparallel.pth"), sub).keys() ==
            std::vector<std::string>{"weight", "bias", "running_mean", "running_var", "num_batches_tracked"});
    sub.strip_prefix = "backbone.";
    CHECK_THAT(load_error(pth_fixture("tiny_dataparallel.pth"), sub),
               Catch::Contains("no key starts with the prefix 'backbone.'") && Catch::Contains("module.0.weight"));
    // The hint the CLI gives: the prefix under which the model's keys appear.
    REQUIRE(find_key_prefix(raw.keys(), tiny_model()->state_dict().keys()) == "module.");
    REQUIRE(find_key_prefix({"a", "b"}, tiny_model()->state_dict().keys()).empty());
}

TEST_CASE("pth: files strata refuses say why and what to do") {
    CHECK_THAT(load_error(pth_fixture("refuse_whole_model.pth")),
               Catch::Contains("refuse_whole_model.pth") && Catch::Contains("'torch.nn.modules.container.Sequential'") &&
                   Catch::Contains("whole pickled model") && Catch::Contains("model.state_dict()"));
    CHECK_THAT(load_error(pth_fixture("refuse_float64.pth")),
               Catch::Contains("tensor 'w' has dtype float64") && Catch::Contains("float32, float16, bfloat16 and int64"));
    CHECK_THAT(load_error(pth_fixture("refuse_torchscript.pt")), Catch::Contains("TorchScript archive (torch.jit.save)"));
}

TEST_CASE("pth: files from the test writer: zip64, no data descriptor, unaligned data, legacy") {
    StateDict state;
    state.insert("w", strata_test::random_tensor({3, 5}, "w"));
    state.insert("h", strata_test::random_tensor({4}, "h").to(DType::Float16));
    Tensor steps = Tensor::zeros({}, DType::Int64);
    steps.data<int64_t>()[0] = -42;
    state.insert("steps", steps);
    auto roundtrip = [&](const std::string& bytes, const std::string& what) {
        write_bytes(tmp("w.pth"), bytes);
        require_same_state(load(tmp("w.pth")), state, what);
    };
    roundtrip(pth_test::torch_zip(state), "as torch writes it");
    roundtrip(pth_test::torch_zip(state, "resnet18-f37072fd"), "prefix named after the file");
    roundtrip(pth_test::torch_legacy(state), "legacy");
    auto entries = pth_test::torch_zip_entries(state);
    for (auto& e : entries) e.zip64 = true;
    roundtrip(pth_test::make_zip(entries).bytes, "zip64 extra fields");
    for (auto& e : entries) e.zip64 = false, e.flags = 0;
    roundtrip(pth_test::make_zip(entries, /*zip64_end=*/false).bytes, "no data descriptors, no zip64 end");
    for (auto& e : entries) e.align = 1;
    const std::string unaligned = pth_test::make_zip(entries, false).bytes;
    roundtrip(unaligned, "unaligned entries");
    REQUIRE(load(tmp("w.pth")).at("w").storage()->owns_memory());  // copied, not read misaligned
}

TEST_CASE("cli: .pth weights give features bitwise equal to the same weights in safetensors") {
    const StateDict weights = resnet18_state();
    save(weights, tmp("r18.safetensors"));
    write_bytes(tmp("r18.pth"), pth_test::torch_zip(weights, "r18"));
    write_bytes(tmp("r18_no_extension"), pth_test::torch_zip(weights, "r18"));
    write_bytes(tmp("r18_legacy.pth"), pth_test::torch_legacy(weights));
    StateDict dp;
    for (const auto& [k, t] : weights) dp.insert("module." + k, t);
    write_bytes(tmp("r18_dp.pth"), pth_test::torch_zip(dp));

    const std::string args = " --layers layer1:feat1,layer3:feat2,fc:logits --threads 2 --out ";
    const Run ref = run_cli("features --weights " + tmp("r18.safetensors") + args + tmp("ref.safetensors"));
    REQUIRE(ref.rc == 0);
    const std::string ref_bytes = slurp(tmp("ref.safetensors"));
    REQUIRE(ref_bytes.size() > 1000);
    for (const char* name : {"r18.pth", "r18_no_extension", "r18_legacy.pth", "r18_dp.pth"}) {
        INFO(name);
        std::remove(tmp("out.safetensors").c_str());
        const Run r = run_cli("features --weights " + tmp(name) + args + tmp("out.safetensors"));
        INFO(r.err);
        REQUIRE(r.rc == 0);
        REQUIRE(r.out == ref.out);
        REQUIRE(slurp(tmp("out.safetensors")) == ref_bytes);  // bit for bit
    }
    // convert: the safetensors it writes holds the same tensors.
    const Run c = run_cli("convert " + tmp("r18_legacy.pth") + " " + tmp("converted.safetensors"));
    INFO(c.err);
    REQUIRE(c.rc == 0);
    REQUIRE(c.out.find("122 tensors") != std::string::npos);
    Metadata meta;
    require_same_state(load(tmp("converted.safetensors"), &meta), weights, "converted");
    REQUIRE(meta.at("format") == "pt");
}

TEST_CASE("cli: a .pth with a wrong-shaped tensor and a missing key: one error naming both, exit 2") {
    StateDict bad;
    for (const auto& [k, t] : resnet18_state())
        if (k != "layer2.1.bn1.bias") bad.insert(k, k == "layer2.0.conv1.weight" ? Tensor::zeros({128, 64, 1, 1}) : t);
    write_bytes(tmp("bad.pth"), pth_test::torch_zip(bad));
    std::remove(tmp("never.safetensors").c_str());
    const Run r = run_cli("features --weights " + tmp("bad.pth") + " --out " + tmp("never.safetensors"));
    INFO(r.err);
    REQUIRE(r.rc == 2);
    REQUIRE(r.out.empty());
    REQUIRE(r.err.rfind("error: ", 0) == 0);
    REQUIRE(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    REQUIRE(r.err.find("missing keys (1): layer2.1.bn1.bias") != std::string::npos);
    REQUIRE(r.err.find("layer2.0.conv1.weight (expected [128, 64, 3, 3], found [128, 64, 1, 1])") != std::string::npos);
    REQUIRE_FALSE(std::ifstream(tmp("never.safetensors")).good());
}

TEST_CASE("cli: prefixed keys: the error names --strip-prefix, which then loads them") {
    StateDict wrapped;
    for (const auto& [k, t] : resnet18_state()) wrapped.insert("backbone.body." + k, t);
    write_bytes(tmp("bb.pth"), pth_test::torch_zip(wrapped));
    Run r = run_cli("features --weights " + tmp("bb.pth"));
    REQUIRE(r.rc == 2);
    REQUIRE(r.err.find("add --strip-prefix backbone.body.") != std::string::npos);
    r = run_cli("features --weights " + tmp("bb.pth") + " --strip-prefix backbone.body.");
    INFO(r.err);
    REQUIRE(r.rc == 0);
    REQUIRE(r.out == "[('feat1', [1, 64, 56, 56]), ('feat2', [1, 256, 14, 14])]\n");
}

TEST_CASE("cli: convert refuses a non-safetensors output name and bad input, writing nothing") {
    std::remove(tmp("x.pth").c_str());
    Run r = run_cli("convert " + pth_fixture("tiny_model.pth") + " " + tmp("x.pth"));
    REQUIRE(r.rc == 2);
    REQUIRE(r.err.find("name the output *.safetensors") != std::string::npos);
    REQUIRE_FALSE(std::ifstream(tmp("x.pth")).good());
    r = run_cli("convert " + pth_fixture("refuse_whole_model.pth") + " " + tmp("x.safetensors"));
    REQUIRE(r.rc == 2);
    REQUIRE(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    REQUIRE(r.err.find("whole pickled model") != std::string::npos);
    REQUIRE_FALSE(std::ifstream(tmp("x.safetensors")).good());
    r = run_cli("convert " + pth_fixture("tiny_dataparallel.pth"));
    REQUIRE(r.rc == 2);
    r = run_cli("convert " + pth_fixture("ckpt_state_dict.pth") + " " + tmp("tiny.safetensors"));
    REQUIRE(r.rc == 0);
    require_same_state(load(tmp("tiny.safetensors")), load(pth_fixture("tiny_expected.safetensors")), "convert");
}
