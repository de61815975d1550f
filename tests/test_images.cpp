// Photos as inputs (io/image.h, io/transforms.h, `features --input photo.jpg`, `classify`) against
// PIL + torchvision on the same files (tests/fixtures/images/, tools/make_fixtures.py --only
// images). The decoded, resized and cropped uint8 images and the normalised tensor must be
// bit-identical to PIL's/torchvision's (compared by FNV-1a 64 digests of their bytes, plus a
// value-by-value subsample of the tensor); the model's outputs on them follow the suite's
// tolerance, max|strata - torch| <= 1e-4 * max|torch|, and the top-5 classes must be equal.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace fs = std::filesystem;
using strata::Tensor;
namespace image = strata::image;

namespace {

const std::string kDir = "images/";

struct Expected {
    strata::StateDict tensors;
    nlohmann::json photos;
    int64_t subsample = 0;
};

const Expected& expected() {
    static const Expected e = [] {
        Expected out;
        strata::Metadata meta;
        out.tensors = strata::load(strata_test::fixture(kDir + "expected.safetensors"), {}, &meta);
        out.photos = nlohmann::json::parse(meta.at("photos"));
        out.subsample = std::stoll(meta.at("subsample"));
        return out;
    }();
    return e;
}

std::string digest(const void* data, size_t size) {
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx",
                  static_cast<unsigned long long>(strata::fnv1a64(std::string(static_cast<const char*>(data), size))));
    return hex;
}
std::string digest(const image::Image& img) { return digest(img.data(), img.pixels.size()); }
std::string digest(const Tensor& t) { return digest(t.raw_data(), t.nbytes()); }

// Every `step`-th value of a tensor, flattened.
Tensor every(const Tensor& t, int64_t step) {
    const Tensor c = t.contiguous();
    Tensor out = Tensor::empty({(c.numel() + step - 1) / step});
    for (int64_t i = 0; i < out.numel(); ++i) out.data<float>()[i] = c.data<float>()[i * step];
    return out;
}

// [sum, sum|x|, max|x|] in double, as the fixture's stats.
std::array<double, 3> stats(const Tensor& t) {
    const Tensor c = t.contiguous();
    std::array<double, 3> s{0, 0, 0};
    for (int64_t i = 0; i < c.numel(); ++i) {
        const double v = c.data<float>()[i];
        s[0] += v;
        s[1] += std::fabs(v);
        s[2] = std::max(s[2], std::fabs(v));
    }
    return s;
}

void check_stats(const Tensor& actual, const Tensor& expected_stats, double rel, const std::string& what) {
    const auto s = stats(actual);
    const float* e = expected_stats.data<float>();
    INFO(what << ": stats " << s[0] << " " << s[1] << " " << s[2] << " vs " << e[0] << " " << e[1] << " " << e[2]);
    CHECK(std::fabs(s[0] - e[0]) <= rel * e[1] + 1e-6 * std::fabs(e[0]));  // a sum: bounded by sum|x|
    CHECK(std::fabs(s[1] - e[1]) <= rel * e[1] + 1e-6 * e[1]);
    CHECK(std::fabs(s[2] - e[2]) <= rel * e[2] + 1e-6 * e[2]);
}

std::shared_ptr<strata::models::ResNet> detgen_resnet18() {
    static const auto model = [] {
        auto m = strata::models::resnet18();
        strata::fill_deterministic(*m, 2024);
        return m;
    }();
    return model;
}

std::vector<std::string> photo_names() {
    std::vector<std::string> names;
    for (const auto& item : expected().photos.items()) names.push_back(item.key());
    return names;
}

}  // namespace

TEST_CASE("images: decoding equals PIL's Image.open(p).convert('RGB') on every photo") {
    for (const std::string& name : photo_names()) {
        const auto& e = expected().photos.at(name);
        const image::Image img = image::load(strata_test::fixture(kDir + name));
        INFO(name << " (PIL mode " << e.at("pil_mode").get<std::string>() << ")");
        CHECK(img.height == e.at("size")[0].get<int64_t>());
        CHECK(img.width == e.at("size")[1].get<int64_t>());
        CHECK(digest(img) == e.at("decoded_digest").get<std::string>());
    }
}

