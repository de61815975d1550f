#include "batch.h"

#include <fcntl.h>
#include <glob.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "io/mapped_file.h"
#include "sha256.h"

namespace fs = std::filesystem;

namespace strata_cli {

namespace {

std::string one_line(std::string s) {
    for (char& c : s)
        if (c == '\n' || c == '\r') c = ' ';
    return s;
}

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

bool has_glob_chars(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

std::vector<std::string> read_list(std::istream& in, const std::string& name) {
    std::vector<std::string> out;
    std::string line;
    while (std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.find_first_not_of(" \t") == std::string::npos) continue;  // blank
        out.push_back(line);
    }
    STRATA_CHECK(!in.bad(), name, ": read error");
    STRATA_CHECK(!out.empty(), name, ": the list names no image (one path per line expected)");
    return out;
}

std::vector<std::string> list_folder(const std::string& dir) {
    std::vector<std::string> files;
    try {
        for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator(); ++it) {
            std::error_code ec;
            if (!it->is_regular_file(ec)) continue;  // folders, broken links, FIFOs, ...
            const std::string ext = lower(it->path().extension().string());
            if (ext == ".jpg" || ext == ".jpeg" || ext == ".png") files.push_back(it->path().string());
        }
    } catch (const fs::filesystem_error& e) {
        STRATA_FAIL(dir, ": cannot list the folder (", e.code().message(), " at ", e.path1().string(), ")");
    }
    STRATA_CHECK(!files.empty(), dir, ": the folder holds no *.jpg, *.jpeg or *.png file (searched recursively)");
    std::sort(files.begin(), files.end());
    return files;
}

std::vector<std::string> list_glob(const std::string& pattern) {
    glob_t g{};
    const int rc = ::glob(pattern.c_str(), GLOB_ERR, nullptr, &g);
    std::vector<std::string> files;
    if (rc == 0)
        for (size_t i = 0; i < g.gl_pathc; ++i) {
            std::error_code ec;
            if (!fs::is_directory(g.gl_pathv[i], ec)) files.emplace_back(g.gl_pathv[i]);
        }
    globfree(&g);
    STRATA_CHECK(rc != GLOB_NOSPACE, pattern, ": out of memory expanding the pattern");
    STRATA_CHECK(rc != GLOB_ABORTED, pattern, ": a folder of the pattern cannot be read");
    STRATA_CHECK(rc == 0 && !files.empty(), pattern, ": no file matches the pattern");
    std::sort(files.begin(), files.end());  // glob sorts by the locale's collation; bytewise here
    return files;
}

// ---- the decoding pool --------------------------------------------------------------------------
// Decodes and preprocesses the images of `order` (indices into `paths`) on `threads` threads, at
// most `window` images ahead of the consumer, and hands them out in order.
class DecodePool {
public:
    struct Item {
        int64_t index = -1;
        strata::Tensor x;  // [3, H, W], or undefined with an error
        std::string error;
    };

    DecodePool(const std::vector<std::string>& paths, std::vector<int64_t> order, const strata::image::Compose& transform,
               strata::Shape expected, int threads, size_t window)
        : paths_(paths), order_(std::move(order)), transform_(transform), expected_(std::move(expected)),
          slots_(window) {
        for (int t = 0; t < threads; ++t) workers_.emplace_back([this] { work(); });
    }
    ~DecodePool() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stop_ = true;
        }
        space_.notify_all();
        for (auto& w : workers_) w.join();
    }

    // The next image in order; blocks until it is decoded.
    Item next() {
        std::unique_lock<std::mutex> lock(mutex_);
        std::optional<Item>& slot = slots_[consumed_ % slots_.size()];
        ready_.wait(lock, [&] { return slot.has_value(); });
        Item item = std::move(*slot);
        slot.reset();
        ++consumed_;
        lock.unlock();
        space_.notify_all();
        return item;
    }

