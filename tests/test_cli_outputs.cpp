// What `strata features` does with its outputs besides --out FILE: --stats, --json (and the
// --json of layers, convert, bench), --save-maps DIR (torchvision's make_grid pictures, pixel
// for pixel against tests/fixtures/maps/), --out - (safetensors on stdout); and
// strata::image::encode_png / save_png.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace fs = std::filesystem;
using strata::Tensor;
using Json = nlohmann::json;

namespace {

// A folder of its own per process (ctest runs test cases in parallel in one folder).
struct Workdir {
    fs::path root = fs::path("outputs_" + std::to_string(::getpid()));
    Workdir() {
        fs::remove_all(root);
        fs::create_directories(root);
    }
    ~Workdir() {
        std::error_code ignored;
        for (const auto& entry : fs::recursive_directory_iterator(root, ignored))
            fs::permissions(entry.path(), fs::perms::owner_all, fs::perm_options::add, ignored);
        fs::remove_all(root, ignored);
    }
    std::string operator/(const std::string& name) const { return (root / name).string(); }
};

strata_test::CliRun run_cli(const std::string& args, const std::string& env = "") {
    return strata_test::run_cli(args, "outputs", env);
}

void require_one_line_error(const strata_test::CliRun& r, const std::string& fragment) {
    INFO("stderr: " << r.err);
    REQUIRE(r.rc == 2);
    REQUIRE(r.out.empty());
    REQUIRE(r.err.rfind("error: ", 0) == 0);
    REQUIRE(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    REQUIRE(r.err.find(fragment) != std::string::npos);
}

struct MapFixture {
    strata::StateDict tensors;
    Json configs;
};
const MapFixture& map_fixture() {
    static const MapFixture f = [] {
        MapFixture out;
        strata::Metadata meta;
        out.tensors = strata::load(strata_test::fixture("maps/expected.safetensors"), {}, &meta);
        out.configs = Json::parse(meta.at("configs"));
        return out;
    }();
    return f;
}

// A decoded PNG's first channel (save_png writes gray; image::load replicates it to RGB).
std::vector<uint8_t> gray_pixels(const strata::image::Image& img) {
    std::vector<uint8_t> out(static_cast<size_t>(img.height * img.width));
    for (size_t i = 0; i < out.size(); ++i) {
        const uint8_t* p = img.pixels.data() + 3 * i;
        REQUIRE((p[0] == p[1] && p[1] == p[2]));
        out[i] = p[0];
    }
    return out;
}

// min, max, mean and sample std (n - 1) in double, straight from the values.
std::array<double, 4> direct_stats(const Tensor& t) {
    const Tensor c = t.contiguous();
    const float* p = c.data<float>();
    double lo = p[0], hi = p[0], sum = 0;
    for (int64_t i = 0; i < c.numel(); ++i) {
        lo = std::min(lo, double(p[i]));
        hi = std::max(hi, double(p[i]));
        sum += p[i];
    }
    const double mean = sum / double(c.numel());
    double sq = 0;
    for (int64_t i = 0; i < c.numel(); ++i) sq += (p[i] - mean) * (p[i] - mean);
    return {lo, hi, mean, std::sqrt(sq / double(c.numel() - 1))};
}

}  // namespace

TEST_CASE("cli outputs: --stats equals min, max, mean and sample std of the saved tensors") {
    Workdir dir;
    const std::string out = dir / "f.safetensors";
    const auto r = run_cli("features --layers layer1:feat1,layer2 --stats --json --threads 2 --out " + out);
    INFO(r.err);
    REQUIRE(r.rc == 0);
    const Json doc = Json::parse(r.out);
    const strata::StateDict saved = strata::load(out);
    REQUIRE(doc["outputs"].size() == 2);
    for (const Json& o : doc["outputs"]) {
        const std::string name = o["name"];
        const Tensor& t = saved.at(name);
        REQUIRE(o["shape"].get<strata::Shape>() == t.shape());
        const auto s = direct_stats(t);
        const Json& js = o["stats"];
        INFO(name << ": " << js.dump());
        CHECK(js["min"].get<double>() == s[0]);
        CHECK(js["max"].get<double>() == s[1]);
        CHECK(std::fabs(js["mean"].get<double>() - s[2]) <= 1e-12 * std::fabs(s[2]));
        CHECK(std::fabs(js["std"].get<double>() - s[3]) <= 1e-12 * s[3]);
        CHECK(js["count"] == t.numel());
        CHECK(js["finite"] == t.numel());
        CHECK(js["nan"] == 0);
        CHECK(js["inf"] == 0);
    }
    // The text table: a header and one row per output, after the usual line.
    const auto text = run_cli("features --layers layer1:feat1,layer2 --stats --threads 2");
    REQUIRE(text.rc == 0);
    REQUIRE(text.out.rfind("[('feat1', [1, 64, 56, 56]), ('layer2', [1, 128, 28, 28])]\noutput  shape", 0) == 0);
    REQUIRE(text.out.find("\nfeat1   [1, 64, 56, 56]") != std::string::npos);
    REQUIRE(text.out.find("\nlayer2  [1, 128, 28, 28]") != std::string::npos);
    REQUIRE(std::count(text.out.begin(), text.out.end(), '\n') == 4);
}

TEST_CASE("cli outputs: --stats counts NaN and Inf and leaves them out; std is the sample std") {
    Workdir dir;
    Tensor x = Tensor::empty({1, 2, 2, 2});
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    const float values[8] = {1, 2, 3, 4, nan, inf, -inf, 7};
    std::copy(values, values + 8, x.data<float>());
    strata::save_npy(x, dir / "x.npy");
    // --layers x returns the input itself: the values above, unchanged.
    const auto r = run_cli("features --input " + (dir / "x.npy") + " --layers x:v --stats --json");
    INFO(r.err);
    REQUIRE(r.rc == 0);
    const Json s = Json::parse(r.out)["outputs"][0]["stats"];
    CHECK(s["count"] == 8);
    CHECK(s["finite"] == 5);
    CHECK(s["nan"] == 1);
    CHECK(s["inf"] == 2);
    CHECK(s["min"] == 1.0);
    CHECK(s["max"] == 7.0);
    CHECK(s["mean"] == 3.4);  // (1 + 2 + 3 + 4 + 7) / 5
    // torch.tensor([1., 2, 3, 4, 7]).std() = 2.3021729... (divisor n - 1)
    CHECK(std::fabs(s["std"].get<double>() - std::sqrt(21.2 / 4)) < 1e-12);
    const auto text = run_cli("features --input " + (dir / "x.npy") + " --layers x:v --stats");
    REQUIRE(text.rc == 0);
    REQUIRE(text.out.find("nan  inf") != std::string::npos);  // the count columns appear

    // One value: no sample std (torch gives nan); JSON has no NaN, so null.
    strata::save_npy(Tensor::full({1, 1, 1, 1}, 2.5f), dir / "one.npy");
    const auto one = run_cli("features --input " + (dir / "one.npy") + " --layers x --stats --json");
    REQUIRE(one.rc == 0);
    CHECK(Json::parse(one.out)["outputs"][0]["stats"]["std"].is_null());
    CHECK(Json::parse(one.out)["outputs"][0]["stats"]["mean"] == 2.5);
}

TEST_CASE("cli outputs: --json makes stdout one JSON document; names with quotes survive") {
    Workdir dir;
    const std::string weird = "a\"b\\c 'q'";  // a quote, a backslash, a space, single quotes
    const auto r = run_cli("features --layers 'layer1:a\"b\\c '\\''q'\\''',layer2 --json --threads 2 --out " +
                           (dir / "o.safetensors"));
    INFO(r.err);
    REQUIRE(r.rc == 0);
    const Json doc = Json::parse(r.out);  // throws on anything but one document
    CHECK(doc["model"] == "resnet18");
    CHECK(doc["weights"].is_null());
    CHECK(doc["input"].is_null());
    CHECK(doc["dilation"].is_null());
    CHECK(doc["preprocessing"].is_null());
    CHECK(doc["input_shape"] == Json({1, 3, 224, 224}));
    CHECK(doc["out"] == dir / "o.safetensors");
    CHECK(doc["forward_ms"].get<double>() > 0);
    REQUIRE(doc["layers"].size() == 2);
    CHECK(doc["layers"][0]["layer"] == "layer1");
    CHECK(doc["layers"][0]["name"] == weird);
    REQUIRE(doc["outputs"].size() == 2);
    CHECK(doc["outputs"][0]["name"] == weird);
    CHECK(doc["outputs"][0]["shape"] == Json({1, 64, 56, 56}));
    CHECK(doc["outputs"][1]["name"] == "layer2");
    CHECK(!doc["outputs"][0].contains("stats"));
    CHECK(!doc.contains("maps"));
    CHECK(strata::load(dir / "o.safetensors").keys() == std::vector<std::string>{weird, "layer2"});
    CHECK(r.err.find("untrained") != std::string::npos);  // notes stay on stderr

    // A photo: input and preprocessing are named.
    const std::string photo = strata_test::fixture("images/coins_gray.png");
    const auto p = run_cli("features --input " + photo + " --layers layer1 --json --threads 2");
    REQUIRE(p.rc == 0);
    const Json pd = Json::parse(p.out);
    CHECK(pd["input"] == photo);
    CHECK(pd["preprocessing"].get<std::string>().find("CenterCrop") != std::string::npos);

    // Errors stay one line on stderr, nothing on stdout.
    require_one_line_error(run_cli("features --json --layers nope"), "nope");
}

TEST_CASE("cli outputs: layers, convert and bench --json; classify --json is one document too") {
    Workdir dir;
    const auto text = run_cli("layers --size 97x131");
    const auto json = run_cli("layers --size 97x131 --json");
    REQUIRE(json.rc == 0);
    const Json doc = Json::parse(json.out);
    CHECK(doc["model"] == "resnet18");
    CHECK(doc["listing"] == "children");
    CHECK(doc["size"] == Json({97, 131}));
    CHECK(doc["batch"] == 1);
    REQUIRE(doc["rows"].size() == size_t(std::count(text.out.begin(), text.out.end(), '\n')));
    CHECK(doc["rows"][0]["name"] == "conv1");
    CHECK(doc["rows"][0]["type"] == "Conv2d");
    CHECK(doc["rows"][0]["shape"] == Json({1, 64, 49, 66}));
    CHECK(doc["rows"][0]["channels"] == 64);
    CHECK(doc["rows"][0]["stride"] == 2);
    CHECK(doc["rows"].back()["name"] == "fc");
    CHECK(doc["rows"].back()["stride"].is_null());  // "-" in text

    const auto nodes_text = run_cli("layers --nodes");
    const Json nodes = Json::parse(run_cli("layers --nodes --json").out);
    CHECK(nodes["listing"] == "nodes");
    CHECK(nodes["rows"].size() == size_t(std::count(nodes_text.out.begin(), nodes_text.out.end(), '\n')));
    CHECK(!nodes["rows"][0].contains("type"));
    CHECK(nodes["rows"][0]["name"] == "x");

    const Json all = Json::parse(run_cli("layers --all --json").out);
    CHECK(all["listing"] == "all");
    CHECK(all["rows"][0]["path"] == "conv1");
    CHECK(all["rows"][0]["type"] == "Conv2d");
    CHECK(all["rows"][0]["args"].get<std::string>().find("kernel_size=(7, 7)") != std::string::npos);

    // convert: what was written.
    auto m = strata::models::resnet18();
    strata::save(m->state_dict(), dir / "w.safetensors");
    const auto c = run_cli("convert " + (dir / "w.safetensors") + " " + (dir / "c.safetensors") + " --json");
    INFO(c.err);
    REQUIRE(c.rc == 0);
    const Json cd = Json::parse(c.out);
    CHECK(cd["input"] == dir / "w.safetensors");
    CHECK(cd["output"] == dir / "c.safetensors");
    CHECK(cd["tensors"] == m->state_dict().size());
    int64_t values = 0;
    for (const auto& item : m->state_dict()) values += item.second.numel();
    CHECK(cd["values"] == values);
    CHECK(cd["bytes"] == fs::file_size(dir / "c.safetensors"));
    require_one_line_error(run_cli("convert " + (dir / "missing.pth") + " " + (dir / "d.safetensors") + " --json"),
                           "missing.pth");

    // bench always writes JSON; --json is accepted and changes nothing.
    const auto b = run_cli("bench --json --size 32 --iters 1 --warmup 1 --threads 1");
    REQUIRE(b.rc == 0);
    CHECK(Json::parse(b.out)["iters"] == 1);
}

TEST_CASE("cli outputs: --save-maps draws torchvision's make_grid pixel for pixel") {
    Workdir dir;
    const MapFixture& f = map_fixture();
    const Tensor& x = f.tensors.at("input");
    strata::save_npy(x, dir / "maps.npy");
    for (const auto& [config, c] : f.configs.items()) {
        const std::string out = dir / config;
        // --layers x:m returns the input tensor itself: the maps torchvision drew.
        const auto r = run_cli("features --input " + (dir / "maps.npy") + " --layers x:m --save-maps " + out + " " +
                               c["flags"].get<std::string>());
        INFO(config << ": " << r.err);
        REQUIRE(r.rc == 0);
        for (int64_t n = 0; n < x.size(0); ++n) {
            const std::string file = out + "/m_" + std::to_string(n) + ".png";  // batch of 2: one per image
            const strata::image::Image img = strata::image::load(file);
            const Tensor& e = f.tensors.at("grid." + config + "." + std::to_string(n));
            REQUIRE(img.height == e.size(0));
            REQUIRE(img.width == e.size(1));
            const std::vector<uint8_t> got = gray_pixels(img);
            int64_t differing = 0;
            for (size_t i = 0; i < got.size(); ++i) differing += got[i] != e.data<float>()[i];
            CHECK(differing == 0);  // exact: same float32 arithmetic as torch's
        }
        // Geometry: cols x (tile + 2) + 2 wide, rows x (tile + 2) + 2 high; a single tile alone.
        const int64_t k = c["channels"], nrow = c["nrow"], s = c["scale"];
        const int64_t cols = std::min(k, nrow), rows = (k + cols - 1) / cols;
        const strata::image::Image img = strata::image::load(out + "/m_0.png");
        if (k == 1) {
            CHECK(img.height == 5 * s);
            CHECK(img.width == 7 * s);
        } else {
            CHECK(img.height == rows * (5 * s + 2) + 2);
            CHECK(img.width == cols * (7 * s + 2) + 2);
        }
    }
}

TEST_CASE("cli outputs: --save-maps on a photo: geometry, upscaling, normalisation, skipped outputs") {
    Workdir dir;
    const std::string photo = strata_test::fixture("images/astronaut_landscape.jpg");
    const auto r = run_cli("features --input " + photo + " --layers layer1,layer4,avgpool,fc:logits --save-maps " +
                           (dir / "maps") + " --json --threads 2");
    INFO(r.err);
    REQUIRE(r.rc == 0);
    const Json maps = Json::parse(r.out)["maps"];
    REQUIRE(maps.size() == 4);
    CHECK(maps[0]["file"] == dir / "maps" + "/layer1.png");  // a batch of one: no index in the name
    CHECK(maps[0]["scale"] == 1);
    CHECK(maps[1]["scale"] == 8);  // 7x7 -> 56x56
    CHECK(maps[1]["channels"] == 64);
    CHECK(maps[1]["of"] == 512);
    CHECK(maps[2]["skipped"].is_string());  // avgpool: 1x1
    CHECK(maps[3]["skipped"].is_string());  // logits: rank 2
    CHECK(r.err.find("skipped 'avgpool'") != std::string::npos);
    CHECK(r.err.find("skipped 'logits'") != std::string::npos);
    CHECK(!fs::exists(dir / "maps/avgpool.png"));
    CHECK(!fs::exists(dir / "maps/logits.png"));

    for (const char* name : {"layer1", "layer4"}) {
        const strata::image::Image img = strata::image::load(dir / "maps" + "/" + name + ".png");
        REQUIRE(img.height == 8 * (56 + 2) + 2);  // 466
        REQUIRE(img.width == 8 * (56 + 2) + 2);
        const std::vector<uint8_t> px = gray_pixels(img);
        for (int64_t tr = 0; tr < 8; ++tr)
            for (int64_t tc = 0; tc < 8; ++tc) {
                uint8_t lo = 255, hi = 0;
                for (int64_t y = 0; y < 56; ++y)
                    for (int64_t xx = 0; xx < 56; ++xx) {
                        const uint8_t v = px[(2 + tr * 58 + y) * img.width + 2 + tc * 58 + xx];
                        lo = std::min(lo, v);
                        hi = std::max(hi, v);
                        // layer4: 8x8 blocks of one value (nearest-neighbour upscaling)
                        if (std::string(name) == "layer4")
                            REQUIRE(v == px[(2 + tr * 58 + y / 8 * 8) * img.width + 2 + tc * 58 + xx / 8 * 8]);
                    }
                // Each map is min-max normalised on its own: 0 and 255 both appear, unless the map
                // is constant (a channel ReLU zeroed everywhere: all black).
                INFO(name << " tile " << tr << "," << tc);
                CHECK(lo == 0);
                CHECK((hi == 255 || hi == 0));
            }
        // The 2-pixel border (pad_value 0) around and between the tiles.
        for (int64_t i = 0; i < img.width; ++i) {
            CHECK(px[i] == 0);
            CHECK(px[img.width + i] == 0);
            CHECK(px[(58) * img.width + i] == 0);
            CHECK(px[(img.height - 1) * img.width + i] == 0);
        }
    }

    // Text mode lists the maps after the usual line.
    const auto text = run_cli("features --input " + photo + " --layers layer4 --save-maps " + (dir / "t") +
                              " --maps-channels 10 --maps-nrow 5 --threads 2");
    REQUIRE(text.rc == 0);
    CHECK(text.out.find("map layer4: " + (dir / "t") + "/layer4.png (10 of 512 channels, 2x5 tiles of 56x56 (x8), "
                        "118x292 px)") != std::string::npos);
}

TEST_CASE("cli outputs: --save-maps refuses a bad folder or name with one line, before the work") {
    Workdir dir;
    std::ofstream(dir / "file") << "x";
    require_one_line_error(run_cli("features --save-maps " + (dir / "file")), "exists and is not a folder");
    require_one_line_error(run_cli("features --save-maps " + (dir / "missing/sub")), "cannot create the folder");
    // A missing DIR is made once the maps are drawn: a run that fails first leaves nothing.
    require_one_line_error(run_cli("features --save-maps " + (dir / "new") + " --input " + (dir / "no.npy")),
                           "no.npy");
    CHECK(!fs::exists(dir / "new"));
    const auto made = run_cli("features --layers layer4 --save-maps " + (dir / "new/") + " --threads 2");
    REQUIRE(made.rc == 0);
    CHECK(fs::exists(dir / "new/layer4.png"));
    require_one_line_error(run_cli("features --save-maps " + (dir / "m") + " --layers layer1:a/b"),
                           "path separator");
    require_one_line_error(run_cli("features --save-maps " + (dir / "m") + " --layers 'layer1:..'"),
                           "cannot name a file");
    require_one_line_error(run_cli("features --maps-channels 4"), "--maps-channels applies to --save-maps");
    require_one_line_error(run_cli("features --save-maps ''"), "--save-maps is empty");
    // A map file that cannot be written (a folder in its place): refused before the forward pass.
    fs::create_directories(dir / "m2/layer1.png");
    require_one_line_error(run_cli("features --layers layer1 --save-maps " + (dir / "m2")), "is a directory");

    // A folder without write permission (root's permission bypass dropped with setpriv).
    fs::create_directories(dir / "locked");
    fs::permissions(dir / "locked", fs::perms::owner_read | fs::perms::owner_exec);
    const std::string unprivileged =
        ::geteuid() == 0 ? "setpriv --bounding-set=-dac_override,-dac_read_search" : "";
    if (std::system((unprivileged + " true 2>/dev/null").c_str()) != 0) {
        WARN("cannot drop root's permission bypass here: the unwritable-folder case is skipped");
        return;
    }
    require_one_line_error(run_cli("features --save-maps " + (dir / "locked"), unprivileged), "cannot write");
}

TEST_CASE("cli outputs: --out - writes the safetensors to stdout and nothing else") {
    Workdir dir;
    const std::string file = dir / "file.safetensors", piped = dir / "piped.safetensors";
    const auto a = run_cli("features --layers layer1:f,layer2 --threads 2 --out " + file);
    REQUIRE(a.rc == 0);
    // The stdout capture of run_cli is the file.
    const auto b = strata_test::run_cli("features --layers layer1:f,layer2 --threads 2 --stats --out -", "outputs_pipe");
    INFO(b.err);
    REQUIRE(b.rc == 0);
    REQUIRE(b.out == strata_test::slurp(file));  // byte for byte what --out FILE writes
    std::ofstream(piped, std::ios::binary) << b.out;
    const strata::StateDict back = strata::load(piped);
    REQUIRE(back.keys() == std::vector<std::string>{"f", "layer2"});
    REQUIRE(back.at("f").shape() == strata::Shape{1, 64, 56, 56});
    // The report went to stderr.
    CHECK(b.err.rfind("[('f', [1, 64, 56, 56]), ('layer2', [1, 128, 28, 28])]\noutput  shape", 0) == 0);
    require_one_line_error(run_cli("features --out - --json"), "--json and --out - both write to stdout");
}

TEST_CASE("image: encode_png and save_png round-trip gray and RGB, and refuse bad arguments") {
    Workdir dir;
    namespace image = strata::image;
    std::vector<uint8_t> gray(5 * 3), rgb(5 * 3 * 3);
    for (size_t i = 0; i < gray.size(); ++i) gray[i] = static_cast<uint8_t>(i * 17);
    for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<uint8_t>(i * 5 + 1);
    image::save_png(dir / "g.png", gray.data(), 5, 3, 1);
    image::Image g = image::load(dir / "g.png");
    REQUIRE(g.height == 5);
    REQUIRE(g.width == 3);
    REQUIRE(gray_pixels(g) == gray);
    image::save_png(dir / "c.png", image::Image::from_rgb(rgb.data(), 5, 3));
    REQUIRE(image::load(dir / "c.png").pixels == rgb);
    const std::string bytes = image::encode_png(rgb.data(), 5, 3, 3);
    REQUIRE(image::decode(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), "mem").pixels == rgb);

    REQUIRE_THROWS_WITH(image::encode_png(rgb.data(), 5, 3, 2), Catch::Contains("1 (grayscale) or 3 (RGB)"));
    REQUIRE_THROWS_WITH(image::encode_png(rgb.data(), 0, 3, 3), Catch::Contains("not a PNG size"));
    REQUIRE_THROWS_WITH(image::encode_png(nullptr, 5, 3, 3), Catch::Contains("null"));
    REQUIRE_THROWS_WITH(image::save_png(dir / "no/such.png", gray.data(), 5, 3, 1), Catch::Contains("no/such.png"));
    REQUIRE_THROWS_WITH(image::save_png(dir / "e.png", image::Image()), Catch::Contains("e.png"));
    REQUIRE(!fs::exists(dir / "e.png"));
}
