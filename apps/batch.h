// Batch mode of `strata features`: --input names many images (a folder, a glob pattern, @list.txt,
// or - for a list on stdin); they are decoded and preprocessed on a pool of threads while the
// model runs on the calling thread, run --batch at a time, and written to --out DIR as
// safetensors shards (features-00000.safetensors, ...), each output stacked [n, ...], with the
// input paths and the run's description in the shard's __metadata__. Shards are written
// atomically; a rerun skips the shards that are already complete, so a killed run resumes.
// README.md ("Many photos: batch mode") documents the flags, the inputs' order and the schema.
#pragma once
#include <CLI/CLI.hpp>
#include <cstdint>
#include <istream>
#include <string>
#include <vector>

#include "device_options.h"
#include "strata.h"

namespace strata_cli {

// Whether `input` names many images: "-" (a list on stdin), "@FILE" (a list), an existing
// folder, or a pattern with *, ? or [ that is not itself an existing path.
bool is_batch_input(const std::string& input);

// The images `input` names, in the order they are processed and stored:
//   folder: every regular file below it (recursively; symbolic links to files are followed, to
//           folders not) named *.jpg, *.jpeg or *.png (any case), sorted by path (bytewise);
//   glob:   glob(3)'s matches, sorted bytewise; folders among them are left out;
//   @FILE:  one path per line in file order (a trailing \r and blank lines are dropped; relative
//           paths are relative to the current folder, as given); "-" or "@-" read it from stdin.
// Throws strata::Error when nothing is found or the source cannot be read.
std::vector<std::string> list_batch_inputs(const std::string& input, std::istream& stdin_stream);

// The batch-mode flags of `features`: --batch, --shard-size, --decode-threads, --strict, --quiet,
// --overwrite.
class BatchFlags {
public:
    void add_to(CLI::App* command);
    // The flags given (for the error when the input is a single file).
    std::vector<std::string> given() const;

    int64_t batch = 8;
    int64_t shard_size = 0;  // images per shard; 0: 1024 images or 256 MiB of outputs, whichever is smaller
    int decode_threads = 0;  // 0: a quarter of the cores, from 1 to 8
    bool strict = false, quiet = false, overwrite = false;

private:
    std::vector<CLI::Option*> options_;
};

// What a batch run records and compares against existing shards (all strings).
struct BatchDescription {
    std::string model, dilation, layers, weights;  // dilation "" when not given; weights "" when none
};

// One batch-mode run. The constructor does the checks that need no model: lists the inputs,
// works out the input size the transform gives (it must be one size for every image), creates
// and locks --out DIR and hashes the weight file. run() does the work.
class BatchRun {
public:
    BatchRun(const BatchFlags& flags, const std::string& input, const std::string& out_dir,
             strata::image::Compose transform, BatchDescription description);
    ~BatchRun();
    BatchRun(const BatchRun&) = delete;
    BatchRun& operator=(const BatchRun&) = delete;

    // Runs `getter` over every image of the shards still to compute and writes them. Throws
    // strata::Error on a fatal problem (with --strict, the first image that cannot be read).
    void run(const strata::IntermediateLayerGetter& getter, const strata::RunOptions& options,
             const DeviceOptions& device);

private:
    struct Impl;
    Impl* impl_;
};

}  // namespace strata_cli
