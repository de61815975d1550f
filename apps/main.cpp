// strata: the command-line tool.
//   strata features --model resnet18 [--dilation 0,1,1] [--weights F] [--input X.npy] [--layers a:x,b:y] [--out O.safetensors|-] [--threads N]
//                   [--stats] [--json] [--save-maps DIR]   (apps/outputs.h)
//   strata layers   --model resnet18 [--dilation 0,1,1] [--size 224] [--all] [--json]
//   strata bench    --model resnet18 [--dilation 0,1,1] [--batch 8] [--threads N] [--profile]   (always JSON)
//   strata convert  IN OUT.safetensors [--strip-prefix P] [--json]
//   strata classify --input photo.jpg|folder [--model resnet18] [--weights F] [--top 5] [--json]
// --input of features and classify takes JPEG/PNG photos (torchvision's ImageNet preprocessing by
// default: --resize, --crop, --interpolation, --mean, --std, --no-normalize) or float32 .npy arrays.
// --weights and convert's IN take safetensors or torch.save (.pth) files, told apart by content.
// Any bad input or usage exits 2 with one line "error: ..." on stderr (never JSON, even under
// --json); outputs are written
// atomically, so a failed run leaves no partial file.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <limits>
#include <sstream>

#include "batch.h"
#include "bench_profile.h"
#include "io/mapped_file.h"
#include "device_options.h"
#include "image_input.h"
#include "outputs.h"
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

// "0,1,1" -> {false, true, true}: torchvision's replace_stride_with_dilation for layer2..layer4.
std::array<bool, 3> parse_dilation(const std::string& spec) {
    std::vector<std::string> items(1);
    for (char c : spec) {
        if (c == ',') items.emplace_back();
        else items.back() += c;
    }
    STRATA_CHECK(items.size() == 3, "--dilation '", spec, "': expected three comma-separated 0/1 values "
                 "(replace_stride_with_dilation for layer2, layer3, layer4), e.g. 0,1,1; got ", items.size());
    std::array<bool, 3> out{};
    for (size_t i = 0; i < 3; ++i) {
        STRATA_CHECK(items[i] == "0" || items[i] == "1", "--dilation '", spec, "': each value must be 0 or 1, got '",
                     items[i], "'");
        out[i] = items[i] == "1";
    }
    return out;
}

// --dilation's value when it is not given (any given value, "" included, is parsed).
const char* const kNoDilation = "\x01";

// The model by name, with --dilation (kNoDilation for none) applied.
std::shared_ptr<strata::models::ResNet> create_model(const std::string& name, const std::string& dilation,
                                                     strata::models::Init init) {
    strata::models::ResNetOptions options;
    options.init = init;
    const bool given = dilation != kNoDilation;
    if (given) options.replace_stride_with_dilation = parse_dilation(dilation);
    try {
        return strata::models::create(name, options);
    } catch (const strata::Error& e) {
        if (!given || std::string(e.what()).find("dilation") == std::string::npos) throw;
        STRATA_FAIL("--dilation ", dilation, ": ", e.what());
    }
}

// The children a run uses: those the getter for `request` keeps (up to the last requested one),
// or every child when there is no request (the full model). Validates the request.
std::vector<std::string> kept_children(const strata::Module& model, const strata::ReturnLayers* request) {
    if (!request) return model.named_children().keys();
    return strata::IntermediateLayerGetter(model, *request).named_children().keys();
}