TEST_CASE("images: Resize(256), CenterCrop(224), ToTensor, Normalize are bit-identical to torchvision on PIL") {
    const image::Resize resize(256);
    const image::CenterCrop crop(224);
    const image::Compose transform = image::imagenet_classification();
    for (const std::string& name : photo_names()) {
        INFO(name);
        const auto& e = expected().photos.at(name);
        const image::Image img = image::load(strata_test::fixture(kDir + name));
        const image::Image resized = resize.apply(img);
        CHECK(resized.height == e.at("resized_size")[0].get<int64_t>());
        CHECK(resized.width == e.at("resized_size")[1].get<int64_t>());
        CHECK(digest(resized) == e.at("resized_digest").get<std::string>());
        const image::Image cropped = crop.apply(resized);
        CHECK(digest(cropped) == e.at("cropped_digest").get<std::string>());
        CHECK(digest(transform.apply_image_steps(img)) == e.at("cropped_digest").get<std::string>());
        const Tensor x = transform(img);
        REQUIRE(x.shape() == strata::Shape{3, 224, 224});
        CHECK(digest(x) == e.at("input_digest").get<std::string>());
        // The same, value by value on a subsample (a readable first mismatch if the digest differs).
        STRATA_REQUIRE_CMP(strata_test::compare_bitwise(every(x, expected().subsample),
                                                        expected().tensors.at(name + ".input_sub")),
                           name + " preprocessed tensor");
        check_stats(x, expected().tensors.at(name + ".input_stats"), 0, name + " preprocessed tensor");
    }
}

TEST_CASE("images: ResNet-18 logits, top-5 and features on the photos match torchvision's pipeline") {
    const auto model = detgen_resnet18();
    const strata::IntermediateLayerGetter getter(*model, {{"layer1", "layer1"}, {"layer4", "layer4"}});
    const image::Compose transform = image::imagenet_classification();
    for (const std::string& name : photo_names()) {
        INFO(name);
        const auto& e = expected().photos.at(name);
        const Tensor x = image::stack({transform(image::load(strata_test::fixture(kDir + name)))});
        const Tensor logits = model->forward(x);
        STRATA_REQUIRE_CLOSE(logits, expected().tensors.at(name + ".logits"), 1e-4, name + " logits");
        std::vector<int64_t> order(1000);
        for (int64_t i = 0; i < 1000; ++i) order[i] = i;
        const float* l = logits.data<float>();
        std::partial_sort(order.begin(), order.begin() + 5, order.end(), [&](int64_t a, int64_t b) { return l[a] > l[b]; });
        CHECK(std::vector<int64_t>(order.begin(), order.begin() + 5) == e.at("top5").get<std::vector<int64_t>>());
        if (!e.contains("shape.layer1")) continue;
        const auto out = getter(x);
        for (const std::string layer : {"layer1", "layer4"}) {
            const Tensor& y = out.at(layer);
            CHECK(y.shape() == e.at("shape." + layer).get<strata::Shape>());
            STRATA_REQUIRE_CLOSE(every(y, e.at("sub_step." + layer).get<int64_t>()),
                                 expected().tensors.at(name + ".sub." + layer), 1e-4, name + " " + layer);
            check_stats(y, expected().tensors.at(name + ".stats." + layer), 1e-4, name + " " + layer);
        }
    }
}

TEST_CASE("images: the ImageNet class names are torchvision's") {
    const auto& names = strata::models::imagenet_classes();
    REQUIRE(names.size() == 1000);
    CHECK(names[0] == "tench");
    CHECK(names[1] == "goldfish");
    CHECK(names[999] == "toilet tissue");
    for (const std::string& photo : photo_names()) {
        const auto& e = expected().photos.at(photo);
        const auto top5 = e.at("top5").get<std::vector<int64_t>>();
        const auto labels = e.at("top5_labels").get<std::vector<std::string>>();
        for (size_t i = 0; i < top5.size(); ++i) CHECK(names.at(top5[i]) == labels[i]);
    }
}

