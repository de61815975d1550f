// Batch mode of `strata features` (apps/batch.cpp): --input a folder, a glob, @list.txt or - ,
// written as safetensors shards. Checked through the CLI on a temporary folder made of the
// committed photos (tests/fixtures/images/), copies of them under other names, and one truncated
// JPEG: every stored row equals the single-image result (bit for bit with --packing lean; within
// the suite's tolerance with fast, whose Winograd tile choice depends on the batch size), and is
// the same bits whatever else is in its batch; the ids, the metadata, the skip report, --strict,
// resuming after a lost or damaged shard, refusing another run's shards (--overwrite), the lock,
// the input orders, the progress bar (on a terminal only) and the usage errors.
#ifdef STRATA_CLI_PATH
#include <sys/file.h>
#include <fcntl.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace fs = std::filesystem;
using strata::Tensor;
namespace image = strata::image;

namespace {

const char* const kLayers = "layer1,layer2";
const std::vector<std::string> kPhotos = {"astronaut_landscape.jpg", "camera_gray.jpg",   "chelsea_rgba.png",
                                          "coffee_444.jpg",          "coffee_palette.png", "coins_gray.png",
                                          "rocket_portrait.jpg"};

// A folder of inputs and a weight file (conv1 ... layer2 of a seeded resnet18: what the
// requests run), removed afterwards.
struct BatchFiles {
    fs::path dir, photos;
    std::string weights, tag;
    std::string threads = "1";  // the first test case runs 2 (the kernels' threaded paths)
    std::shared_ptr<strata::models::ResNet> model = strata::models::resnet18(1000, 7);
    std::vector<std::string> inputs;  // the folder's listing order, as the CLI sorts it
    std::string broken;

