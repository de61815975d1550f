// --stats, --json, --save-maps and `--out -` of `strata features`; see outputs.h.
#include "outputs.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <limits>

namespace strata_cli {

// ---- --stats -----------------------------------------------------------------------------------
Stats compute_stats(const strata::Tensor& tensor) {
    const strata::Tensor t = tensor.to(strata::Device::CPU).to(strata::DType::Float32).contiguous();
    const float* p = t.data<float>();
    Stats s;
    s.count = t.numel();
    double lo = std::numeric_limits<double>::infinity(), hi = -lo, sum = 0;
    for (int64_t i = 0; i < s.count; ++i) {
        const float v = p[i];
        if (std::isnan(v)) {
            ++s.nan;
        } else if (std::isinf(v)) {
            ++(v > 0 ? s.pos_inf : s.neg_inf);
        } else {
            ++s.finite;
            lo = std::min(lo, static_cast<double>(v));
            hi = std::max(hi, static_cast<double>(v));
            sum += v;
        }
    }
    const double nan = std::numeric_limits<double>::quiet_NaN();
    if (s.finite == 0) {
        s.min = s.max = s.mean = s.std = nan;
        return s;
    }
    s.min = lo;
    s.max = hi;
    s.mean = sum / static_cast<double>(s.finite);
    // Two passes: the squared deviations from the mean (no cancellation of sum(x^2) - n mean^2).
    double squares = 0;
    for (int64_t i = 0; i < s.count; ++i)
        if (std::isfinite(p[i])) {
            const double d = static_cast<double>(p[i]) - s.mean;
            squares += d * d;
        }
    s.std = s.finite > 1 ? std::sqrt(squares / static_cast<double>(s.finite - 1)) : nan;
    return s;
}

namespace {
nlohmann::ordered_json number_or_null(double v) { return std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json(); }

std::string number_text(double v) {
    if (std::isnan(v)) return "nan";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", v);
    return buf;
}
}  // namespace

nlohmann::ordered_json stats_json(const Stats& s) {
    return {{"min", number_or_null(s.min)},   {"max", number_or_null(s.max)},
            {"mean", number_or_null(s.mean)}, {"std", number_or_null(s.std)},
            {"count", s.count},               {"finite", s.finite},
            {"nan", s.nan},                   {"inf", s.pos_inf + s.neg_inf}};
}

std::string stats_table(const strata::OrderedDict<strata::Tensor>& outputs, const std::vector<Stats>& stats) {
    bool nonfinite = false;
    for (const Stats& s : stats) nonfinite = nonfinite || s.finite != s.count;
    std::vector<std::vector<std::string>> rows;
    rows.push_back({"output", "shape", "min", "max", "mean", "std"});
    if (nonfinite) {
        rows.back().push_back("nan");
        rows.back().push_back("inf");
    }
    for (size_t i = 0; i < outputs.size(); ++i) {
        const Stats& s = stats[i];
        rows.push_back({outputs[i].first, strata::shape_str(outputs[i].second.shape()), number_text(s.min),
                        number_text(s.max), number_text(s.mean), number_text(s.std)});
        if (nonfinite) {
            rows.back().push_back(std::to_string(s.nan));
            rows.back().push_back(std::to_string(s.pos_inf + s.neg_inf));
        }
    }
    std::vector<size_t> width(rows[0].size(), 0);
    for (const auto& row : rows)
        for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
    std::string text;
    for (const auto& row : rows) {
        std::string line;
        for (size_t c = 0; c < row.size(); ++c) {
            // names and shapes left-aligned, numbers right-aligned
            const std::string pad(width[c] - row[c].size(), ' ');
            line += (c ? "  " : "") + (c < 2 ? row[c] + pad : pad + row[c]);
        }
        while (!line.empty() && line.back() == ' ') line.pop_back();
        text += line + "\n";
    }
    return text;
}

// ---- --save-maps -------------------------------------------------------------------------------
int64_t map_scale(int64_t h, int64_t w, int64_t min_tile) {
    const int64_t shorter = std::min(h, w), longer = std::max(h, w);
    int64_t s = std::max<int64_t>(1, (min_tile + shorter - 1) / shorter);
    const int64_t cap = std::max<int64_t>(1, std::max(4 * min_tile, longer) / longer);
    return std::max<int64_t>(1, std::min(s, cap));
}

Grid feature_grid(const float* maps, int64_t channels, int64_t h, int64_t w, const MapOptions& options) {
    STRATA_CHECK(maps != nullptr && channels > 0 && h > 0 && w > 0, "feature_grid: expected maps of a positive "
                 "shape, got ", channels, " x ", h, " x ", w);
    STRATA_CHECK(options.channels > 0 && options.nrow > 0 && options.min_tile > 0,
                 "feature_grid: channels, nrow and min_tile must be positive");
    Grid g;
    g.tiles = std::min(channels, options.channels);
    g.scale = map_scale(h, w, options.min_tile);
    g.tile_height = h * g.scale;
    g.tile_width = w * g.scale;
    g.cols = std::min(options.nrow, g.tiles);
    g.rows = (g.tiles + g.cols - 1) / g.cols;
    const int64_t pad = 2;
    // make_grid returns a single image as it is, without border.
    const bool alone = g.tiles == 1;
    g.height = alone ? g.tile_height : g.rows * (g.tile_height + pad) + pad;
    g.width = alone ? g.tile_width : g.cols * (g.tile_width + pad) + pad;
    const int64_t limit = int64_t{1} << 30;  // 1 GiB of pixels
    STRATA_CHECK(g.height <= limit / g.width, "--save-maps: a grid of ", g.tiles, " tiles of ", g.tile_height, "x",
                 g.tile_width, " would be ", g.height, "x", g.width, " pixels, over 2^30; draw fewer with "
                 "--maps-channels or smaller tiles with --maps-min-tile");
    g.pixels.assign(static_cast<size_t>(g.height * g.width), 0);
    std::vector<uint8_t> tile(static_cast<size_t>(h * w));
    for (int64_t c = 0; c < g.tiles; ++c) {
        const float* m = maps + c * h * w;
        float lo = 0, hi = 0;
        bool any = false;
        for (int64_t i = 0; i < h * w; ++i)
            if (std::isfinite(m[i])) {
                lo = any ? std::min(lo, m[i]) : m[i];
                hi = any ? std::max(hi, m[i]) : m[i];
                any = true;
            }
        // torchvision's norm_ip: img.sub_(low).div_(max(high - low, 1e-5)), the difference taken
        // in double (Python floats) and the division in float32; then save_image's
        // mul(255).add_(0.5).clamp_(0, 255) and a truncating cast to uint8.
        const float range = static_cast<float>(std::max(static_cast<double>(hi) - static_cast<double>(lo), 1e-5));
        for (int64_t i = 0; i < h * w; ++i) {
            const float x = m[i];
            if (std::isnan(x)) {
                tile[i] = 0;
            } else if (std::isinf(x)) {
                tile[i] = x > 0 ? 255 : 0;
            } else {
                const float v = (x - lo) / range;
                const float scaled = v * 255.0f;
                const float p = std::min(std::max(scaled + 0.5f, 0.0f), 255.0f);
                tile[i] = static_cast<uint8_t>(p);
            }
        }
        const int64_t y0 = alone ? 0 : (c / g.cols) * (g.tile_height + pad) + pad;
        const int64_t x0 = alone ? 0 : (c % g.cols) * (g.tile_width + pad) + pad;
        for (int64_t y = 0; y < g.tile_height; ++y) {
            uint8_t* dst = g.pixels.data() + (y0 + y) * g.width + x0;
            const uint8_t* src = tile.data() + (y / g.scale) * w;
            for (int64_t x = 0; x < g.tile_width; ++x) dst[x] = src[x / g.scale];
        }
    }
    return g;
}

std::string map_path(const std::string& dir, const std::string& name, int64_t batch, int64_t n) {
    std::string base = dir;
    if (!base.empty() && base.back() != '/') base += '/';
    return base + name + (batch > 1 ? "_" + std::to_string(n) : "") + ".png";
}

// ---- the flags ---------------------------------------------------------------------------------
void OutputFlags::add_to(CLI::App* c) {
    c->add_flag("--stats", stats_, "print each output's shape, min, max, mean and std (sample std, n - 1, as "
                "torch's t.std(); over its finite values, in double; NaN/Inf counted)");
    c->add_flag("--json", json_, "one JSON document on stdout instead of text (errors stay one line on stderr)");
    maps_option_ = c->add_option("--save-maps", maps_dir_, "write DIR/<output>.png per output of shape [N, C, H, W] "
                                 "(DIR/<output>_<n>.png per image when N > 1): a grid of its first --maps-channels "
                                 "channels, each min-max normalised, as torchvision's make_grid(normalize=True, "
                                 "scale_each=True); DIR is created when missing");
    map_detail_options_.push_back(
        c->add_option("--maps-channels", map_options_.channels, "--save-maps: how many channels to draw (the first)")
            ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
            ->capture_default_str());
    map_detail_options_.push_back(c->add_option("--maps-nrow", map_options_.nrow, "--save-maps: tiles per row "
                                                "(make_grid's nrow)")
                                      ->check(CLI::Range(int64_t{1}, int64_t{4096}))
                                      ->capture_default_str());
    map_detail_options_.push_back(
        c->add_option("--maps-min-tile", map_options_.min_tile, "--save-maps: upscale small maps (integer factor, "
                      "nearest neighbour) until their shorter side has at least this many pixels (1: never)")
            ->check(CLI::Range(int64_t{1}, int64_t{4096}))
            ->capture_default_str());
}

namespace {
// A file name made from an output name: refused when it could leave DIR or is no name.
void check_map_name(const std::string& name) {
    STRATA_CHECK(name.find('/') == std::string::npos && name.find('\\') == std::string::npos,
                 "--save-maps: the output name '", name, "' has a path separator; rename it with --layers "
                 "layer:new_name to save its map");
    STRATA_CHECK(name != "." && name != ".." && !name.empty(), "--save-maps: the output name '", name,
                 "' cannot name a file; rename it with --layers layer:new_name");
    STRATA_CHECK(name.find('\0') == std::string::npos, "--save-maps: the output name has a NUL byte");
}
}  // namespace

void OutputFlags::check(const strata::ReturnLayers& layers, bool out_stdout) const {
    if (out_stdout) {
        STRATA_CHECK(!json_, "--json and --out - both write to stdout; write the safetensors to a file, or drop --json");
        STRATA_CHECK(!::isatty(STDOUT_FILENO), "--out -: stdout is a terminal; redirect it to a file or a pipe "
                     "(the safetensors bytes are binary)");
    }
    if (!maps()) {
        for (const CLI::Option* o : map_detail_options_)
            STRATA_CHECK(o->count() == 0, o->get_name(), " applies to --save-maps, which is not given");
        return;
    }
    STRATA_CHECK(!maps_dir_.empty(), "--save-maps is empty; give a folder");
    for (const auto& item : layers) check_map_name(item.second);
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::file_status status = fs::status(maps_dir_, ec);
    if (fs::exists(status)) {
        STRATA_CHECK(fs::is_directory(status), "--save-maps ", maps_dir_, ": exists and is not a folder");
        // The folder is writable (check_writable checks the folder of a path inside it).
        try {
            strata::check_writable(map_path(maps_dir_, layers.empty() ? "x" : layers.front().second, 1, 0));
        } catch (const strata::Error& e) {
            STRATA_FAIL("--save-maps ", maps_dir_, ": ", e.what());
        }
        return;
    }
    // Created once the maps are drawn (so a failed run leaves nothing): only the last component,
    // in an existing, writable folder (a mistyped parent is reported, not made).
    fs::path dir(maps_dir_);
    if (!dir.has_filename()) dir = dir.parent_path();  // "maps/" -> "maps"
    const fs::path parent = dir.has_parent_path() ? dir.parent_path() : fs::path(".");
    STRATA_CHECK(fs::is_directory(parent, ec), "--save-maps ", maps_dir_, ": cannot create the folder: '",
                 parent.string(), "' is not an existing folder");
    STRATA_CHECK(::access(parent.c_str(), W_OK | X_OK) == 0, "--save-maps ", maps_dir_, ": cannot create the folder "
                 "in '", parent.string(), "' (", std::strerror(errno), ")");
}

void OutputFlags::check_map_files(const strata::ReturnLayers& layers, int64_t batch) const {
    std::error_code ec;
    if (!maps() || !std::filesystem::is_directory(maps_dir_, ec)) return;  // a new folder: nothing in the way
    for (const auto& item : layers)
        for (int64_t n = 0; n < batch; ++n) strata::check_writable(map_path(maps_dir_, item.second, batch, n));
}

void OutputFlags::finish(const Run& run, const strata::OrderedDict<strata::Tensor>& outputs, const std::string& line,
                         std::ostream& report, std::string& notes) const {
    // The maps first: a failure to write one is the run's error, reported before any output.
    nlohmann::ordered_json maps = nlohmann::ordered_json::array();
    std::string maps_text;
    if (this->maps()) {
        std::error_code ec;
        if (!std::filesystem::is_directory(maps_dir_, ec)) {
            std::filesystem::create_directory(maps_dir_, ec);
            STRATA_CHECK(!ec, "--save-maps ", maps_dir_, ": cannot create the folder (", ec.message(), ")");
        }
        for (const auto& [name, tensor] : outputs) {
            const strata::Shape& shape = tensor.shape();
            if (shape.size() != 4 || shape[2] * shape[3] <= 1 || shape[0] == 0 || shape[1] == 0) {
                const std::string why = shape.size() != 4 ? "not a [N, C, H, W] map"
                                        : shape[2] * shape[3] <= 1 ? "1x1 maps (min-max normalised, each is black)"
                                                                   : "an empty tensor";
                notes += "note: --save-maps: skipped '" + name + "' " + strata::shape_str(shape) + ": " + why + "\n";
                maps.push_back({{"output", name}, {"skipped", why}});
                continue;
            }
            const strata::Tensor t = tensor.to(strata::Device::CPU).to(strata::DType::Float32).contiguous();
            const int64_t batch = shape[0], channels = shape[1], h = shape[2], w = shape[3];
            for (int64_t n = 0; n < batch; ++n) {
                const Grid g = feature_grid(t.data<float>() + n * channels * h * w, channels, h, w, map_options_);
                const std::string path = map_path(maps_dir_, name, batch, n);
                strata::image::save_png(path, g.pixels.data(), g.height, g.width, 1);
                maps.push_back({{"output", name},
                                {"index", n},
                                {"file", path},
                                {"channels", g.tiles},
                                {"of", channels},
                                {"grid", {g.rows, g.cols}},
                                {"tile", {g.tile_height, g.tile_width}},
                                {"scale", g.scale},
                                {"size", {g.height, g.width}}});
                maps_text += "map " + name + (batch > 1 ? "[" + std::to_string(n) + "]" : "") + ": " + path + " (" +
                             std::to_string(g.tiles) + " of " + std::to_string(channels) + " channels, " +
                             std::to_string(g.rows) + "x" + std::to_string(g.cols) + " tiles of " +
                             std::to_string(g.tile_height) + "x" + std::to_string(g.tile_width) + " (x" +
                             std::to_string(g.scale) + "), " + std::to_string(g.height) + "x" +
                             std::to_string(g.width) + " px)\n";
            }
        }
    }
    std::vector<Stats> stats;
    if (stats_)
        for (const auto& item : outputs) stats.push_back(compute_stats(item.second));
    if (!json_) {
        report << line << "\n";
        if (stats_) report << stats_table(outputs, stats);
        report << maps_text;
        report.flush();
        return;
    }
    auto or_null = [](const std::string& s) { return s.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(s); };
    nlohmann::ordered_json layers = nlohmann::ordered_json::array();
    for (const auto& [layer, name] : run.layers) layers.push_back({{"layer", layer}, {"name", name}});
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (size_t i = 0; i < outputs.size(); ++i) {
        nlohmann::ordered_json entry = {{"name", outputs[i].first}, {"shape", outputs[i].second.shape()}};
        if (stats_) entry["stats"] = stats_json(stats[i]);
        list.push_back(entry);
    }
    nlohmann::ordered_json doc = {{"model", run.model},
                          {"dilation", or_null(run.dilation)},
                          {"weights", or_null(run.weights)},
                          {"input", or_null(run.input)},
                          {"input_shape", run.input_shape},
                          {"preprocessing", or_null(run.preprocessing)},
                          {"layers", layers},
                          {"outputs", list},
                          {"out", or_null(run.out)},
                          {"forward_ms", run.forward_ms}};
    if (this->maps()) doc["maps"] = maps;
    // Invalid UTF-8 in a name or path (a Latin-1 file name) is replaced, not an exception.
    report << doc.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
    report.flush();
}

// ---- --out - -----------------------------------------------------------------------------------
void write_stdout(const std::string& bytes) {
    std::cout.flush();
    for (size_t done = 0; done < bytes.size();) {
        const ssize_t n = ::write(STDOUT_FILENO, bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR) continue;
        STRATA_CHECK(n > 0, "--out -: writing to stdout failed (", std::strerror(n < 0 ? errno : EIO), ")");
        done += static_cast<size_t>(n);
    }
}

}  // namespace strata_cli
