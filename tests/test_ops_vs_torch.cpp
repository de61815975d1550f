// Every op against PyTorch: the cases of tests/fixtures/ops.safetensors (written by
// tools/make_fixtures.py from torch.nn modules in eval mode; schema in tests/fixtures/README.md)
// rebuilt as strata layers from their torch arguments, run on both backends.
#include <map>
#include <memory>
#include <set>

#include <nlohmann/json.hpp>

#include "test_util.h"

using namespace strata;
using strata_test::compare;
using strata_test::compare_bitwise;
using json = nlohmann::json;

namespace {

Size2 pair_of(const json& v) { return Size2(v.at(0).get<int64_t>(), v.at(1).get<int64_t>()); }

// The case's tensor `<case>.<suffix>`; records that it was used.
Tensor take(const StateDict& file, const std::string& name, const std::string& suffix,
            std::set<std::string>* used) {
    const std::string key = name + "." + suffix;
    const Tensor* t = file.find(key);
    INFO("fixture tensor " << key);
    REQUIRE(t != nullptr);
    used->insert(key);
    return *t;
}

struct Built {
    std::shared_ptr<Module> module;
    bool exact = false;  // selects or moves values only: must match torch bit for bit
};

// The strata layer for one case, its parameters loaded (strictly) from the fixture.
Built build(const json& c, const StateDict& file, std::set<std::string>* used) {
    const std::string name = c.at("name").get<std::string>();
    const std::string op = c.at("op").get<std::string>();
    Built b;
    StateDict params;
    auto param = [&](const std::string& suffix) { params.insert(suffix, take(file, name, suffix, used)); };
    if (op == "conv2d") {
        const bool bias = c.at("bias").get<bool>();
        b.module = std::make_shared<Conv2d>(c.at("in_channels").get<int64_t>(), c.at("out_channels").get<int64_t>(),
                                            pair_of(c.at("kernel_size")), pair_of(c.at("stride")),
                                            pair_of(c.at("padding")), pair_of(c.at("dilation")),
                                            c.at("groups").get<int64_t>(), bias);
        param("weight");
        if (bias) param("bias");
    } else if (op == "batch_norm2d") {
        b.module = std::make_shared<BatchNorm2d>(c.at("num_features").get<int64_t>(), c.at("eps").get<double>());
        for (const char* s : {"weight", "bias", "running_mean", "running_var"}) param(s);
        params.insert("num_batches_tracked", Tensor::zeros({}, DType::Int64));  // not stored
    } else if (op == "relu") {
        b.module = std::make_shared<ReLU>();
        b.exact = true;
    } else if (op == "max_pool2d") {
        b.module = std::make_shared<MaxPool2d>(pair_of(c.at("kernel_size")), pair_of(c.at("stride")),
                                               pair_of(c.at("padding")), pair_of(c.at("dilation")),
                                               c.at("ceil_mode").get<bool>());
        b.exact = true;
    } else if (op == "adaptive_avg_pool2d") {
        b.module = std::make_shared<AdaptiveAvgPool2d>(pair_of(c.at("output_size")));
    } else if (op == "linear") {
        const bool bias = c.at("bias").get<bool>();
        b.module = std::make_shared<Linear>(c.at("in_features").get<int64_t>(), c.at("out_features").get<int64_t>(), bias);
        param("weight");
        if (bias) param("bias");
    } else if (op == "flatten") {
        b.module = std::make_shared<Flatten>(c.at("start_dim").get<int64_t>(), c.at("end_dim").get<int64_t>());
        b.exact = true;
    } else {
        FAIL("case " << name << ": unknown op '" << op << "'");
    }
    b.module->load_state_dict(params, /*strict=*/true);
    return b;
}

}  // namespace

TEST_CASE("ops vs torch: every case in fixtures/ops.safetensors, both backends") {
    Metadata meta;
    StateDict file;
    // The fixture must be there: a missing file fails here, it does not skip the test.
    REQUIRE_NOTHROW(file = load(strata_test::fixture("ops.safetensors"), &meta));
    REQUIRE(meta.count("cases") == 1);
    const json cases = json::parse(meta.at("cases"));
    REQUIRE(cases.is_array());
    // tests/fixtures/README.md documents 37 cases; fewer means a truncated or wrong file.
    REQUIRE(cases.size() >= 37);

    std::set<std::string> used;
    std::map<std::string, int> checked_by_op;
    size_t checked = 0;
    for (const json& c : cases) {
        const std::string name = c.at("name").get<std::string>();
        const std::string op = c.at("op").get<std::string>();
        INFO("case " << name << " (" << op << "): " << c.dump());
        const Built b = build(c, file, &used);
        const Tensor x = take(file, name, "input", &used);
        const Tensor expected = take(file, name, "output", &used);
        for (const RunOptions& options : {RunOptions{Backend::Reference, 1}, RunOptions{Backend::Cpu, 1},
                                          RunOptions{Backend::Cpu, 3}}) {
            INFO("backend " << backend_name(options.backend) << ", threads " << options.num_threads);
            const Tensor y = (*b.module)(x, options);
            if (b.exact) {
                const auto cmp = compare_bitwise(y, expected);
                INFO(cmp.message);
                CHECK(cmp.ok);
            } else {
                // Tolerance: max|strata - torch| <= 1e-4 * max|torch| (tests/fixtures/README.md).
                // torch sums in float32 in its own order; strata in double (reference) or float32
                // (cpu). The longest reduction here is 512 terms: rounding leaves ~sqrt(K) * 2^-24
                // ~ 1e-6 relative (measured: below 1e-6), while a wrong tap, index or formula
                // moves outputs by O(1e-1) relative. 1e-4 sits between with margin both ways.
                const auto cmp = compare(y, expected, 1e-4);
                INFO(cmp.message);
                CHECK(cmp.ok);
            }
        }
        ++checked;
        ++checked_by_op[op];
    }
    // Every listed case was checked, every op kind is present, and no fixture tensor was left
    // unused (a case missing from the metadata list would leave its tensors behind).
    REQUIRE(checked == cases.size());
    for (const char* op : {"conv2d", "batch_norm2d", "relu", "max_pool2d", "adaptive_avg_pool2d", "linear", "flatten"}) {
        INFO("op " << op);
        CHECK(checked_by_op[op] >= 1);
    }
    std::vector<std::string> unused;
    for (const auto& item : file)
        if (!used.count(item.first)) unused.push_back(item.first);
    INFO("unused fixture tensors: " << unused.size() << (unused.empty() ? "" : ", first " + unused.front()));
    CHECK(unused.empty());
}