private:
    void work() {
        for (;;) {
            size_t j = 0;
            {
                std::unique_lock<std::mutex> lock(mutex_);
                space_.wait(lock, [&] { return stop_ || claimed_ >= order_.size() || claimed_ < consumed_ + slots_.size(); });
                if (stop_ || claimed_ >= order_.size()) return;
                j = claimed_++;
            }
            Item item;
            item.index = order_[j];
            const std::string& path = paths_[static_cast<size_t>(item.index)];
            try {
                strata::Tensor x = transform_(strata::image::load(path)).contiguous();
                STRATA_CHECK(x.shape() == expected_, path, ": preprocessed to ", strata::shape_str(x.shape()),
                             ", not the run's ", strata::shape_str(expected_));
                item.x = std::move(x);
            } catch (const std::bad_alloc&) {
                item.error = path + ": out of memory decoding the image";
            } catch (const std::exception& e) {
                item.error = one_line(e.what());
                // Every reason names the file first (image::load's errors do); make sure.
                if (item.error.compare(0, path.size(), path) != 0) item.error = path + ": " + item.error;
            }
            {
                std::lock_guard<std::mutex> lock(mutex_);
                slots_[j % slots_.size()] = std::move(item);
            }
            ready_.notify_all();
        }
    }

    const std::vector<std::string>& paths_;
    const std::vector<int64_t> order_;
    const strata::image::Compose& transform_;
    const strata::Shape expected_;
    std::vector<std::optional<Item>> slots_;
    std::mutex mutex_;
    std::condition_variable ready_, space_;
    size_t claimed_ = 0, consumed_ = 0;
    bool stop_ = false;
    std::vector<std::thread> workers_;
};

// ---- progress on stderr --------------------------------------------------------------------------
class Progress {
public:
    Progress(int64_t total, bool show) : total_(total), show_(show), start_(clock::now()) {}
    ~Progress() { clear(); }

    void advance(int64_t done, int64_t skipped, bool force = false) {
        done_ = done;
        skipped_ = skipped;
        if (!show_) return;
        const auto now = clock::now();
        if (!force && now - last_ < std::chrono::milliseconds(100)) return;
        last_ = now;
        draw();
    }
    // A line of its own (an error) while the bar is shown.
    void message(const std::string& line) {
        clear();
        std::cerr << line << "\n";
        if (show_) draw();
    }
    void clear() {
        if (drawn_) std::cerr << "\r\033[K" << std::flush;
        drawn_ = false;
    }
    double seconds() const { return std::chrono::duration<double>(clock::now() - start_).count(); }

private:
    using clock = std::chrono::steady_clock;
    void draw() {
        const int64_t handled = done_ + skipped_;
        const double s = seconds();
        const double rate = s > 0 ? static_cast<double>(done_) / s : 0;
        const double fraction = total_ > 0 ? static_cast<double>(handled) / static_cast<double>(total_) : 1;
        constexpr int kWidth = 30;
        const int filled = static_cast<int>(fraction * kWidth);
        std::string bar(static_cast<size_t>(filled), '=');
        if (filled < kWidth) bar += '>' + std::string(static_cast<size_t>(kWidth - filled - 1), ' ');
        char eta[32] = "--:--";
        if (rate > 0 && handled > 0) {
            const double per_item = s / static_cast<double>(handled);
            const auto left = static_cast<long long>(per_item * static_cast<double>(total_ - handled) + 0.5);
            std::snprintf(eta, sizeof eta, "%lld:%02lld:%02lld", left / 3600, left / 60 % 60, left % 60);
        }
        char line[256];
        std::snprintf(line, sizeof line, "\r%3d%% [%s] %lld/%lld images  %.1f images/s  ETA %s", static_cast<int>(fraction * 100),
                      bar.c_str(), static_cast<long long>(handled), static_cast<long long>(total_), rate, eta);
        std::cerr << line;
        if (skipped_ > 0) std::cerr << "  " << skipped_ << " skipped";
        std::cerr << "\033[K" << std::flush;
        drawn_ = true;
    }

    int64_t total_, done_ = 0, skipped_ = 0;
    bool show_, drawn_ = false;
    clock::time_point start_, last_{};
};

