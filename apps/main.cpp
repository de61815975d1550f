// strata: the command-line tool.
//   strata features --model resnet18 [--weights F] [--input X.npy] [--layers a:x,b:y] [--out O.safetensors] [--threads N]
//   strata layers   --model resnet18 [--size 224] [--all]
//   strata convert  IN OUT.safetensors [--strip-prefix P]
// --weights and convert's IN take safetensors or torch.save (.pth) files, told apart by content.
// Any bad input or usage exits 2 with one line "error: ..." on stderr; outputs are written
// atomically, so a failed run leaves no partial file.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <limits>
#include <sstream>

#include "bench_profile.h"
#include "io/mapped_file.h"
#include "device_options.h"
#include "strata.h"

namespace {

const char* kDefaultLayers = "layer1:feat1,layer3:feat2";

std::string one_line(std::string s) {
    for (char& c : s)
        if (c == '\n' || c == '\r') c = ' ';
    return s;
}

// "layer1:feat1,layer3:feat2" -> {{"layer1","feat1"},{"layer3","feat2"}}; "layer1" alone keeps
// its own name. Duplicates are left for the getter to report.
strata::ReturnLayers parse_layers(const std::string& spec) {
    strata::ReturnLayers out;
    STRATA_CHECK(!spec.empty(), "--layers is empty; expected e.g. ", kDefaultLayers);
    std::stringstream ss(spec);
    std::string item;
    while (std::getline(ss, item, ',')) {
        STRATA_CHECK(!item.empty(), "--layers '", spec, "' has an empty entry");
        const size_t colon = item.find(':');
        std::string layer = item.substr(0, colon);
        std::string name = colon == std::string::npos ? layer : item.substr(colon + 1);
        STRATA_CHECK(!layer.empty(), "--layers entry '", item, "' has no layer name before ':'");
        STRATA_CHECK(!name.empty(), "--layers entry '", item, "' has no new name after ':'");
        STRATA_CHECK(name.find(':') == std::string::npos, "--layers entry '", item,
                     "' has more than one ':'");
        out.emplace_back(layer, name);
    }
    STRATA_CHECK(spec.back() != ',', "--layers '", spec, "' ends with ','");
    return out;
}

// Notes go to stderr only once the command has succeeded, so a failure prints one line.
std::shared_ptr<strata::models::ResNet> make_model(const std::string& name, const std::string& weights,
                                                   const strata::LoadOptions& load_options, std::string& notes,
                                                   double* load_ms = nullptr) {
    // With a weight file, every parameter is loaded (strictly): torchvision's init is skipped.
    auto model = strata::models::create(name, 1000, 0,
                                        weights.empty() ? strata::models::Init::Torchvision : strata::models::Init::None);
    if (weights.empty()) {
        notes += "note: no --weights given: " + name +
                 " has untrained weights (torchvision-style initialisation, seed 0)\n";
        return model;
    }
    const auto load_start = std::chrono::steady_clock::now();  // for bench's load_ms
    const strata::StateDict state = strata::load(weights, load_options);
    try {
        // Shared: the parameters stay in the mapped file (no copy); see strata::LoadMode.
        model->load_state_dict(state, true, strata::LoadMode::Share);
    } catch (const strata::Error& e) {
        // When the keys only differ by a prefix (a wrapped or sub-model checkpoint), say so.
        const std::string prefix = strata::find_key_prefix(state.keys(), model->state_dict().keys());
        if (!prefix.empty())
            STRATA_FAIL(weights, ": the file's keys start with '", prefix, "': add --strip-prefix ", prefix,
                        " to load them (", e.what(), ")");
        STRATA_FAIL(weights, ": ", e.what());
    }
    if (load_ms)
        *load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - load_start).count();
    return model;
}