// ---- the transforms' rules, on synthetic images ----------------------------------------------------
TEST_CASE("images: Resize's output size and CenterCrop's offsets follow torchvision's rules") {
    // shorter side 256, longer int(256 * long / short)
    CHECK(image::Resize(256).output_size(301, 421) == std::array<int64_t, 2>{256, 358});
    CHECK(image::Resize(256).output_size(413, 271) == std::array<int64_t, 2>{390, 256});
    CHECK(image::Resize(256).output_size(300, 300) == std::array<int64_t, 2>{256, 256});
    CHECK(image::Resize(image::Size::exact(100, 50)).output_size(300, 200) == std::array<int64_t, 2>{100, 50});
    CHECK(image::Resize(image::Size::shorter_side(256), image::Interpolation::Bilinear, 300).output_size(100, 200) ==
          std::array<int64_t, 2>{150, 300});  // max_size: int(300 * 256 / 512)
    // An image already of the output size is returned as it is (PIL copies it).
    image::Image img(5, 7);
    for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>(i * 37);
    CHECK(image::resize_pil(img, 5, 7, image::Interpolation::Bicubic).pixels == img.pixels);
    // Center crop: offsets int(round((h - 3) / 2.0)), half to even: (8 - 3) / 2 = 2.5 -> 2; (10 - 3) / 2 = 3.5 -> 4.
    image::Image ramp(8, 10);
    for (int64_t y = 0; y < 8; ++y)
        for (int64_t x = 0; x < 10; ++x) ramp.pixels[(y * 10 + x) * 3] = static_cast<uint8_t>(y * 16 + x);
    const image::Image c = image::CenterCrop(3).apply(ramp);
    REQUIRE(c.height == 3);
    REQUIRE(c.width == 3);
    CHECK(c.at(0, 0)[0] == 2 * 16 + 4);
    // Larger than the image: zero padding, left/top (c - s) // 2, as torchvision pads.
    const image::Image p = image::CenterCrop(image::Size::exact(11, 13)).apply(ramp);
    REQUIRE(p.height == 11);
    REQUIRE(p.width == 13);
    CHECK(p.at(0, 0)[0] == 0);
    CHECK(p.at(1, 1)[0] == 0);  // top = (11 - 8) // 2 = 1, left = (13 - 10) // 2 = 1: (1, 1) is ramp (0, 0) = 0
    CHECK(p.at(2, 2)[0] == 1 * 16 + 1);
    CHECK(p.at(10, 12)[0] == 0);
}

TEST_CASE("images: ToTensor and Normalize compute in float32 as torch does; Compose checks the order") {
    image::Image img(1, 2);
    img.pixels = {0, 128, 255, 1, 2, 3};
    const Tensor t = image::ToTensor().to_tensor(img);
    REQUIRE(t.shape() == strata::Shape{3, 1, 2});
    CHECK(t.data<float>()[0] == 0.0f);
    CHECK(t.data<float>()[1] == 1.0f / 255.0f);
    CHECK(t.data<float>()[2] == 128.0f / 255.0f);
    const Tensor n = image::Normalize({0.5f, 0.5f, 0.5f}, {0.25f, 0.5f, 1.0f}).apply(t);
    CHECK(n.data<float>()[0] == (0.0f - 0.5f) / 0.25f);
    CHECK(n.data<float>()[4] == (1.0f - 0.5f) / 1.0f);
    CHECK_THROWS_WITH(image::Normalize({0.5f}, {0.0f}), Catch::Contains("std evaluated to zero"));
    CHECK_THROWS_WITH(image::Normalize({0.5f, 0.5f}, {1.0f}), Catch::Contains("one value per channel"));
    CHECK_THROWS_WITH(image::Compose({std::make_shared<image::ToTensor>(), std::make_shared<image::Resize>(8)}),
                      Catch::Contains("comes after ToTensor"));
    CHECK_THROWS_WITH(image::Compose({std::make_shared<image::Resize>(8)}), Catch::Contains("need a ToTensor"));
    CHECK_THROWS_WITH(image::parse_size("0", "--crop"), Catch::Contains("--crop '0'"));
    CHECK(image::parse_size("240x320", "--resize").width == 320);
    CHECK_THROWS_WITH(image::parse_interpolation("nearest"), Catch::Contains("unknown interpolation 'nearest'"));
    CHECK(image::imagenet_classification().repr() ==
          "Compose(Resize(size=256, interpolation=bilinear, max_size=None, antialias=True), CenterCrop(size=(224, 224)), "
          "ToTensor(), Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]))");
    CHECK_THROWS_WITH(image::stack({t, image::ToTensor().to_tensor(image::Image(2, 2))}), Catch::Contains("stack: tensor 1"));
}