const char* const kFormat = "strata.features.v1";
// The metadata that must be equal for an existing shard to count as this run's.
const char* const kMatchKeys[] = {"format", "model", "dilation", "layers", "weights_sha256", "preprocessing",
                                  "shard_size", "first_input", "inputs", "inputs_sha256"};

std::string shard_name(int64_t k) {
    char name[64];
    std::snprintf(name, sizeof name, "features-%05lld.safetensors", static_cast<long long>(k));
    return name;
}

// The index of a file named features-<digits>.safetensors, else -1.
int64_t shard_index(const std::string& name) {
    const std::string prefix = "features-", suffix = ".safetensors";
    if (name.size() <= prefix.size() + suffix.size() || name.compare(0, prefix.size(), prefix) != 0 ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
        return -1;
    const std::string digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
    if (digits.size() > 12 || digits.find_first_not_of("0123456789") != std::string::npos) return -1;
    return std::stoll(digits);
}

}  // namespace

// ---- inputs ----------------------------------------------------------------------------------------
bool is_batch_input(const std::string& input) {
    if (input == "-" || (!input.empty() && input[0] == '@')) return true;
    std::error_code ec;
    if (fs::is_directory(input, ec)) return true;
    return has_glob_chars(input) && !fs::exists(fs::symlink_status(input, ec));
}

std::vector<std::string> list_batch_inputs(const std::string& input, std::istream& stdin_stream) {
    if (input == "-" || input == "@-") return read_list(stdin_stream, "the list on stdin");
    if (input[0] == '@') {
        const std::string path = input.substr(1);
        STRATA_CHECK(!path.empty(), "--input @: name the list file after '@' (or - for stdin)");
        std::error_code ec;
        STRATA_CHECK(fs::is_regular_file(path, ec), path, ": the list file (--input @", path,
                     ") is missing or not a regular file");
        std::ifstream f(path);
        STRATA_CHECK(f.is_open(), path, ": cannot open the list file");
        return read_list(f, path);
    }
    std::error_code ec;
    if (fs::is_directory(input, ec)) return list_folder(input);
    return list_glob(input);
}

