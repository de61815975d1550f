// What `strata features` does with its outputs besides --out: --stats (per-output min, max,
// mean, std), --json (one JSON document on stdout), --save-maps DIR (a PNG grid of each
// output's first channels, as torchvision's make_grid(normalize=True, scale_each=True) draws
// them), and `--out -` (the safetensors bytes on stdout). Kept out of main.cpp so that the
// features command only wires the flags in.
#pragma once
#include <CLI/CLI.hpp>
#include <cstdint>
#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "strata.h"

namespace strata_cli {

// ---- --stats -----------------------------------------------------------------------------------
// Over the tensor's finite values, in double: min, max, mean, and std as torch's t.std() (the
// sample standard deviation, divisor n - 1; NaN for fewer than two values). NaN and +-Inf values
// are counted, not included (torch would return nan/inf for all four); with no finite value,
// min/max/mean are NaN too. In JSON every NaN is written as null.
struct Stats {
    int64_t count = 0;   // numel
    int64_t finite = 0;  // values included
    int64_t nan = 0, pos_inf = 0, neg_inf = 0;
    double min = 0, max = 0, mean = 0, std = 0;
};
Stats compute_stats(const strata::Tensor& t);  // any float32 tensor (made contiguous on the CPU)
nlohmann::ordered_json stats_json(const Stats& s);
// A human-readable table, one row per output: name, shape, min, max, mean, std (and the NaN/Inf
// counts when any output has some).
std::string stats_table(const strata::OrderedDict<strata::Tensor>& outputs, const std::vector<Stats>& stats);

// ---- --save-maps -------------------------------------------------------------------------------
struct MapOptions {
    int64_t channels = 64;  // the first K channels are drawn
    int64_t nrow = 8;       // tiles per row (make_grid's nrow)
    int64_t min_tile = 56;  // small maps are upscaled (integer, nearest) to at least this many pixels
};

// One picture: 8-bit grayscale, row-major.
struct Grid {
    int64_t height = 0, width = 0;
    std::vector<uint8_t> pixels;
    int64_t tiles = 0, rows = 0, cols = 0;  // tiles drawn, in rows x cols
    int64_t scale = 1;                      // the upscaling factor of every tile
    int64_t tile_height = 0, tile_width = 0;  // after upscaling
};

// The integer nearest-neighbour factor for an h x w map: the smallest that makes the shorter
// side at least `min_tile` pixels, lowered so that the longer side stays within 4 * min_tile
// (or its own size, when larger); at least 1.
int64_t map_scale(int64_t h, int64_t w, int64_t min_tile);

// torchvision's
//   save_image(make_grid(maps[:K].unsqueeze(1), nrow, padding=2, normalize=True, scale_each=True), path)
// of one image's `channels` maps of h x w float32 values (C-order [channels, h, w]), K =
// min(channels, options.channels), after upscaling each map by map_scale (nearest): each map
// min-max scaled to [0, 1] (x - min) / max(max - min, 1e-5) in float32, so a constant map is
// black; then to bytes as save_image does, uint8(x * 255 + 0.5); a black border of 2 pixels
// around and between the tiles (pad_value 0), K > nrow tiles continuing on further rows. As
// make_grid, a single tile is returned alone, without border. Differences: NaN values are drawn
// 0 and +-Inf 255 / 0, the min and max being taken over the finite values (torchvision's
// output is undefined there).
Grid feature_grid(const float* maps, int64_t channels, int64_t h, int64_t w, const MapOptions& options);

// --stats, --json, --save-maps DIR, --maps-channels, --maps-nrow, --maps-min-tile.
class OutputFlags {
public:
    void add_to(CLI::App* command);
    bool json() const { return json_; }
    bool stats() const { return stats_; }
    bool maps() const { return maps_option_ && maps_option_->count() > 0; }

    // Before the work: the flags agree (`out_stdout`: --out -, which refuses --json), the map
    // flags are only given with --save-maps, every output name makes a file name (no '/', not
    // "." or ".."), and DIR is a folder we can write in, or can be created (in an existing,
    // writable folder; finish() creates it). Throws Error.
    void check(const strata::ReturnLayers& layers, bool out_stdout) const;
    // Once the batch size is known: each PNG --save-maps will write can be written.
    void check_map_files(const strata::ReturnLayers& layers, int64_t batch) const;

    // What the features command reports once it has its outputs.
    struct Run {
        std::string model, dilation;  // dilation: "" when not given
        std::string weights, input;   // "" when not given
        strata::Shape input_shape;
        std::string preprocessing;    // "" for a .npy or the random input
        strata::ReturnLayers layers;
        std::string out;              // --out: "" when not given, "-" for stdout
        double forward_ms = 0;
    };
    // Writes the maps (with --save-maps), then the report: the usual line (`line`), the stats
    // table and the maps written as text, or one JSON document with --json. The report goes to
    // `report` (stdout, or stderr under --out -); notes (skipped maps) are appended to `notes`.
    void finish(const Run& run, const strata::OrderedDict<strata::Tensor>& outputs, const std::string& line,
                std::ostream& report, std::string& notes) const;

private:
    bool json_ = false, stats_ = false;
    std::string maps_dir_;
    MapOptions map_options_;
    CLI::Option* maps_option_ = nullptr;
    std::vector<CLI::Option*> map_detail_options_;
};

// The file a map of output `name` is written to: DIR/<name>.png for a batch of one,
// DIR/<name>_<n>.png for image n of a larger batch.
std::string map_path(const std::string& dir, const std::string& name, int64_t batch, int64_t n);

// Writes `bytes` to stdout (binary) and flushes; throws Error when the write fails (a closed
// pipe, a full disk). Refuses a terminal.
void write_stdout(const std::string& bytes);

}  // namespace strata_cli