// ---- hostile and unsupported files: an Error naming the file and the reason, never a crash -------
namespace {
std::string bytes_of(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
}
std::string decode_error(const std::string& bytes, const image::LoadOptions& options = {}) {
    try {
        image::decode(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), "x.img", options);
    } catch (const strata::Error& e) {
        return e.what();
    }
    return "(no error)";
}
// The JPEG's first SOFn segment's height and width replaced.
std::string with_jpeg_size(std::string jpeg, uint16_t h, uint16_t w) {
    for (size_t i = 2; i + 9 < jpeg.size(); ++i) {
        const auto m = static_cast<unsigned char>(jpeg[i + 1]);
        if (static_cast<unsigned char>(jpeg[i]) == 0xFF && (m == 0xC0 || m == 0xC1 || m == 0xC2)) {
            jpeg[i + 5] = static_cast<char>(h >> 8);
            jpeg[i + 6] = static_cast<char>(h & 0xFF);
            jpeg[i + 7] = static_cast<char>(w >> 8);
            jpeg[i + 8] = static_cast<char>(w & 0xFF);
            return jpeg;
        }
    }
    FAIL("no SOF marker");
    return jpeg;
}
}  // namespace

TEST_CASE("images: truncated, corrupt, unsupported and oversized files are refused with the reason") {
    const std::string jpeg = bytes_of(strata_test::fixture(kDir + "astronaut_landscape.jpg"));
    const std::string png = bytes_of(strata_test::fixture(kDir + "coins_gray.png"));
    REQUIRE(jpeg.size() > 10000);
    CHECK(decode_error(jpeg.substr(0, jpeg.size() / 2)) == "x.img: truncated JPEG data (the file ends before the image does)");
    CHECK(decode_error(jpeg.substr(0, 100)) == "x.img: truncated JPEG data (the file ends before the image does)");
    CHECK(decode_error(jpeg.substr(0, 3)) == "x.img: truncated JPEG data (the file ends before the image does)");
    CHECK(decode_error(png.substr(0, png.size() / 2)) == "x.img: truncated PNG data (the file ends before the image does)");
    CHECK(decode_error(png.substr(0, 8)) == "x.img: truncated PNG data (the file ends before the image does)");
    std::string bad_crc = png;
    bad_crc[20] ^= 0x01;  // inside IHDR: its CRC no longer matches
    CHECK_THAT(decode_error(bad_crc), Catch::StartsWith("x.img: not a valid PNG (") && Catch::Contains("CRC"));
    std::string bad_precision = jpeg;
    const size_t sof = jpeg.find("\xFF\xC0");
    REQUIRE(sof != std::string::npos);
    bad_precision[sof + 4] = 7;  // the frame's sample precision: 8 bits in baseline JPEG
    CHECK(decode_error(bad_precision) == "x.img: not a valid JPEG (Unsupported JPEG data precision 7)");
    CHECK(decode_error("plain text, not an image") == "x.img: not a JPEG or PNG image (unrecognised first bytes)");
    CHECK(decode_error("") == "x.img: the file is empty, not an image");
    CHECK_THAT(decode_error(with_jpeg_size(jpeg, 0, 421)), Catch::StartsWith("x.img: not a valid JPEG ("));
    // Dimensions over the pixel limit are refused from the header, before any pixel memory.
    CHECK_THAT(decode_error(with_jpeg_size(jpeg, 65000, 65000)),
               Catch::Contains("65000x65000 = 4225000000 pixels, over the limit of 178956970"));
    image::LoadOptions small;
    small.max_pixels = 1000;
    CHECK_THAT(decode_error(png, small), Catch::Contains("x.img: the image is 201x153 = 30753 pixels, over the limit of 1000"));
    CHECK_THAT(decode_error(jpeg, small), Catch::Contains("over the limit of 1000"));
    CHECK_THROWS_WITH(image::load(strata_test::fixture(kDir + "refuse_16bit.png")),
                      Catch::EndsWith("refuse_16bit.png: 16-bit PNGs are not supported (PIL has no 8-bit RGB reading of "
                                      "them to match); save the image with 8 bits per channel"));
    CHECK_THROWS_WITH(image::load(strata_test::fixture(kDir + "refuse_cmyk.jpg")),
                      Catch::EndsWith("refuse_cmyk.jpg: CMYK JPEGs are not supported; convert the file to RGB"));
    CHECK_THROWS_WITH(image::load(strata_test::fixture(kDir + "missing.jpg")), Catch::Contains("missing.jpg: cannot open"));
    // Every prefix of a small file: an error or an image, never a crash (ASan/UBSan in CI).
    const std::string small_png = bytes_of(strata_test::fixture(kDir + "coffee_palette.png"));
    const std::string small_jpeg = bytes_of(strata_test::fixture(kDir + "refuse_cmyk.jpg"));
    for (const std::string* file : {&small_png, &jpeg})
        for (size_t n = 0; n < file->size(); n += 1 + n / 16) (void)decode_error(file->substr(0, n));
    (void)small_jpeg;
    CHECK(image::sniff(reinterpret_cast<const unsigned char*>(jpeg.data()), jpeg.size()) == image::Format::Jpeg);
    CHECK(image::is_image_file(strata_test::fixture(kDir + "coins_gray.png")));
    CHECK_FALSE(image::is_image_file(strata_test::fixture(kDir + "expected.safetensors")));
}