// ---- flags -----------------------------------------------------------------------------------------
void BatchFlags::add_to(CLI::App* c) {
    const auto positive = [](std::string& text) -> std::string {
        size_t used = 0;
        long long v = 0;
        try {
            v = std::stoll(text, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (used == 0 || used != text.size() || v < 1 || v > (1 << 20))
            return "expected a whole number from 1 to 1048576, got '" + text + "'";
        return "";
    };
    options_.push_back(c->add_option("--batch", batch, "batch mode: images per forward call")
                           ->check(CLI::Validator(positive, "POSITIVE"))->capture_default_str());
    options_.push_back(c->add_option("--shard-size", shard_size, "batch mode: images per output shard (default: "
                                     "1024, fewer when their outputs would pass 256 MiB)")
                           ->check(CLI::Validator(positive, "POSITIVE")));
    options_.push_back(c->add_option("--decode-threads", decode_threads, "batch mode: threads decoding and "
                                     "preprocessing images while the model runs (default: a quarter of the cores, 1 to 8)")
                           ->check(CLI::Validator(positive, "POSITIVE")));
    options_.push_back(c->add_flag("--strict", strict, "batch mode: stop at the first image that cannot be read "
                                   "(exit 2; the shards completed before it are kept) instead of skipping it"));
    options_.push_back(c->add_flag("--quiet", quiet, "batch mode: no progress bar and no summary; errors only"));
    options_.push_back(c->add_flag("--overwrite", overwrite, "batch mode: replace shards in --out written by another "
                                   "run (other inputs, model, weights, layers or preprocessing), and remove stale ones"));
}

std::vector<std::string> BatchFlags::given() const {
    std::vector<std::string> out;
    for (const CLI::Option* o : options_)
        if (o->count() > 0) out.push_back(o->get_name());
    return out;
}

// ---- the run ---------------------------------------------------------------------------------------
struct BatchRun::Impl {
    BatchFlags flags;
    std::string input, out_dir;
    strata::image::Compose transform;
    BatchDescription description;
    std::vector<std::string> paths;
    strata::Shape image_shape;  // [3, H, W] after the transform
    std::string weights_sha256;
    int lock_fd = -1;
};

namespace {

// The [3, H, W] every image becomes, when the transform gives one size whatever the photo's
// (found by running its image steps on two small blank images of different shapes).
strata::Shape fixed_input_shape(const strata::image::Compose& transform) {
    strata::Shape shape;
    for (const auto& hw : {std::pair<int64_t, int64_t>{61, 83}, {83, 61}, {300, 300}}) {
        const strata::image::Image img = transform.apply_image_steps(strata::image::Image(hw.first, hw.second));
        const strata::Shape s{3, img.height, img.width};
        STRATA_CHECK(shape.empty() || s == shape, "batch mode stacks the images' outputs into [N, ...] tensors, so every "
                     "image must have one size after preprocessing; ", transform.repr(), " keeps each photo's own "
                     "size: keep --crop (default 224) or give --resize HxW");
        shape = s;
    }
    return shape;
}

}  // namespace

BatchRun::BatchRun(const BatchFlags& flags, const std::string& input, const std::string& out_dir,
                   strata::image::Compose transform, BatchDescription description)
    : impl_(new Impl) {
    std::unique_ptr<Impl> impl(impl_);
    impl->flags = flags;
    impl->input = input;
    impl->out_dir = out_dir;
    impl->transform = std::move(transform);
    impl->description = std::move(description);
    STRATA_CHECK(!out_dir.empty(), "batch mode (--input ", input, ") writes shards: give --out DIR, a folder");
    STRATA_CHECK(out_dir != "-", "batch mode (--input ", input, ") writes shards to a folder; --out - is for one input");
    const std::string suffix = ".safetensors";
    std::error_code dir_ec;
    STRATA_CHECK(fs::is_directory(out_dir, dir_ec) || out_dir.size() <= suffix.size() ||
                     out_dir.compare(out_dir.size() - suffix.size(), suffix.size(), suffix) != 0,
                 "batch mode (--input ", input, ") writes a folder of shards; --out ", out_dir,
                 " names a .safetensors file: give a folder");
    impl->image_shape = fixed_input_shape(impl->transform);
    impl->paths = list_batch_inputs(input, std::cin);
    // --out DIR: created when missing; one run at a time (an advisory lock on DIR/.strata-features.lock).
    std::error_code ec;
    if (!fs::exists(out_dir, ec)) {
        fs::create_directories(out_dir, ec);
        STRATA_CHECK(!ec, out_dir, ": cannot create the --out folder (", ec.message(), ")");
    }
    STRATA_CHECK(fs::is_directory(out_dir, ec), out_dir, ": --out in batch mode is a folder; this is not one");
    const std::string lock_path = (fs::path(out_dir) / ".strata-features.lock").string();
    impl->lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    STRATA_CHECK(impl->lock_fd >= 0, lock_path, ": cannot create the lock file (", std::strerror(errno),
                 "); is --out writable?");
    STRATA_CHECK(::flock(impl->lock_fd, LOCK_EX | LOCK_NB) == 0, out_dir, ": another strata features run is writing "
                 "this folder (", lock_path, " is locked)");
    // Temporaries of a killed run (SIGKILL, a power cut): the lock says no run is writing them.
    for (const auto& entry : fs::directory_iterator(out_dir, ec)) {
        const std::string name = entry.path().filename().string();
        const size_t tmp = name.find(".safetensors.tmp-");
        if (tmp != std::string::npos && shard_index(name.substr(0, tmp + 12)) >= 0) fs::remove(entry.path(), ec);
    }
    impl->weights_sha256 = impl->description.weights.empty()
                               ? "none: untrained weights (torchvision-style initialisation, seed 0)"
                               : sha256_file(impl->description.weights);
    impl.release();
}

BatchRun::~BatchRun() {
    if (impl_->lock_fd >= 0) ::close(impl_->lock_fd);
    delete impl_;
}

void BatchRun::run(const strata::IntermediateLayerGetter& getter, const strata::RunOptions& options,
                   const DeviceOptions& device) {
    Impl& r = *impl_;
    const BatchFlags& f = r.flags;
    const int64_t n_inputs = static_cast<int64_t>(r.paths.size());
    const int64_t batch = f.batch;
    const strata::Shape& img = r.image_shape;

    // Each output's shape per image, from shape inference (an input too small fails here).
    const auto info = getter.output_info({batch, img[0], img[1], img[2]});
    std::vector<std::string> names;
    std::vector<strata::Shape> per_image;  // without the batch dimension
    std::vector<int64_t> per_image_numel;
    int64_t bytes_per_image = 0;
    for (const auto& o : info) {
        names.push_back(o.name);
        per_image.emplace_back(o.shape.begin() + 1, o.shape.end());
        per_image_numel.push_back(strata::shape_numel(per_image.back()));
        bytes_per_image += per_image_numel.back() * 4;
    }
    // Default: 1024 images, fewer when their outputs would pass 256 MiB (a shard is held in memory
    // while it runs, and once more while the previous one is written).
    const int64_t fitting = (int64_t{256} << 20) / std::max<int64_t>(1, bytes_per_image);
    const int64_t shard_size = f.shard_size > 0 ? f.shard_size : std::max<int64_t>(1, std::min<int64_t>(1024, fitting));
    const int64_t n_shards = (n_inputs + shard_size - 1) / shard_size;

    // The metadata every shard of this run carries (plus its own ids, skipped, slice).
    nlohmann::json outputs_json = names;
    strata::Metadata common{{"format", kFormat},
                            {"strata_version", STRATA_VERSION_STRING},
                            {"model", r.description.model},
                            {"dilation", r.description.dilation.empty() ? "0,0,0" : r.description.dilation},
                            {"layers", r.description.layers},
                            {"outputs", outputs_json.dump()},
                            {"weights", r.description.weights},
                            {"weights_sha256", r.weights_sha256},
                            {"preprocessing", r.transform.repr()},
                            {"input_size", nlohmann::json({img[1], img[2]}).dump()},
                            {"shard_size", std::to_string(shard_size)},
                            {"shards", std::to_string(n_shards)},
                            {"batch", std::to_string(batch)},
                            {"threads", std::to_string(options.threads())},
                            {"packing", options.packing == strata::WeightPacking::Lean ? "lean" : "fast"},
                            {"cpu_level", strata::cpu_level_name(options.cpu)}};
    auto slice_metadata = [&](int64_t k) {
        strata::Metadata m = common;
        const int64_t begin = k * shard_size, end = std::min(n_inputs, begin + shard_size);
        Sha256 digest;
        for (int64_t i = begin; i < end; ++i) {
            digest.update(r.paths[static_cast<size_t>(i)].data(), r.paths[static_cast<size_t>(i)].size());
            digest.update("\n", 1);
        }
        m["shard"] = std::to_string(k);
        m["first_input"] = std::to_string(begin);
        m["inputs"] = std::to_string(end - begin);
        m["inputs_sha256"] = digest.hex_digest();
        return m;
    };

    // Existing shards: complete and this run's -> skipped; unreadable -> recomputed; another
    // run's -> an error unless --overwrite.
    std::vector<int64_t> todo;
    std::vector<fs::path> stale;
    int64_t complete = 0, stored_before = 0;  // complete shards and the images they hold
    {
        std::error_code ec;
        for (const auto& entry : fs::directory_iterator(r.out_dir, ec)) {
            const int64_t k = shard_index(entry.path().filename().string());
            if (k >= n_shards) stale.push_back(entry.path());
        }
        STRATA_CHECK(!ec, r.out_dir, ": cannot list the --out folder (", ec.message(), ")");
        std::sort(stale.begin(), stale.end());
        if (!stale.empty() && !f.overwrite)
            STRATA_FAIL(stale.front().string(), ": a shard beyond this run's ", n_shards,
                     " (another run's, with more inputs or smaller shards); use --overwrite to remove it, or another --out");
    }
    for (int64_t k = 0; k < n_shards; ++k) {
        const fs::path path = fs::path(r.out_dir) / shard_name(k);
        std::error_code ec;
        if (!fs::exists(fs::symlink_status(path, ec))) {
            todo.push_back(k);
            continue;
        }
        const strata::Metadata want = slice_metadata(k);
        strata::Metadata have;
        size_t ids = 0;
        try {
            STRATA_CHECK(fs::is_regular_file(fs::symlink_status(path, ec)), "not a regular file");
            const strata::StateDict state = strata::load(path.string(), {}, &have);
            // Complete: every output, each with one row per stored id.
            ids = nlohmann::json::parse(have.at("ids")).size();
            for (const std::string& name : names)
                STRATA_CHECK(state.contains(name) && state.at(name).dim() >= 1 &&
                                 state.at(name).size(0) == static_cast<int64_t>(ids),
                             "output ", name, " missing or not [", ids, ", ...]");
        } catch (const std::exception& e) {
            if (!f.quiet) std::cerr << "note: " << path.string() << ": incomplete or unreadable (" << one_line(e.what())
                                    << "); computing it again\n";
            todo.push_back(k);
            continue;
        }
        std::string mismatch;
        for (const char* key : kMatchKeys) {
            const auto it = have.find(key);
            const std::string value = it == have.end() ? "(none)" : it->second;
            if (value != want.at(key)) {
                mismatch = std::string(key) + " is '" + value + "', this run's '" + want.at(key) + "'";
                break;
            }
        }
        if (mismatch.empty()) {
            ++complete;
            stored_before += static_cast<int64_t>(ids);
            continue;
        }
        STRATA_CHECK(f.overwrite, path.string(), ": written by another run (its ", mismatch,
                     "); use --overwrite to replace it, or another --out");
        todo.push_back(k);
    }

    // Work: the inputs of the shards to compute, decoded ahead on the pool.
    std::vector<int64_t> order;
    for (int64_t k : todo)
        for (int64_t i = k * shard_size; i < std::min(n_inputs, (k + 1) * shard_size); ++i) order.push_back(i);
    const int64_t total = static_cast<int64_t>(order.size());
    const bool tty = ::isatty(STDERR_FILENO) == 1;
    if (!f.quiet && complete > 0)
        std::cerr << "resuming: " << complete << " of " << n_shards << " shards in " << r.out_dir
                  << " are complete; computing " << todo.size() << "\n";
    const int decode_threads =
        f.decode_threads > 0 ? f.decode_threads
                             : std::max(1, std::min(8, static_cast<int>(std::thread::hardware_concurrency()) / 4));
    Progress progress(total, tty && !f.quiet);
    int64_t done = 0, skipped_total = 0;
    double waited = 0;  // seconds the model waited for decoding
    {
        // The previous shard's write, on a thread of its own while the next shard runs.
        std::future<void> writing;
        DecodePool pool(r.paths, order, r.transform, img, decode_threads,
                        static_cast<size_t>(std::max<int64_t>(2 * batch, 4 * decode_threads)));
        strata::Tensor x = strata::Tensor::empty({batch, img[0], img[1], img[2]});
        const int64_t image_numel = img[0] * img[1] * img[2];
        std::vector<std::vector<float>> acc(names.size());
        for (int64_t k : todo) {
            const int64_t begin = k * shard_size, end = std::min(n_inputs, begin + shard_size);
            for (size_t o = 0; o < names.size(); ++o) {
                acc[o].clear();
                acc[o].reserve(static_cast<size_t>((end - begin) * per_image_numel[o]));
            }
            nlohmann::json ids = nlohmann::json::array(), skipped = nlohmann::json::array();
            int64_t filled = 0;
            // Runs the batch's `filled` images (the rest of x repeats the last one, so that every
            // call has --batch images and an image's features never depend on where it falls).
            auto flush = [&] {
                if (filled == 0) return;
                float* xp = x.data<float>();
                for (int64_t b = filled; b < batch; ++b)
                    std::memcpy(xp + b * image_numel, xp + (filled - 1) * image_numel, sizeof(float) * image_numel);
                const auto out = device.to_host(getter(device.input(x), options));
                for (size_t o = 0; o < names.size(); ++o) {
                    const strata::Tensor t = out.at(names[o]).contiguous();
                    const float* p = t.data<float>();
                    acc[o].insert(acc[o].end(), p, p + filled * per_image_numel[o]);
                }
                done += filled;
                filled = 0;
                progress.advance(done, skipped_total, true);
            };
            for (int64_t i = begin; i < end; ++i) {
                const auto wait_start = std::chrono::steady_clock::now();
                DecodePool::Item item = pool.next();
                waited += std::chrono::duration<double>(std::chrono::steady_clock::now() - wait_start).count();
                const std::string& path = r.paths[static_cast<size_t>(item.index)];
                if (!item.x.defined()) {
                    STRATA_CHECK(!f.strict, item.error, " (--strict: stopped; ", shard_name(k),
                                 " not written, the shards before it are complete)");
                    progress.message("skipped " + item.error);
                    const std::string reason =
                        item.error.compare(0, path.size() + 2, path + ": ") == 0 ? item.error.substr(path.size() + 2) : item.error;
                    skipped.push_back({{"path", path}, {"reason", reason}});
                    ++skipped_total;
                    progress.advance(done, skipped_total);
                    continue;
                }
                std::memcpy(x.data<float>() + filled * image_numel, item.x.data<float>(), sizeof(float) * image_numel);
                ids.push_back(path);
                if (++filled == batch) flush();
            }
            flush();
            // The shard: each output stacked [n, ...] (n may be 0), the ids and the run in its
            // metadata; written (atomically) while the next shard runs, one write at a time.
            if (writing.valid()) writing.get();  // rethrows a failed write
            auto data = std::make_shared<std::vector<std::vector<float>>>(std::move(acc));
            acc.assign(names.size(), {});
            strata::StateDict state;
            const int64_t n = static_cast<int64_t>(ids.size());
            for (size_t o = 0; o < names.size(); ++o) {
                strata::Shape shape{n};
                shape.insert(shape.end(), per_image[o].begin(), per_image[o].end());
                state.insert(names[o], strata::Tensor::from_blob((*data)[o].data(), shape));
            }
            strata::Metadata meta = slice_metadata(k);
            meta["ids"] = ids.dump();
            meta["skipped"] = skipped.dump();
            writing = std::async(std::launch::async, [state = std::move(state), meta = std::move(meta), data,
                                                      path = (fs::path(r.out_dir) / shard_name(k)).string()] {
                strata::save(state, path, meta);
            });
        }
        if (writing.valid()) writing.get();
    }
    for (const fs::path& p : stale) {
        std::error_code ec;
        fs::remove(p, ec);
    }
    const double seconds = progress.seconds();
    progress.clear();
    if (!f.quiet) {
        char rate[128];
        std::snprintf(rate, sizeof rate, "%.1f images/s (%.1f s, %.1f s of it waiting for decoding)",
                      seconds > 0 ? static_cast<double>(done) / seconds : 0.0, seconds, waited);
        std::cerr << "features: " << done << " images written to " << r.out_dir << " in " << todo.size() << " shard"
                  << (todo.size() == 1 ? "" : "s");
        if (complete > 0) std::cerr << " (" << complete << " more already complete)";
        std::cerr << ", " << skipped_total << " skipped, " << rate << "\n";
    }
    // Some images skipped: exit 0 (the summary says how many). None readable at all: an error.
    STRATA_CHECK(done + stored_before > 0, "none of the ", n_inputs, " inputs could be read (each reason is on a "
                 "line above and in the shards' metadata, 'skipped')");
}

}  // namespace strata_cli