    explicit BatchFiles(const std::string& name) {
        dir = fs::temp_directory_path() / ("strata_batch_" + name + "_" + std::to_string(::getpid()));
        fs::remove_all(dir);
        photos = dir / "photos";
        fs::create_directories(photos / "sub");
        tag = (dir / "run").string();
        for (const std::string& p : kPhotos) fs::copy_file(strata_test::fixture("images/" + p), photos / p);
        // A copy under another name and case, in a subfolder; a file that is not an image by name.
        fs::copy_file(strata_test::fixture("images/coffee_444.jpg"), photos / "sub" / "COPY.JPEG");
        std::ofstream(photos / "notes.txt") << "not an image, not listed";
        // A truncated JPEG: the first 3000 bytes of a photo.
        const std::string bytes = strata_test::slurp(strata_test::fixture("images/astronaut_landscape.jpg"));
        broken = (photos / "broken.jpg").string();
        std::ofstream(broken, std::ios::binary) << bytes.substr(0, 3000);
        inputs = {(photos / "astronaut_landscape.jpg").string(), broken};
        for (size_t i = 1; i < kPhotos.size(); ++i) inputs.push_back((photos / kPhotos[i]).string());
        inputs.push_back((photos / "sub" / "COPY.JPEG").string());
        strata::StateDict state;
        for (const auto& [key, t] : model->state_dict())
            if (key.rfind("conv1.", 0) == 0 || key.rfind("bn1.", 0) == 0 || key.rfind("layer1.", 0) == 0 ||
                key.rfind("layer2.", 0) == 0)
                state.insert(key, t);
        weights = (dir / "w.safetensors").string();
        strata::save(state, weights);
    }
    ~BatchFiles() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
    // `features` in batch mode on `input` into `out` with the test's model, small images.
    strata_test::CliRun run(const std::string& input, const std::string& out, const std::string& extra = "") const {
        return strata_test::run_cli("features --input " + input + " --out " + out + " --weights " + weights +
                                        " --layers " + kLayers + " --resize 64 --crop 64 --threads " + threads + " " + extra,
                                    tag);
    }
};

struct Shard {
    strata::StateDict tensors;
    strata::Metadata meta;
    std::vector<std::string> ids;
};
Shard load_shard(const fs::path& path) {
    Shard s;
    s.tensors = strata::load(path.string(), {}, &s.meta);
    s.ids = nlohmann::json::parse(s.meta.at("ids")).get<std::vector<std::string>>();
    return s;
}

// Row i of an [n, ...] tensor, as [1, ...].
Tensor row(const Tensor& t, int64_t i) {
    REQUIRE(i < t.size(0));
    strata::Shape shape = t.shape();
    shape[0] = 1;
    Tensor out = Tensor::empty(shape);
    const int64_t per = out.numel();
    std::memcpy(out.data<float>(), t.contiguous().data<float>() + i * per, sizeof(float) * per);
    return out;
}

// The single-image result (what `features --input photo` computes), in this process.
strata::OrderedDict<Tensor> single(const BatchFiles& f, const std::string& path, strata::WeightPacking packing) {
    strata::RunOptions options(strata::Backend::Cpu, 2);
    options.packing = packing;
    const image::Compose transform({std::make_shared<image::Resize>(64), std::make_shared<image::CenterCrop>(64),
                                    std::make_shared<image::ToTensor>(),
                                    std::make_shared<image::Normalize>(image::imagenet_mean(), image::imagenet_std())});
    const strata::IntermediateLayerGetter getter(*f.model, {{"layer1", "layer1"}, {"layer2", "layer2"}});
    return getter(image::stack({transform(image::load(path))}), options);
}

std::vector<std::string> shard_files(const fs::path& dir) {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

std::string sha256sum(const std::string& path, const std::string& tag) {
    const std::string out = tag + "_sha.txt";
    REQUIRE(std::system(("sha256sum " + path + " > " + out).c_str()) == 0);
    const std::string text = strata_test::slurp(out);
    std::remove(out.c_str());
    return text.substr(0, 64);
}

}  // namespace

TEST_CASE("batch: a folder gives shards of stacked outputs equal to single-image features, with ids and metadata") {
    BatchFiles f("folder");
    f.threads = "2";
    const fs::path out = f.dir / "out";
    // 9 inputs (the truncated JPEG among them), shards of 4: 4 + 4 + 1 inputs.
    const auto run = f.run(f.photos.string(), out.string(), "--batch 3 --shard-size 4 --packing lean");
    INFO(run.err);
    REQUIRE(run.rc == 0);
    CHECK(run.out.empty());
    // One line for the bad file (path: reason), a summary, the no-progress-bar output of a non-terminal.
    CHECK_THAT(run.err, Catch::Contains("skipped " + f.broken + ": truncated JPEG data (the file ends before the image does)\n"));
    CHECK_THAT(run.err, Catch::Contains("features: 8 images written to " + out.string() + " in 3 shards, 1 skipped, "));
    CHECK(run.err.find('\r') == std::string::npos);
    CHECK(std::count(run.err.begin(), run.err.end(), '\n') == 2);
    CHECK(shard_files(out) == std::vector<std::string>{".strata-features.lock", "features-00000.safetensors",
                                                       "features-00001.safetensors", "features-00002.safetensors"});

    const std::string sha = sha256sum(f.weights, f.tag);
    std::vector<std::string> ids;
    for (int k = 0; k < 3; ++k) {
        const Shard s = load_shard(out / ("features-0000" + std::to_string(k) + ".safetensors"));
        INFO("shard " << k);
        CHECK(s.tensors.keys() == std::vector<std::string>{"layer1", "layer2"});
        CHECK(s.tensors.at("layer1").shape() == strata::Shape{static_cast<int64_t>(s.ids.size()), 64, 16, 16});
        CHECK(s.tensors.at("layer2").shape() == strata::Shape{static_cast<int64_t>(s.ids.size()), 128, 8, 8});
        CHECK(s.meta.at("format") == "strata.features.v1");
        CHECK(s.meta.at("strata_version") == STRATA_VERSION_STRING);
        CHECK(s.meta.at("model") == "resnet18");
        CHECK(s.meta.at("layers") == kLayers);
        CHECK(s.meta.at("outputs") == "[\"layer1\",\"layer2\"]");
        CHECK(s.meta.at("weights") == f.weights);
        CHECK(s.meta.at("weights_sha256") == sha);
        CHECK(s.meta.at("preprocessing") == "Compose(Resize(size=64, interpolation=bilinear, max_size=None, antialias=True), "
                                            "CenterCrop(size=(64, 64)), ToTensor(), Normalize(mean=[0.485, 0.456, 0.406], "
                                            "std=[0.229, 0.224, 0.225]))");
        CHECK(s.meta.at("input_size") == "[64,64]");
        CHECK(s.meta.at("shard") == std::to_string(k));
        CHECK(s.meta.at("shards") == "3");
        CHECK(s.meta.at("shard_size") == "4");
        CHECK(s.meta.at("first_input") == std::to_string(4 * k));
        CHECK(s.meta.at("inputs") == (k < 2 ? "4" : "1"));
        CHECK(s.meta.at("batch") == "3");
        CHECK(s.meta.at("packing") == "lean");
        const auto skipped = nlohmann::json::parse(s.meta.at("skipped"));
        if (k == 0) {
            REQUIRE(skipped.size() == 1);
            CHECK(skipped[0].at("path") == f.broken);
            CHECK(skipped[0].at("reason") == "truncated JPEG data (the file ends before the image does)");
        } else {
            CHECK(skipped.empty());
        }
        // Each row is that image's single-image result, bit for bit (lean packing: the direct
        // kernels sum in one order whatever the batch and the thread split).
        for (size_t i = 0; i < s.ids.size(); ++i)
            for (const auto& [name, t] : single(f, s.ids[i], strata::WeightPacking::Lean))
                STRATA_REQUIRE_CMP(strata_test::compare_bitwise(row(s.tensors.at(name), static_cast<int64_t>(i)), t),
                                   s.ids[i] << " " << name);
        ids.insert(ids.end(), s.ids.begin(), s.ids.end());
    }
    std::vector<std::string> expected = f.inputs;
    expected.erase(expected.begin() + 1);  // the truncated JPEG
    CHECK(ids == expected);

    // `features --input photo --out` (the single-image CLI) gives the same bits as the shard's row.
    const std::string one = (f.dir / "one.safetensors").string();
    const auto single_run = strata_test::run_cli("features --input " + expected[2] + " --out " + one + " --weights " +
                                                     f.weights + " --layers " + kLayers +
                                                     " --resize 64 --crop 64 --threads 2 --packing lean",
                                                 f.tag);
    REQUIRE(single_run.rc == 0);
    const Shard s0 = load_shard(out / "features-00000.safetensors");
    const strata::StateDict one_out = strata::load(one);
    STRATA_REQUIRE_CMP(strata_test::compare_bitwise(row(s0.tensors.at("layer2"), 2), one_out.at("layer2")), "CLI single");
}

TEST_CASE("batch: with fast packing a row does not depend on the rest of its batch, and is within tolerance of one image") {
    const BatchFiles f("fast");
    // The same images in two orders (so other batch neighbours and another last, padded batch).
    std::string forward, backward;
    for (const std::string& p : f.inputs)
        if (p != f.broken) forward += p + "\n";
    for (auto it = f.inputs.rbegin(); it != f.inputs.rend(); ++it)
        if (*it != f.broken) backward += *it + "\r\n";  // CRLF lines are read too
    std::ofstream(f.dir / "forward.txt") << forward;
    std::ofstream(f.dir / "backward.txt") << "\n" << backward << "\n";  // blank lines are dropped
    const auto a = f.run("@" + (f.dir / "forward.txt").string(), (f.dir / "a").string(), "--batch 3 --quiet");
    const auto b = f.run("@" + (f.dir / "backward.txt").string(), (f.dir / "b").string(), "--batch 3 --quiet");
    INFO(a.err << b.err);
    REQUIRE(a.rc == 0);
    REQUIRE(b.rc == 0);
    CHECK(a.err.find("features:") == std::string::npos);  // --quiet: no summary
    const Shard sa = load_shard(f.dir / "a" / "features-00000.safetensors");
    const Shard sb = load_shard(f.dir / "b" / "features-00000.safetensors");
    CHECK(sa.meta.at("packing") == "fast");  // batch mode's default
    REQUIRE(sa.ids.size() == 8);
    REQUIRE(sb.ids.size() == 8);
    for (size_t i = 0; i < sa.ids.size(); ++i) {
        const size_t j = sa.ids.size() - 1 - i;
        REQUIRE(sb.ids[j] == sa.ids[i]);
        const auto one = single(f, sa.ids[i], strata::WeightPacking::Fast);
        for (const std::string name : {"layer1", "layer2"}) {
            STRATA_REQUIRE_CMP(strata_test::compare_bitwise(row(sa.tensors.at(name), static_cast<int64_t>(i)),
                                                            row(sb.tensors.at(name), static_cast<int64_t>(j))),
                               sa.ids[i] << " " << name << " in two batches");
            STRATA_REQUIRE_CLOSE(row(sa.tensors.at(name), static_cast<int64_t>(i)), one.at(name), 1e-4,
                                 sa.ids[i] + " " + name + " vs one image");
        }
    }
}

TEST_CASE("batch: --strict stops at the first unreadable image and keeps only complete shards") {
    const BatchFiles f("strict");
    const fs::path out = f.dir / "out";
    const auto run = f.run(f.photos.string(), out.string(), "--shard-size 1 --strict");
    CHECK(run.rc == 2);
    CHECK(run.err == "error: " + f.broken + ": truncated JPEG data (the file ends before the image does) (--strict: "
                     "stopped; features-00001.safetensors not written, the shards before it are complete)\n");
    CHECK(shard_files(out) == std::vector<std::string>{".strata-features.lock", "features-00000.safetensors"});
    CHECK(load_shard(out / "features-00000.safetensors").ids == std::vector<std::string>{f.inputs[0]});
}

TEST_CASE("batch: a rerun resumes: complete shards are kept, lost or damaged ones computed again") {
    const BatchFiles f("resume");
    const fs::path out = f.dir / "out";
    const std::string args = "--batch 2 --shard-size 3";  // 9 inputs: 3 shards
    auto run = f.run(f.photos.string(), out.string(), args);
    INFO(run.err);
    REQUIRE(run.rc == 0);
    std::vector<std::string> first;
    for (int k = 0; k < 3; ++k) first.push_back(strata_test::slurp((out / ("features-0000" + std::to_string(k) + ".safetensors")).string()));
    // A rerun over a complete output computes nothing.
    run = f.run(f.photos.string(), out.string(), args);
    REQUIRE(run.rc == 0);
    CHECK_THAT(run.err, Catch::Contains("resuming: 3 of 3 shards in " + out.string() + " are complete; computing 0\n"));
    CHECK_THAT(run.err, Catch::Contains("features: 0 images written to " + out.string() + " in 0 shards (3 more already complete)"));
    // A killed run: the last shard missing, a leftover temporary; and a damaged shard.
    fs::remove(out / "features-00002.safetensors");
    std::ofstream(out / "features-00002.safetensors.tmp-0123456789abcdef") << "partial";
    std::ofstream(out / "features-00001.safetensors", std::ios::binary) << first[1].substr(0, first[1].size() / 2);
    const auto kept_time = fs::last_write_time(out / "features-00000.safetensors");
    run = f.run(f.photos.string(), out.string(), args);
    INFO(run.err);
    REQUIRE(run.rc == 0);
    CHECK_THAT(run.err, Catch::Contains("features-00001.safetensors: incomplete or unreadable ("));
    CHECK_THAT(run.err, Catch::Contains("resuming: 1 of 3 shards in " + out.string() + " are complete; computing 2\n"));
    CHECK_THAT(run.err, Catch::Contains("features: 6 images written to " + out.string() + " in 2 shards (1 more already complete), 0 skipped"));
    CHECK(fs::last_write_time(out / "features-00000.safetensors") == kept_time);
    // The recomputed shards are the same bytes as the first run's (the same batches of --batch images).
    for (int k = 1; k < 3; ++k)
        CHECK(strata_test::slurp((out / ("features-0000" + std::to_string(k) + ".safetensors")).string()) == first[k]);
    CHECK(shard_files(out) == std::vector<std::string>{".strata-features.lock", "features-00000.safetensors",
                                                       "features-00001.safetensors", "features-00002.safetensors"});

    // Another run's shards are refused, then replaced with --overwrite; shards beyond the run removed.
    run = strata_test::run_cli("features --input " + f.photos.string() + " --out " + out.string() + " --weights " +
                                   f.weights + " --layers layer1 --resize 64 --crop 64 --threads 2 " + args,
                               f.tag);
    CHECK(run.rc == 2);
    CHECK(run.err == "error: " + (out / "features-00000.safetensors").string() + ": written by another run (its layers "
                     "is 'layer1,layer2', this run's 'layer1'); use --overwrite to replace it, or another --out\n");
    run = f.run(f.photos.string(), out.string(), "--batch 2 --shard-size 5");
    CHECK(run.rc == 2);
    CHECK_THAT(run.err, Catch::Contains("features-00002.safetensors: a shard beyond this run's 2"));
    run = f.run(f.photos.string(), out.string(), "--batch 2 --shard-size 5 --overwrite");
    INFO(run.err);
    REQUIRE(run.rc == 0);
    CHECK(shard_files(out) == std::vector<std::string>{".strata-features.lock", "features-00000.safetensors",
                                                       "features-00001.safetensors"});
    CHECK(load_shard(out / "features-00001.safetensors").meta.at("shard_size") == "5");

    // One run at a time per folder.
    const int fd = ::open((out / ".strata-features.lock").c_str(), O_RDWR);
    REQUIRE(fd >= 0);
    REQUIRE(::flock(fd, LOCK_EX | LOCK_NB) == 0);
    run = f.run(f.photos.string(), out.string(), "--batch 2 --shard-size 5");
    ::close(fd);
    CHECK(run.rc == 2);
    CHECK_THAT(run.err, Catch::Contains("another strata features run is writing this folder"));
}

TEST_CASE("batch: inputs from a glob, a list on stdin, the progress bar on a terminal, usage errors") {
    const BatchFiles f("inputs");
    // A glob: sorted matches.
    auto run = f.run("'" + (f.photos / "co*.*").string() + "'", (f.dir / "g").string());
    INFO(run.err);
    REQUIRE(run.rc == 0);
    CHECK(load_shard(f.dir / "g" / "features-00000.safetensors").ids ==
          std::vector<std::string>{(f.photos / "coffee_444.jpg").string(), (f.photos / "coffee_palette.png").string(),
                                   (f.photos / "coins_gray.png").string()});
    // - : the list from stdin, in its order (relative paths as written).
    std::ofstream(f.dir / "list.txt") << f.inputs[6] << "\n" << f.inputs[0] << "\n";
    run = f.run("- < " + (f.dir / "list.txt").string(), (f.dir / "s").string());
    REQUIRE(run.rc == 0);
    CHECK(load_shard(f.dir / "s" / "features-00000.safetensors").ids == std::vector<std::string>{f.inputs[6], f.inputs[0]});

    // On a terminal (script(1) gives the CLI one), a progress bar: done/total, images/s, ETA.
    if (std::system("command -v script >/dev/null 2>&1") == 0) {
        const std::string log = (f.dir / "tty.txt").string();
        const std::string cmd = std::string("script -qec \"") + STRATA_CLI_PATH + " features --input " + f.photos.string() +
                                " --out " + (f.dir / "t").string() + " --weights " + f.weights +
                                " --layers layer1 --resize 64 --crop 64 --threads 2 --batch 2\" /dev/null > " + log;
        REQUIRE(std::system(cmd.c_str()) == 0);
        const std::string tty = strata_test::slurp(log);
        INFO(tty);
        CHECK_THAT(tty, Catch::Contains("9/9 images"));
        CHECK_THAT(tty, Catch::Contains("images/s  ETA "));
        CHECK_THAT(tty, Catch::Contains("1 skipped"));
        CHECK_THAT(tty, Catch::Contains("features: 8 images written"));
    }

    const struct {
        std::string input, extra, error;
    } cases[] = {
        {"'" + (f.photos / "*.gif").string() + "'", "", ".gif: no file matches the pattern"},
        {"@" + (f.dir / "missing.txt").string(), "", "missing.txt: the list file (--input @"},
        {f.photos.string(), "--out-is-a-file", "--out in batch mode is a folder"},
    };
    for (const auto& c : cases) {
        INFO(c.input << " " << c.extra);
        const std::string out = c.extra == "--out-is-a-file" ? (f.dir / "list.txt").string() : (f.dir / "e").string();
        const auto r = f.run(c.input, out, c.extra == "--out-is-a-file" ? "" : c.extra);
        CHECK(r.rc == 2);
        CHECK_THAT(r.err, Catch::Contains(c.error));
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    }
    fs::create_directories(f.dir / "bad");
    fs::copy_file(f.broken, f.dir / "bad" / "broken.jpg");
    auto none = f.run((f.dir / "bad").string(), (f.dir / "n").string());
    CHECK(none.rc == 2);
    CHECK_THAT(none.err, Catch::EndsWith("error: none of the 1 inputs could be read (each reason is on a line above and "
                                         "in the shards' metadata, 'skipped')\n"));
    fs::create_directories(f.dir / "empty");
    auto r = f.run((f.dir / "empty").string(), (f.dir / "e").string());
    CHECK(r.rc == 2);
    CHECK_THAT(r.err, Catch::Contains("the folder holds no *.jpg, *.jpeg or *.png file"));
    r = strata_test::run_cli("features --input " + f.photos.string() + " --out " + (f.dir / "e").string() +
                                 " --layers layer1 --resize 64 --crop none", f.tag);
    CHECK(r.rc == 2);
    CHECK_THAT(r.err, Catch::Contains("every image must have one size after preprocessing; Compose(Resize(size=64, "));
    CHECK_THAT(r.err, Catch::Contains("keep --crop (default 224) or give --resize HxW"));
    r = strata_test::run_cli("features --input " + f.photos.string() + " --layers layer1 --resize 64", f.tag);
    CHECK(r.rc == 2);
    CHECK_THAT(r.err, Catch::Contains("writes shards: give --out DIR"));
    r = strata_test::run_cli("features --input " + f.inputs[0] + " --batch 4 --layers layer1", f.tag);
    CHECK(r.rc == 2);
    CHECK_THAT(r.err, Catch::Contains("--batch applies to batch mode"));
}
#endif