// Notes go to stderr only once the command has succeeded, so a failure prints one line.
// The file is loaded strictly for the children that run (strata::load_for_request): keys of the
// children after the last requested one (fc, ...) may be absent, num_batches_tracked may be absent.
std::shared_ptr<strata::models::ResNet> make_model(const std::string& name, const std::string& dilation,
                                                   const std::string& weights, const strata::LoadOptions& load_options,
                                                   const strata::ReturnLayers* request, std::string& notes,
                                                   double* load_ms = nullptr) {
    // With a weight file, every parameter that runs is loaded: torchvision's init is skipped.
    auto model = create_model(name, dilation, weights.empty() ? strata::models::Init::Torchvision
                                                              : strata::models::Init::None);
    const std::vector<std::string> kept = kept_children(*model, request);
    if (weights.empty()) {
        notes += "note: no --weights given: " + name +
                 " has untrained weights (torchvision-style initialisation, seed 0)\n";
        return model;
    }
    const auto load_start = std::chrono::steady_clock::now();  // for bench's load_ms
    const strata::StateDict state = strata::load(weights, load_options);
    try {
        // Shared: the parameters stay in the mapped file (no copy); see strata::LoadMode.
        strata::load_for_request(*model, state, kept, strata::LoadMode::Share);
    } catch (const strata::Error& e) {
        // When the keys only differ by a prefix (a wrapped or sub-model checkpoint), say which
        // --strip-prefix loads the file, after checking that it does.
        const std::string prefix = strata::find_key_prefix(state.keys(), strata::required_keys(*model, kept));
        if (!prefix.empty()) {
            for (const std::string& candidate : {load_options.strip_prefix + prefix,
                                                 "module." + load_options.strip_prefix + prefix}) {
                strata::LoadOptions retry = load_options;
                retry.strip_prefix = candidate;
                try {
                    if (!strata::check_for_request(*model, strata::load(weights, retry), kept).empty()) continue;
                } catch (const strata::Error&) {
                    continue;
                }
                STRATA_FAIL(weights, ": the file's keys start with '", candidate, "': add --strip-prefix ", candidate,
                            " to load them (", e.what(), ")");
            }
        }
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

// --threads: a whole number from 1 to strata::max_threads() (OpenMP's thread limit and 16 per
// core): libgomp crashes on 100000 and exits on its own above its limit.
const CLI::Validator kThreadCount(
    [](std::string& text) -> std::string {
        const std::string positive = kPositiveCount(text);
        if (!positive.empty()) return positive;
        const long long value = std::stoll(text);
        if (value > strata::max_threads())
            return "at most " + std::to_string(strata::max_threads()) + " threads (" + strata::max_threads_reason() +
                   "), got '" + text + "'";
        return "";
    },
    "THREADS");

// The outputs must not replace an input (directly, through a symbolic link or a hard link).
void check_not_an_input(const std::string& out, const std::string& out_option,
                        std::initializer_list<std::pair<const char*, const std::string*>> inputs) {
    for (const auto& [option, path] : inputs)
        if (!path->empty() && strata::same_file(out, *path))
            STRATA_FAIL(out_option, " ", out, " is the same file as ", option, " ", *path,
                        "; refusing to overwrite an input");
}

// --max-activation-mb: RunOptions::max_activation_bytes in MiB (0: no limit).
void set_activation_limit(strata::RunOptions& options, int64_t mb, const CLI::Option* given) {
    if (!given || given->count() == 0) return;
    STRATA_CHECK(mb >= 0 && mb <= (std::numeric_limits<int64_t>::max() >> 20), "--max-activation-mb: expected 0 (no "
                 "limit) or a number of MiB up to ", std::numeric_limits<int64_t>::max() >> 20, ", got ", mb);
    options.max_activation_bytes = mb << 20;
}

// The options of a features or bench call, from its flags (device last: it may create a context).
strata::RunOptions run_options(int threads, const std::string& packing, const std::string& cpu, int64_t max_activation_mb,
                               const CLI::Option* activation_option, strata_cli::DeviceOptions& device) {
    strata::RunOptions options(strata::Backend::Cpu, threads);
    options.packing = packing == "lean" ? strata::WeightPacking::Lean : strata::WeightPacking::Fast;
    options.cpu = strata::resolve_cpu_level(strata::parse_cpu_level(cpu));  // an unsupported level fails here, once
    set_activation_limit(options, max_activation_mb, activation_option);
    device.configure(options);
    return options;
}

const char* kActivationHelp = "the largest single activation a call may create, in MiB (RunOptions::max_activation_bytes; "
                              "default 16384 = 16 GiB; 0: no limit); a layer refuses a larger one before allocating it";

std::string python_list(const strata::OrderedDict<strata::Tensor>& out) {
    std::string s = "[";
    for (size_t i = 0; i < out.size(); ++i)
        s += (i ? ", " : "") + std::string("('") + out[i].first + "', " + strata::shape_str(out[i].second.shape()) + ")";
    return s + "]";
}


const char* kStripHelp = "keep only weight keys starting with this prefix, minus the prefix "
                         "(\"module.\" is removed automatically when every key has it)";
const char* kCpuHelp = "cpu: the instruction-set level of the CPU kernels: auto (STRATA_CPU, else the best this CPU "
                       "has), avx512, avx2 or baseline";
const char* kPackingHelp = "cpu: lean packs weights for the direct kernel only (their own size); fast also "
                           "keeps Winograd-transformed 3x3 weights (1.8-4x their size) where Winograd is faster";


const char* kDilationHelp = "replace_stride_with_dilation for layer2,layer3,layer4 as three 0/1 values, e.g. 0,1,1 "
                            "(DeepLabV3/FCN); Bottleneck models only";
const char* kModelHelp = "model name: resnet18, resnet34, resnet50, resnet101, resnet152, resnext50_32x4d, "
                         "resnext101_32x8d, resnext101_64x4d, wide_resnet50_2, wide_resnet101_2";

// ---- strata features ---------------------------------------------------------------------------
struct FeaturesCommand {
    std::string model = "resnet18", dilation = kNoDilation, weights, input, layers = kDefaultLayers, out_path;
    std::string packing = "lean";  // one call: Winograd's weight transform would cost more than it saves
    std::string cpu = "auto";
    strata::LoadOptions load;
    int threads = 0;
    int64_t max_activation_mb = 0;
    CLI::Option* out_option = nullptr;
    CLI::Option* activation_option = nullptr;
    CLI::Option* packing_option = nullptr;
    strata_cli::DeviceOptions device;
    strata_cli::Preprocess preprocess;
    strata_cli::BatchFlags batch;  // batch mode: --input is a folder, a glob, @list.txt or -
    strata_cli::OutputFlags outputs;  // --stats, --json, --save-maps

    CLI::App* add_to(CLI::App& app) {
        auto* c = app.add_subcommand("features", "run the model up to the requested layers and report their outputs");
        c->add_option("--model", model, kModelHelp);
        c->add_option("--dilation", dilation, kDilationHelp);
        c->add_option("--weights", weights, "weight file: .safetensors or torch.save .pth (format read from the content); "
                      "loaded strictly for the children that run");
        c->add_option("--strip-prefix", load.strip_prefix, kStripHelp);
        c->add_option("--input", input, "input: a JPEG or PNG photo (preprocessed as torchvision's ImageNet weights "
                      "do, see --resize ...) or a float32 C-order NCHW .npy (default: seeded random 1x3x224x224); "
                      "batch mode: a folder, a glob pattern, @list.txt or - (a list on stdin), written to --out DIR");
        c->add_option("--layers", layers, "child:new_name pairs, comma-separated")->capture_default_str();
        preprocess.add_to(c);
        out_option = c->add_option("--out", out_path, "write the outputs as F32 tensors to this .safetensors file "
                                   "(-: to stdout, binary, and the text report goes to stderr; batch mode: a folder of shards)");
        outputs.add_to(c);
        c->add_option("--threads", threads, "CPU threads (default: all)")->check(kThreadCount);
        activation_option = c->add_option("--max-activation-mb", max_activation_mb, kActivationHelp);
        device.add_to(c, false);
        packing_option = c->add_option("--packing", packing, std::string(kPackingHelp) + " (batch mode: default fast)")
                             ->check(CLI::IsMember({"lean", "fast"}))->capture_default_str();
        c->add_option("--cpu", cpu, kCpuHelp)->check(CLI::IsMember({"auto", "avx512", "avx2", "baseline"}))->capture_default_str();
        batch.add_to(c);
        return c;
    }

    // Batch mode (apps/batch.h): many images, decoded on a pool of threads, written as shards.
    void run_batch() {
        STRATA_CHECK(!outputs.json() && !outputs.stats() && !outputs.maps(), "--stats, --json and --save-maps apply "
                     "to one input; batch mode (--input ", input, ") writes shards to --out DIR");
        if (packing_option->count() == 0) packing = "fast";  // a long run repays Winograd's weight transform
        const strata::RunOptions options =
            run_options(threads, packing, cpu, max_activation_mb, activation_option, device);
        const strata::ReturnLayers return_layers = parse_layers(layers);
        if (dilation != kNoDilation) parse_dilation(dilation);
        for (const auto& item : return_layers) strata::check_tensor_name(item.second, "--layers new name");
        strata_cli::BatchRun run(batch, input, out_path, preprocess.transform(),
                                 {model, dilation == kNoDilation ? "" : dilation, layers, weights});
        std::string notes;
        auto net = make_model(model, dilation, weights, load, &return_layers, notes);
        const strata::IntermediateLayerGetter getter(*net, return_layers);
        device.move(*net);
        run.run(getter, options, device);
        std::cerr << notes;
    }

    void run() {
        if (!input.empty() && strata_cli::is_batch_input(input)) return run_batch();
        const std::vector<std::string> batch_only = batch.given();
        STRATA_CHECK(batch_only.empty(), batch_only.front(), " applies to batch mode (--input a folder, a glob, "
                     "@list.txt or -); --input ", (input.empty() ? "(none)" : input), " is one input");
        const strata::RunOptions options =
            run_options(threads, packing, cpu, max_activation_mb, activation_option, device);
        const strata::ReturnLayers return_layers = parse_layers(layers);
        if (dilation != kNoDilation) parse_dilation(dilation);  // usage errors before any file is touched
        const bool write = out_option->count() > 0;
        const bool to_stdout = write && out_path == "-";  // --out -: the safetensors bytes on stdout
        if (write) {  // fail before the work, not after
            STRATA_CHECK(!out_path.empty(), "--out is empty; give a file name");
            if (!to_stdout) {
                strata::check_writable(out_path);
                check_not_an_input(out_path, "--out", {{"--weights", &weights}, {"--input", &input}});
            }
            for (const auto& item : return_layers)
                strata::check_tensor_name(item.second, "--layers new name");
        }
        outputs.check(return_layers, to_stdout);
        if (preprocess.any_given()) {  // usage errors before any file is read
            STRATA_CHECK(!input.empty(), "--resize, --crop, --interpolation, --mean, --std and --no-normalize apply "
                         "to an image --input; none is given");
            preprocess.transform();
        }
        std::string notes;
        auto net = make_model(model, dilation, weights, load, &return_layers, notes);
        const strata::IntermediateLayerGetter getter(*net, return_layers);
        device.move(*net);
        std::string preprocessing;
        const strata::Tensor x = input.empty() ? default_input() : strata_cli::load_input(input, preprocess, &preprocessing);
        STRATA_CHECK(x.dim() == 4, (input.empty() ? "input" : input), ": expected an NCHW array, got shape ",
                     strata::shape_str(x.shape()));
        outputs.check_map_files(return_layers, x.size(0));
        const auto forward_start = std::chrono::steady_clock::now();
        const auto out = device.to_host(getter(device.input(x), options));
        const double forward_ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - forward_start).count();
        std::string safetensors;  // --out -: written last, after the maps
        if (write) {
            strata::StateDict state;
            for (const auto& [name, t] : out) state.insert(name, t);
            strata::Metadata metadata{{"model", model}, {"layers", layers}};
            if (dilation != kNoDilation) metadata["dilation"] = dilation;
            if (!preprocessing.empty()) metadata["preprocessing"] = preprocessing;
            if (to_stdout) safetensors = strata::safetensors_bytes(state, metadata);
            else strata::save(state, out_path, metadata);
        }
        const strata_cli::OutputFlags::Run run{model, dilation == kNoDilation ? "" : dilation, weights, input,
                                               x.shape(), preprocessing, return_layers, write ? out_path : "",
                                               forward_ms};
        outputs.finish(run, out, python_list(out), to_stdout ? std::cerr : std::cout, notes);
        if (to_stdout) strata_cli::write_stdout(safetensors);
        std::cerr << notes;
    }
};

// ---- strata classify ---------------------------------------------------------------------------
// The full model's logits on each input, softmax, and the top-k ImageNet labels (torchvision's
// names, models/imagenet_classes.h): `model(x).softmax(1).topk(k)` after weights.transforms().
struct ClassifyCommand {
    std::string model = "resnet18", weights, input, packing = "lean", cpu = "auto";
    strata::LoadOptions load;
    int threads = 0, top = 5;
    bool json = false;
    int64_t max_activation_mb = 0;
    CLI::Option* activation_option = nullptr;
    strata_cli::DeviceOptions device;
    strata_cli::Preprocess preprocess;

    CLI::App* add_to(CLI::App& app) {
        auto* c = app.add_subcommand("classify", "top-k ImageNet labels and probabilities (softmax of the logits) for "
                                                 "a photo, a .npy input, or every JPEG/PNG in a folder");
        c->add_option("--input", input, "a JPEG or PNG photo (preprocessed as torchvision's ImageNet weights do), a "
                      "float32 NCHW .npy, or a folder (its JPEG and PNG files, by name)")->required();
        c->add_option("--model", model, kModelHelp);
        c->add_option("--weights", weights, "weight file with an ImageNet fc (1000 classes): .safetensors or torch.save "
                      ".pth, e.g. torchvision's resnet18-f37072fd.pth (default: untrained weights)");
        c->add_option("--strip-prefix", load.strip_prefix, kStripHelp);
        c->add_option("--top", top, "how many labels per input")->check(CLI::Range(1, 1000))->capture_default_str();
        c->add_flag("--json", json, "one JSON document on stdout instead of text");
        c->add_option("--threads", threads, "CPU threads (default: all)")->check(kThreadCount);
        activation_option = c->add_option("--max-activation-mb", max_activation_mb, kActivationHelp);
        device.add_to(c, false);
        c->add_option("--packing", packing, kPackingHelp)->check(CLI::IsMember({"lean", "fast"}))->capture_default_str();
        c->add_option("--cpu", cpu, kCpuHelp)->check(CLI::IsMember({"auto", "avx512", "avx2", "baseline"}))->capture_default_str();
        preprocess.add_to(c);
        return c;
    }

    // The inputs: the file itself, or a folder's regular files that are JPEG or PNG images
    // (told by content; other files are skipped), sorted by name.
    static std::vector<std::string> list_inputs(const std::string& path) {
        std::error_code ec;
        if (!std::filesystem::is_directory(path, ec)) return {path};
        std::vector<std::string> files;
        for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
            std::error_code type_ec;
            if (entry.is_regular_file(type_ec) && strata::image::is_image_file(entry.path().string()))
                files.push_back(entry.path().string());
        }
        STRATA_CHECK(!ec, path, ": cannot list the folder (", ec.message(), ")");
        STRATA_CHECK(!files.empty(), path, ": the folder holds no JPEG or PNG image");
        std::sort(files.begin(), files.end());
        return files;
    }

    void run() {
        const strata::RunOptions options = run_options(threads, packing, cpu, max_activation_mb, activation_option, device);
        if (preprocess.any_given()) preprocess.transform();  // usage errors before any file is read
        const std::vector<std::string> inputs = list_inputs(input);
        std::string notes;
        auto net = make_model(model, kNoDilation, weights, load, nullptr, notes);
        const std::vector<std::string>& labels = strata::models::imagenet_classes();
        device.move(*net);
        nlohmann::json results = nlohmann::json::array();
        std::string text, preprocessing;
        for (const std::string& path : inputs) {
            const strata::Tensor x = strata_cli::load_input(path, preprocess, &preprocessing);
            STRATA_CHECK(x.dim() == 4, path, ": expected an NCHW array, got shape ", strata::shape_str(x.shape()));
            const strata::Tensor logits = net->forward(device.input(x), options).to(strata::Device::CPU).contiguous();
            STRATA_CHECK(logits.dim() == 2 && logits.size(1) == static_cast<int64_t>(labels.size()), model,
                         ": the model has ", logits.size(1), " classes; classify names ImageNet's ", labels.size());
            const int64_t classes = logits.size(1);
            for (int64_t n = 0; n < logits.size(0); ++n) {
                const float* l = logits.data<float>() + n * classes;
                // softmax in double (torch computes it in float32: within 1e-7 of this)
                const double max_logit = *std::max_element(l, l + classes);
                double sum = 0;
                for (int64_t i = 0; i < classes; ++i) sum += std::exp(static_cast<double>(l[i]) - max_logit);
                std::vector<int64_t> order(classes);
                for (int64_t i = 0; i < classes; ++i) order[i] = i;
                const int64_t k = std::min<int64_t>(top, classes);
                std::partial_sort(order.begin(), order.begin() + k, order.end(),
                                  [&](int64_t a, int64_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
                const std::string name = logits.size(0) > 1 ? path + "[" + std::to_string(n) + "]" : path;
                nlohmann::json top_k = nlohmann::json::array();
                text += name + "\n";
                for (int64_t r = 0; r < k; ++r) {
                    const int64_t i = order[r];
                    const double p = std::exp(static_cast<double>(l[i]) - max_logit) / sum;
                    top_k.push_back({{"index", i}, {"label", labels[i]}, {"probability", p}, {"logit", l[i]}});
                    char line[64];
                    std::snprintf(line, sizeof line, "  %8.4f%%  ", 100.0 * p);
                    text += line + labels[i] + " (" + std::to_string(i) + ")\n";
                }
                results.push_back({{"input", name}, {"top", top_k}});
            }
        }
        if (json) {
            nlohmann::json doc = {{"model", model}, {"weights", weights.empty() ? nlohmann::json() : nlohmann::json(weights)},
                                  {"preprocessing", preprocessing}, {"results", results}};
            std::cout << doc.dump(2) << "\n";
        } else {
            std::cout << text;
        }
        std::cerr << notes;
    }
};

// ---- strata bench ------------------------------------------------------------------------------
struct BenchCommand {
    std::string model = "resnet18", dilation = kNoDilation, weights, layers, packing = "fast", cpu = "auto";
    strata::LoadOptions load;
    int threads = 0, warmup = 3, iters = 30;
    int64_t batch = 1, size = 224, max_activation_mb = 0;
    CLI::Option* activation_option = nullptr;
    bool profile = false;
    double peak_gflops = 0;
    strata_cli::DeviceOptions device;

    CLI::App* add_to(CLI::App& app) {
        auto* c = app.add_subcommand("bench", "time forward calls (model loaded once; only forward is timed)");
        c->add_option("--model", model, kModelHelp);
        c->add_option("--dilation", dilation, kDilationHelp);
        c->add_option("--weights", weights, "weight file, .safetensors or .pth (default: untrained weights); "
                      "loaded strictly for the children that run");
        c->add_option("--strip-prefix", load.strip_prefix, kStripHelp);
        c->add_option("--layers", layers, "child:new_name pairs (default: the full model)");
        c->add_option("--batch", batch, "batch size")->check(kPositiveCount)->capture_default_str();
        c->add_option("--size", size, "input height and width")->check(kPositiveCount)->capture_default_str();
        c->add_option("--threads", threads, "CPU threads (default: all)")->check(kThreadCount);
        activation_option = c->add_option("--max-activation-mb", max_activation_mb, kActivationHelp);
        c->add_option("--warmup", warmup, "untimed calls first (at least one is made: the first call, reported as first_ms)")
            ->check(CLI::NonNegativeNumber)->capture_default_str();
        c->add_option("--iters", iters, "timed calls")->check(kPositiveCount)->capture_default_str();
        device.add_to(c, true);
        c->add_option("--packing", packing, kPackingHelp)->check(CLI::IsMember({"lean", "fast"}))->capture_default_str();
        c->add_option("--cpu", cpu, kCpuHelp)->check(CLI::IsMember({"auto", "avx512", "avx2", "baseline"}))->capture_default_str();
        c->add_flag("--profile", profile, "also time the model truncated after each direct child (same warm-up and "
                    "iterations) and report each child's time, share, GFLOP and GFLOP/s");
        c->add_option("--peak-gflops", peak_gflops, "fp32 peak of this machine at --threads (benchmarks/fma_probe), "
                      "for --profile's share of peak")->check(CLI::NonNegativeNumber);
        c->add_flag("--json", "accepted for consistency with the other commands: bench always writes one JSON "
                    "document on stdout");
        return c;
    }

    void run() {
        const strata::RunOptions options =
            run_options(threads, packing, cpu, max_activation_mb, activation_option, device);
        std::string notes;
        double load_ms = -1;  // strata::load + load_for_request; stays -1 without --weights
        const strata::ReturnLayers request = layers.empty() ? strata::ReturnLayers{} : parse_layers(layers);
        if (dilation != kNoDilation) parse_dilation(dilation);
        auto net = make_model(model, dilation, weights, load, layers.empty() ? nullptr : &request, notes, &load_ms);
        device.move(*net);
        const strata::Tensor x = device.input(strata::Tensor::full({batch, 3, size, size}, 0.5f));
        std::unique_ptr<strata::IntermediateLayerGetter> getter;
        if (!layers.empty()) getter = std::make_unique<strata::IntermediateLayerGetter>(*net, request);
        const auto call = device.timed([&] {
            if (getter) (*getter)(x, options);
            else net->forward(x, options);
        });
        auto ms_since = [](std::chrono::steady_clock::time_point t0) {
            return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        };
        // The first call (weight packing, first allocations) is timed alone as first_ms; it is the
        // first warm-up call.
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
        // One JSON document on stdout (nlohmann-json: any layer name is escaped properly).
        nlohmann::json report = {{"model", model},
                                 {"dilation", dilation == kNoDilation ? "0,0,0" : dilation},
                                 {"layers", layers.empty() ? "(full model)" : layers},
                                 {"batch", batch},
                                 {"size", size},
                                 {"threads", options.threads()},
                                 {"cpu_level", strata::cpu_level_name(options.cpu)},
                                 {"warmup", std::max(warmup, 1)},
                                 {"iters", iters},
                                 {"median_ms", stats.median_ms},
                                 {"min_ms", stats.min_ms},
                                 {"mean_ms", stats.mean_ms},
                                 {"images_per_s", 1000.0 * static_cast<double>(batch) / stats.median_ms},
                                 {"first_ms", first_ms},
                                 {"load_ms", nullptr},
                                 {"samples_ms", ms}};
        if (load_ms >= 0) report["load_ms"] = load_ms;
        if (profile) {
            report["peak_gflops"] = nullptr;
            if (peak_gflops > 0) report["peak_gflops"] = peak_gflops;
            report["profile"] = strata_cli::profile_children_json(*net, x, options, warmup, iters, peak_gflops);
        }
        std::cout << report.dump() << std::endl;
        notes += device.note();  // after the calls: what the CUDA caches hold
        std::cerr << notes;
    }
};

// ---- strata layers -----------------------------------------------------------------------------
// Shapes, channels and strides by shape inference: no forward pass, no weights initialised.
struct LayersCommand {
    std::string model = "resnet18", size = "224", dilation = kNoDilation;
    int64_t batch = 1;
    bool all = false, nodes = false, json = false;

    CLI::App* add_to(CLI::App& app) {
        auto* c = app.add_subcommand("layers", "list the model's children (or --nodes: every graph node) with output "
                                               "shape, channels and stride, by shape inference");
        c->add_option("--model", model, kModelHelp);
        c->add_option("--dilation", dilation, kDilationHelp);
        c->add_option("--size", size, "input size: HxW, or one number for a square")->capture_default_str();
        c->add_option("--batch", batch, "batch size")->check(kPositiveCount)->capture_default_str();
        c->add_flag("--nodes", nodes, "every node a --layers request may name (torch.fx's names: layer1.0.conv1, "
                    "layer1.0.add, layer1.0.relu_1, flatten, ...)");
        c->add_flag("--all", all, "every module path with its constructor arguments");
        c->add_flag("--json", json, "one JSON document on stdout (the rows as objects) instead of text");
        return c;
    }

    // "224" -> {224, 224}; "97x131" -> {97, 131}
    static std::pair<int64_t, int64_t> parse_size(const std::string& text) {
        const size_t x = text.find('x');
        auto number = [&](const std::string& part) {
            size_t used = 0;
            long long v = 0;
            try {
                v = std::stoll(part, &used);
            } catch (const std::exception&) {
                used = 0;
            }
            STRATA_CHECK(used > 0 && used == part.size() && v >= 1 && v <= (1 << 24), "--size '", text,
                         "': expected HxW or one number, each a whole number from 1 to 16777216");
            return static_cast<int64_t>(v);
        };
        if (x == std::string::npos) return {number(text), number(text)};
        return {number(text.substr(0, x)), number(text.substr(x + 1))};
    }

    void run() const {
        const auto [h, w] = parse_size(size);
        // Only shapes are reported: the weights are left as the layers make them (no init work).
        auto net = create_model(model, dilation, strata::models::Init::None);
        nlohmann::ordered_json rows = nlohmann::ordered_json::array();
        // {"model", "dilation", "size": [h, w], "batch", "listing": children|nodes|all, "rows": [...]}
        auto print_json = [&](const char* listing) {
            nlohmann::ordered_json doc = {{"model", model},
                                  {"dilation", dilation == kNoDilation ? nlohmann::ordered_json() : nlohmann::ordered_json(dilation)},
                                  {"size", {h, w}},
                                  {"batch", batch},
                                  {"listing", listing},
                                  {"rows", rows}};
            std::cout << doc.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
        };
        if (all) {
            for (const auto& [path, m] : net->named_modules()) {
                if (path.empty()) continue;
                if (json)
                    rows.push_back({{"path", path}, {"type", m->type_name()}, {"args", m->extra_repr()}});
                else
                    std::cout << path << "  " << m->type_name()
                              << (m->extra_repr().empty() ? "" : "(" + m->extra_repr() + ")") << "\n";
            }
            if (json) print_json("all");
            return;
        }
        strata::ReturnLayers request;
        if (nodes) {
            for (const auto& n : strata::IntermediateLayerGetter::node_names(*net)) request.emplace_back(n, n);
        } else {
            for (const auto& item : net->named_children()) request.emplace_back(item.first, item.first);
        }
        const strata::IntermediateLayerGetter getter(*net, request);
        for (const auto& info : getter.output_info({batch, 3, h, w})) {
            if (json) {
                nlohmann::ordered_json row = {{"name", info.name}};
                if (!nodes) row["type"] = net->child(info.name)->type_name();
                row["shape"] = info.shape;
                row["channels"] = info.channels;
                row["stride"] = info.stride > 0 ? nlohmann::ordered_json(info.stride) : nlohmann::ordered_json();
                rows.push_back(row);
                continue;
            }
            std::cout << info.name;
            if (!nodes) std::cout << "  " << net->child(info.name)->type_name();
            std::cout << "  " << strata::shape_str(info.shape) << "  channels " << info.channels << "  stride "
                      << (info.stride > 0 ? std::to_string(info.stride) : "-") << "\n";
        }
        if (json) print_json(nodes ? "nodes" : "children");
    }
};

// ---- strata convert ----------------------------------------------------------------------------
struct ConvertCommand {
    std::string in, out;
    strata::LoadOptions load;
    bool json = false;

    CLI::App* add_to(CLI::App& app) {
        auto* c = app.add_subcommand("convert", "convert a weight file (.pth or .safetensors) to safetensors");
        c->add_option("input", in, "weight file: torch.save .pth (zip or legacy) or .safetensors")->required();
        c->add_option("output", out, "the safetensors file to write (written atomically)")->required();
        c->add_option("--strip-prefix", load.strip_prefix, kStripHelp);
        c->add_flag("--json", json, "one JSON document on stdout (input, output, tensors, values, bytes) instead of "
                    "the text line");
        return c;
    }

    void run() const {
        const std::string suffix = ".safetensors";
        STRATA_CHECK(out.size() > suffix.size() && out.compare(out.size() - suffix.size(), suffix.size(), suffix) == 0,
                     out, ": convert writes safetensors; name the output *.safetensors");
        strata::check_writable(out);  // before the work
        STRATA_CHECK(!strata::same_file(in, out), "convert: the output ", out, " is the same file as the input ", in,
                     "; refusing to overwrite the input (write to another name)");
        strata::Metadata metadata;
        const strata::StateDict state = strata::load(in, load, &metadata);
        for (const auto& item : state) strata::check_tensor_name(item.first, in + ": tensor name");
        metadata["format"] = "pt";  // what safetensors files of torch weights declare
        metadata["converted_by"] = "strata convert";
        strata::save(state, out, metadata);
        int64_t values = 0;
        for (const auto& item : state) values += item.second.numel();
        if (json) {
            std::error_code ec;
            const auto bytes = std::filesystem::file_size(out, ec);
            const nlohmann::ordered_json doc = {{"input", in},
                                        {"output", out},
                                        {"strip_prefix", load.strip_prefix},
                                        {"tensors", state.size()},
                                        {"values", values},
                                        {"bytes", ec ? nlohmann::ordered_json() : nlohmann::ordered_json(bytes)}};
            std::cout << doc.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
            return;
        }
        std::cout << "wrote " << out << ": " << state.size() << " tensors, " << values << " values\n";
    }
};

}  // namespace

int main(int argc, char** argv) {
    strata::remove_temporary_files_on_signals();  // SIGINT/SIGTERM during a write leave no temporary file
    CLI::App app{"strata: CNN feature extraction (torchvision's IntermediateLayerGetter) in C++"};
    app.require_subcommand(1);
    // <strata/version.h>, then the CPU level the kernels run at (an invalid STRATA_CPU says so).
    app.set_version_flag("--version", [] {
        std::string cpu;
        try {
            cpu = strata::cpu_level_summary();
        } catch (const strata::Error& e) {
            cpu = std::string("error: ") + e.what();
        }
        return std::string("strata " STRATA_VERSION_STRING "\ncpu: ") + cpu;
    });
    FeaturesCommand features;
    BenchCommand bench;
    LayersCommand layers;
    ConvertCommand convert;
    ClassifyCommand classify;
    CLI::App* features_cmd = features.add_to(app);
    CLI::App* classify_cmd = classify.add_to(app);
    CLI::App* bench_cmd = bench.add_to(app);
    CLI::App* layers_cmd = layers.add_to(app);
    CLI::App* convert_cmd = convert.add_to(app);

    const auto is_command = [&](const std::string& word) {
        for (const CLI::App* c : app.get_subcommands({}))
            if (c->get_name() == word) return true;
        return false;
    };
    if (argc > 1 && argv[1][0] != '-' && !is_command(argv[1])) {
        std::cerr << "error: unknown command '" << argv[1] << "'; commands: features, classify, layers, bench, convert (see --help)\n";
        return 2;
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::cerr << "error: " << one_line(e.what()) << "\n";
        return 2;
    }
    try {
        if (*features_cmd) features.run();
        else if (*bench_cmd) bench.run();
        else if (*layers_cmd) layers.run();
        else if (*convert_cmd) convert.run();
        else if (*classify_cmd) classify.run();
    } catch (const std::bad_alloc&) {
        std::cerr << "error: out of memory\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "error: " << one_line(e.what()) << "\n";
        return 2;
    }
    return 0;
}
