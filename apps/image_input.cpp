#include "image_input.h"

#include <cmath>
#include <cstring>
#include <memory>
#include <sstream>

namespace strata_cli {

void Preprocess::add_to(CLI::App* c) {
    options_.push_back(c->add_option("--resize", resize_, "image inputs: torchvision's Resize: the shorter side to N "
                                     "(longer int(N*long/short)), HxW exactly, or none; PIL's antialiased resampling")
                           ->capture_default_str());
    options_.push_back(c->add_option("--crop", crop_, "image inputs: torchvision's CenterCrop to N x N, HxW, or none")
                           ->capture_default_str());
    options_.push_back(c->add_option("--interpolation", interpolation_, "image inputs: Resize's filter (PIL's): "
                                     "bilinear, bicubic, box, hamming, lanczos")
                           ->capture_default_str());
    options_.push_back(c->add_option("--mean", mean_, "image inputs: Normalize's mean, three comma-separated values "
                                     "(default ImageNet's 0.485,0.456,0.406)"));
    options_.push_back(c->add_option("--std", std_, "image inputs: Normalize's std, three comma-separated values "
                                     "(default ImageNet's 0.229,0.224,0.225)"));
    options_.push_back(c->add_flag("--no-normalize", no_normalize_, "image inputs: no Normalize: values in [0, 1] "
                                   "(ToTensor's)"));
}

bool Preprocess::any_given() const {
    for (const CLI::Option* o : options_)
        if (o->count() > 0) return true;
    return false;
}

namespace {
std::vector<float> parse_floats(const std::string& text, const char* option) {
    std::vector<float> out;
    std::stringstream ss(text);
    std::string item;
    while (std::getline(ss, item, ',')) {
        size_t used = 0;
        float v = 0;
        try {
            v = std::stof(item, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        STRATA_CHECK(used > 0 && used == item.size() && std::isfinite(v), option, " '", text,
                     "': expected three comma-separated numbers, e.g. 0.485,0.456,0.406");
        out.push_back(v);
    }
    STRATA_CHECK(out.size() == 3 && text.back() != ',', option, " '", text,
                 "': expected three comma-separated numbers (one per RGB channel)");
    return out;
}
}  // namespace

strata::image::Compose Preprocess::transform() const {
    using namespace strata::image;
    STRATA_CHECK(!(no_normalize_ && (!mean_.empty() || !std_.empty())),
                 "--no-normalize and --mean/--std contradict each other; give one or the other");
    std::vector<std::shared_ptr<const Transform>> steps;
    const Interpolation mode = [&] {
        try {
            return parse_interpolation(interpolation_);
        } catch (const strata::Error& e) {
            STRATA_FAIL("--interpolation: ", e.what());
        }
    }();
    if (resize_ != "none") steps.push_back(std::make_shared<Resize>(parse_size(resize_, "--resize"), mode));
    if (crop_ != "none") steps.push_back(std::make_shared<CenterCrop>(parse_size(crop_, "--crop")));
    steps.push_back(std::make_shared<ToTensor>());
    if (!no_normalize_)
        steps.push_back(std::make_shared<Normalize>(mean_.empty() ? imagenet_mean() : parse_floats(mean_, "--mean"),
                                                    std_.empty() ? imagenet_std() : parse_floats(std_, "--std")));
    return Compose(std::move(steps));
}

InputKind input_kind(const std::string& path) {
    const auto file = strata::MappedFile::open(path);  // a clear error for missing, unreadable, non-regular files
    const unsigned char* data = file->data();
    const size_t size = file->size();
    STRATA_CHECK(size > 0, path, ": the file is empty");
    if (size >= 6 && std::memcmp(data, "\x93NUMPY", 6) == 0) return InputKind::Npy;
    if (strata::image::sniff(data, size) != strata::image::Format::Unknown) return InputKind::Image;
    STRATA_FAIL(path, ": not a .npy array, a JPEG or a PNG image (unrecognised first bytes)");
}

strata::Tensor load_input(const std::string& path, const Preprocess& preprocess, std::string* preprocessing) {
    if (input_kind(path) == InputKind::Npy) {
        STRATA_CHECK(!preprocess.any_given(), path, ": --resize, --crop, --interpolation, --mean, --std and "
                     "--no-normalize apply to image inputs; this is a .npy array, used as it is");
        preprocessing->clear();
        return strata::load_npy(path);
    }
    const strata::image::Compose transform = preprocess.transform();
    *preprocessing = transform.repr();
    const strata::Tensor x = transform(strata::image::load(path));
    return strata::image::stack({x});
}

}  // namespace strata_cli