// ---- the CLI ---------------------------------------------------------------------------------------
#ifdef STRATA_CLI_PATH
namespace {
// A folder for one test's files, with the detgen weights (seed 2024) the fixtures were made with.
struct CliFiles {
    fs::path dir;
    std::string weights;
    explicit CliFiles(const std::string& tag) {
        dir = fs::temp_directory_path() / ("strata_images_" + tag + "_" + std::to_string(::getpid()));
        fs::remove_all(dir);
        fs::create_directories(dir);
        weights = (dir / "resnet18_detgen2024.safetensors").string();
        strata::save(detgen_resnet18()->state_dict(), weights);
    }
    ~CliFiles() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
};
}  // namespace

TEST_CASE("images: strata features --input photo.jpg --layers layer1,layer4 --out matches torchvision's pipeline") {
    const CliFiles files("features");
    for (const std::string name : {"astronaut_landscape.jpg", "camera_gray.jpg"}) {
        INFO(name);
        const auto& e = expected().photos.at(name);
        const std::string out = (files.dir / "f.safetensors").string();
        const auto run = strata_test::run_cli("features --input " + strata_test::fixture(kDir + name) + " --weights " +
                                                  files.weights + " --layers layer1,layer4 --out " + out + " --threads 2",
                                              (files.dir / "run").string());
        INFO(run.err);
        REQUIRE(run.rc == 0);
        CHECK(run.out == "[('layer1', [1, 64, 56, 56]), ('layer4', [1, 512, 7, 7])]\n");
        strata::Metadata meta;
        const strata::StateDict got = strata::load(out, {}, &meta);
        CHECK(meta.at("preprocessing") == image::imagenet_classification().repr());
        for (const std::string layer : {"layer1", "layer4"}) {
            STRATA_REQUIRE_CLOSE(every(got.at(layer), e.at("sub_step." + layer).get<int64_t>()),
                                 expected().tensors.at(name + ".sub." + layer), 1e-4, name + " " + layer);
            check_stats(got.at(layer), expected().tensors.at(name + ".stats." + layer), 1e-4, name + " " + layer);
        }
    }
}

TEST_CASE("images: strata classify gives torchvision's top-5 and probabilities, for a photo and a folder") {
    const CliFiles files("classify");
    const std::string tag = (files.dir / "run").string();
    // One photo, text.
    const auto text = strata_test::run_cli("classify --input " + strata_test::fixture(kDir + "coffee_444.jpg") +
                                               " --weights " + files.weights + " --threads 2", tag);
    INFO(text.err);
    REQUIRE(text.rc == 0);
    const auto& coffee = expected().photos.at("coffee_444.jpg");
    const auto labels = coffee.at("top5_labels").get<std::vector<std::string>>();
    CHECK_THAT(text.out, Catch::Contains(labels[0] + " (" + std::to_string(coffee.at("top5")[0].get<int>()) + ")"));
    // The folder, JSON: every photo (sorted by name; the refused files fail the run, so copy the photos).
    const fs::path folder = files.dir / "photos";
    fs::create_directories(folder);
    for (const std::string& name : photo_names()) fs::copy_file(strata_test::fixture(kDir + name), folder / name);
    std::ofstream(folder / "notes.txt") << "not an image: skipped";
    const auto run = strata_test::run_cli("classify --input " + folder.string() + " --weights " + files.weights +
                                              " --json --threads 2", tag);
    INFO(run.err);
    REQUIRE(run.rc == 0);
    const auto doc = nlohmann::json::parse(run.out);
    std::vector<std::string> names = photo_names();
    std::sort(names.begin(), names.end());
    REQUIRE(doc.at("results").size() == names.size());
    for (size_t i = 0; i < names.size(); ++i) {
        const auto& result = doc.at("results")[i];
        const auto& e = expected().photos.at(names[i]);
        INFO(names[i]);
        CHECK(result.at("input").get<std::string>() == (folder / names[i]).string());
        REQUIRE(result.at("top").size() == 5);
        for (size_t r = 0; r < 5; ++r) {
            CHECK(result.at("top")[r].at("index").get<int64_t>() == e.at("top5")[r].get<int64_t>());
            CHECK(result.at("top")[r].at("label").get<std::string>() == e.at("top5_labels")[r].get<std::string>());
            // torch's float32 softmax vs strata's double one on logits within 1e-4 relative
            CHECK(std::fabs(result.at("top")[r].at("probability").get<double>() -
                            e.at("top5_probabilities")[r].get<double>()) <= 1e-4);
        }
    }
    // --top, and the errors: one line, exit 2.
    const auto top1 = strata_test::run_cli("classify --input " + strata_test::fixture(kDir + "coffee_444.jpg") +
                                               " --weights " + files.weights + " --top 1 --json --threads 2", tag);
    REQUIRE(top1.rc == 0);
    CHECK(nlohmann::json::parse(top1.out).at("results")[0].at("top").size() == 1);
    const auto cmyk = strata_test::run_cli("classify --input " + strata_test::fixture(kDir + "refuse_cmyk.jpg"), tag);
    CHECK(cmyk.rc == 2);
    CHECK_THAT(cmyk.err, Catch::EndsWith("refuse_cmyk.jpg: CMYK JPEGs are not supported; convert the file to RGB\n"));
    fs::create_directories(files.dir / "empty");
    const auto empty = strata_test::run_cli("classify --input " + (files.dir / "empty").string(), tag);
    CHECK(empty.rc == 2);
    CHECK_THAT(empty.err, Catch::Contains("the folder holds no JPEG or PNG image"));
}