// A seeded uniform [0, 1) input of shape [1, 3, 224, 224].
strata::Tensor default_input() {
    strata::Tensor x = strata::Tensor::empty({1, 3, 224, 224});
    const strata::DetStream stream(0, "input");
    float* p = x.data<float>();
    for (int64_t i = 0; i < x.numel(); ++i) p[i] = stream.uniform(static_cast<uint64_t>(i), 0.0, 1.0);
    return x;
}

// CLI11's PositiveNumber takes "1.5" for an int and words a refusal "not in range 0.000000 to
// 1.797...e308"; counts are checked here instead: "--threads: expected a whole number from 1 to
// 2147483647, got 'abc'".
const CLI::Validator kPositiveCount(
    [](std::string& text) -> std::string {
        size_t used = 0;
        long long value = 0;
        try {
            value = std::stoll(text, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (used == 0 || used != text.size() || value < 1 || value > std::numeric_limits<int>::max())
            return "expected a whole number from 1 to " + std::to_string(std::numeric_limits<int>::max()) +
                   ", got '" + text + "'";
        return "";
    },
    "POSITIVE");

std::string python_list(const strata::OrderedDict<strata::Tensor>& out) {
    std::string s = "[";
    for (size_t i = 0; i < out.size(); ++i)
        s += (i ? ", " : "") + std::string("('") + out[i].first + "', " + strata::shape_str(out[i].second.shape()) + ")";
    return s + "]";
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"strata: CNN feature extraction (torchvision's IntermediateLayerGetter) in C++"};
    app.require_subcommand(1);

    std::string model_name = "resnet18", weights, input, layers = kDefaultLayers, out_path;
    strata::LoadOptions load_options;
    const char* kStripHelp = "keep only weight keys starting with this prefix, minus the prefix "
                             "(\"module.\" is removed automatically when every key has it)";
    int threads = 0;
    int64_t size = 224;
    bool all = false;

    auto* features = app.add_subcommand("features", "run the model up to the requested layers and report their outputs");
    features->add_option("--model", model_name, "model name (resnet18, resnet34, resnet50, ...)");
    features->add_option("--weights", weights, "weight file: .safetensors or torch.save .pth (format read from the content)");
    features->add_option("--strip-prefix", load_options.strip_prefix, kStripHelp);
    features->add_option("--input", input, "input: float32 C-order NCHW .npy (default: seeded random 1x3x224x224)");
    features->add_option("--layers", layers, "child:new_name pairs, comma-separated")->capture_default_str();
    features->add_option("--out", out_path, "write the outputs as F32 tensors to this .safetensors file");
    features->add_option("--threads", threads, "CPU threads (default: all)")->check(kPositiveCount);
    strata_cli::DeviceOptions device;
    device.add_to(features, false);
    // One call: Winograd's weight transform would cost more than it saves, and memory.
    std::string features_packing = "lean", bench_packing = "fast";
    const char* kPackingHelp = "cpu: lean packs weights for the direct kernel only (their own size); fast also "
                               "keeps Winograd-transformed 3x3 weights (1.8-4x their size) where Winograd is faster";
    features->add_option("--packing", features_packing, kPackingHelp)
        ->check(CLI::IsMember({"lean", "fast"}))->capture_default_str();

    std::string bench_layers;
    int64_t batch = 1;
    int warmup = 3, iters = 30;
    bool profile = false;
    double peak_gflops = 0;
    auto* bench = app.add_subcommand("bench", "time forward calls (model loaded once; only forward is timed)");
    bench->add_option("--model", model_name, "model name");
    bench->add_option("--weights", weights, "weight file, .safetensors or .pth (default: untrained weights)");
    bench->add_option("--strip-prefix", load_options.strip_prefix, kStripHelp);
    bench->add_option("--layers", bench_layers, "child:new_name pairs (default: the full model)");
    bench->add_option("--batch", batch, "batch size")->check(kPositiveCount)->capture_default_str();
    bench->add_option("--size", size, "input height and width")->check(kPositiveCount)->capture_default_str();
    bench->add_option("--threads", threads, "CPU threads (default: all)")->check(kPositiveCount);
    bench->add_option("--warmup", warmup, "untimed calls first (at least one is made: the first call, reported as first_ms)")
        ->check(CLI::NonNegativeNumber)->capture_default_str();
    bench->add_option("--iters", iters, "timed calls")->check(kPositiveCount)->capture_default_str();
    device.add_to(bench, true);
    bench->add_option("--packing", bench_packing, kPackingHelp)->check(CLI::IsMember({"lean", "fast"}))
        ->capture_default_str();
    bench->add_flag("--profile", profile, "also time the model truncated after each direct child (same warm-up and "
                    "iterations) and report each child's time, share, GFLOP and GFLOP/s");
    bench->add_option("--peak-gflops", peak_gflops, "fp32 peak of this machine at --threads (benchmarks/fma_probe), "
                      "for --profile's share of peak")->check(CLI::NonNegativeNumber);

    auto* layers_cmd = app.add_subcommand("layers", "list the model's children and their output shapes");
    layers_cmd->add_option("--model", model_name, "model name");
    layers_cmd->add_option("--size", size, "input height and width")->check(kPositiveCount)->capture_default_str();
    layers_cmd->add_flag("--all", all, "list every module path, not only direct children");

    std::string convert_in, convert_out;
    auto* convert = app.add_subcommand("convert", "convert a weight file (.pth or .safetensors) to safetensors");
    convert->add_option("input", convert_in, "weight file: torch.save .pth (zip or legacy) or .safetensors")->required();
    convert->add_option("output", convert_out, "the safetensors file to write (written atomically)")->required();
    convert->add_option("--strip-prefix", load_options.strip_prefix, kStripHelp);

    if (argc > 1 && argv[1][0] != '-' && std::string(argv[1]) != "features" && std::string(argv[1]) != "layers" &&
        std::string(argv[1]) != "bench" && std::string(argv[1]) != "convert") {
        std::cerr << "error: unknown command '" << argv[1] << "'; commands: features, layers, bench, convert (see --help)\n";
        return 2;
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::cerr << "error: " << one_line(e.what()) << "\n";
        return 2;
    }

    try {
        strata::RunOptions options;
        options.num_threads = threads;
        const std::string& packing = *bench ? bench_packing : features_packing;
        options.packing = packing == "lean" ? strata::WeightPacking::Lean : strata::WeightPacking::Fast;
        device.configure(options);
        if (*features) {
            const strata::ReturnLayers return_layers = parse_layers(layers);
            if (!out_path.empty()) strata::check_writable(out_path);  // fail before the work, not after
            std::string notes;
            auto model = make_model(model_name, weights, load_options, notes);
            const strata::IntermediateLayerGetter getter(*model, return_layers);
            device.move(*model);
            const strata::Tensor x = input.empty() ? default_input() : strata::load_npy(input);
            STRATA_CHECK(x.dim() == 4, (input.empty() ? "input" : input), ": expected an NCHW array, got shape ",
                         strata::shape_str(x.shape()));
            const auto out = device.to_host(getter(device.input(x), options));
            if (!out_path.empty()) {
                strata::StateDict state;
                for (const auto& [name, t] : out) state.insert(name, t);
                strata::save(state, out_path, {{"model", model_name}, {"layers", layers}});
            }
            std::cout << python_list(out) << "\n";
            std::cerr << notes;
        } else if (*bench) {
            std::string notes;
            double load_ms = -1;  // strata::load + load_state_dict; stays -1 without --weights
            auto model = make_model(model_name, weights, load_options, notes, &load_ms);
            device.move(*model);
            const strata::Tensor x = device.input(strata::Tensor::full({batch, 3, size, size}, 0.5f));
            std::unique_ptr<strata::IntermediateLayerGetter> getter;
            if (!bench_layers.empty())
                getter = std::make_unique<strata::IntermediateLayerGetter>(*model, parse_layers(bench_layers));
            const auto call = device.timed([&] {
                if (getter) (*getter)(x, options);
                else model->forward(x, options);
            });
            auto ms_since = [](std::chrono::steady_clock::time_point t0) {
                return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
            };
            // The first call (weight packing, first allocations) is timed alone as first_ms; it is
            // the first warm-up call.
            const auto first_start = std::chrono::steady_clock::now();
            call();
            const double first_ms = ms_since(first_start);
            for (int i = 1; i < warmup; ++i) call();
            std::vector<double> ms;
            for (int i = 0; i < iters; ++i) {
                const auto t0 = std::chrono::steady_clock::now();
                call();
                ms.push_back(ms_since(t0));
            }
            const strata_cli::TimingStats stats = strata_cli::summarize(ms);
            char load_field[32] = "null";
            if (load_ms >= 0) std::snprintf(load_field, sizeof load_field, "%.3f", load_ms);
            std::string profile_fields;
            if (profile) {
                profile_fields = ", \"peak_gflops\": " + (peak_gflops > 0 ? std::to_string(peak_gflops) : "null") +
                                 ", \"profile\": " +
                                 strata_cli::profile_children_json(*model, x, options, warmup, iters, peak_gflops);
            }
            std::printf("{\"model\": \"%s\", \"layers\": \"%s\", \"batch\": %lld, \"size\": %lld, "
                        "\"threads\": %d, \"warmup\": %d, \"iters\": %d, \"median_ms\": %.3f, \"min_ms\": %.3f, "
                        "\"mean_ms\": %.3f, \"images_per_s\": %.2f, \"first_ms\": %.3f, \"load_ms\": %s%s}\n",
                        model_name.c_str(), bench_layers.empty() ? "(full model)" : bench_layers.c_str(),
                        static_cast<long long>(batch), static_cast<long long>(size), options.threads(),
                        std::max(warmup, 1), iters, stats.median_ms, stats.min_ms, stats.mean_ms,
                        1000.0 * static_cast<double>(batch) / stats.median_ms, first_ms, load_field,
                        profile_fields.c_str());
            notes += device.note();  // after the calls: what the CUDA caches hold
            std::cerr << notes;
        } else if (*convert) {
            const std::string suffix = ".safetensors";
            STRATA_CHECK(convert_out.size() > suffix.size() &&
                             convert_out.compare(convert_out.size() - suffix.size(), suffix.size(), suffix) == 0,
                         convert_out, ": convert writes safetensors; name the output *.safetensors");
            strata::Metadata metadata;
            const strata::StateDict state = strata::load(convert_in, load_options, &metadata);
            metadata["format"] = "pt";  // what safetensors files of torch weights declare
            metadata["converted_by"] = "strata convert";
            strata::save(state, convert_out, metadata);
            int64_t values = 0;
            for (const auto& item : state) values += item.second.numel();
            std::cout << "wrote " << convert_out << ": " << state.size() << " tensors, " << values << " values\n";
        } else if (*layers_cmd) {
            auto model = strata::models::create(model_name);
            if (all) {
                for (const auto& [path, m] : model->named_modules())
                    if (!path.empty())
                        std::cout << path << "  " << m->type_name()
                                  << (m->extra_repr().empty() ? "" : "(" + m->extra_repr() + ")") << "\n";
            } else {
                strata::ReturnLayers every;
                for (const auto& item : model->named_children()) every.emplace_back(item.first, item.first);
                const strata::IntermediateLayerGetter getter(*model, every);
                const auto out = getter(strata::Tensor::zeros({1, 3, size, size}), options);
                for (const auto& [name, t] : out)
                    std::cout << name << "  " << model->child(name)->type_name() << "  "
                              << strata::shape_str(t.shape()) << "\n";
            }
        }
    } catch (const std::bad_alloc&) {
        std::cerr << "error: out of memory\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "error: " << one_line(e.what()) << "\n";
        return 2;
    }
    return 0;
}