TEST_CASE("images: preprocessing flags of the CLI, and their errors") {
    const CliFiles files("flags");
    const std::string tag = (files.dir / "run").string();
    const std::string photo = strata_test::fixture(kDir + "rocket_portrait.jpg");
    // --resize none --crop none keeps the photo's own size (413x271).
    auto run = strata_test::run_cli("features --input " + photo + " --resize none --crop none --no-normalize "
                                    "--layers conv1 --threads 2", tag);
    INFO(run.err);
    REQUIRE(run.rc == 0);
    CHECK(run.out == "[('conv1', [1, 64, 207, 136])]\n");
    run = strata_test::run_cli("features --input " + photo + " --resize 64 --crop 32x48 --interpolation bicubic "
                               "--mean 0.5,0.5,0.5 --std 0.5,0.5,0.5 --layers conv1 --threads 2", tag);
    REQUIRE(run.rc == 0);
    CHECK(run.out == "[('conv1', [1, 64, 16, 24])]\n");
    const struct {
        std::string args, error;
    } cases[] = {
        {"features --input " + photo + " --resize 0", "error: --resize '0': expected one number or HxW"},
        {"features --input " + photo + " --crop 3x", "error: --crop '3x': expected one number or HxW"},
        {"features --input " + photo + " --interpolation nearest", "error: --interpolation: unknown interpolation 'nearest'"},
        {"features --input " + photo + " --mean 1,2", "error: --mean '1,2': expected three comma-separated numbers"},
        {"features --input " + photo + " --std 1,0,1", "error: Normalize: std evaluated to zero"},
        {"features --input " + photo + " --no-normalize --mean 0,0,0", "error: --no-normalize and --mean/--std contradict"},
        {"features --resize 128", "error: --resize, --crop, --interpolation, --mean, --std and --no-normalize apply to an "
                                  "image --input; none is given"},
        {"features --input " + strata_test::fixture(kDir + "expected.safetensors"),
         "expected.safetensors: not a .npy array, a JPEG or a PNG image (unrecognised first bytes)"},
    };
    for (const auto& c : cases) {
        INFO(c.args);
        const auto r = strata_test::run_cli(c.args, tag);
        CHECK(r.rc == 2);
        CHECK(r.out.empty());
        CHECK_THAT(r.err, Catch::Contains(c.error));
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    }
    // A .npy input takes no preprocessing flags.
    strata::save_npy(Tensor::full({1, 3, 32, 32}, 0.5f), (files.dir / "x.npy").string());
    const auto npy = strata_test::run_cli("features --input " + (files.dir / "x.npy").string() + " --crop 16", tag);
    CHECK(npy.rc == 2);
    CHECK_THAT(npy.err, Catch::Contains("x.npy: --resize, --crop, --interpolation, --mean, --std and --no-normalize apply "
                                        "to image inputs; this is a .npy array, used as it is"));
}
#endif
