// torchvision's transforms on 8-bit RGB images, reproducing PIL and torchvision step by step.
// Compiled with -ffp-contract=off (CMakeLists.txt): PIL's C code computes the filter positions
// and weights with separate double multiplies and adds, and a fused multiply-add would round
// differently and could move a weight across a fixed-point rounding boundary.
#include "transforms.h"

#include <cmath>
#include <cstring>
#include <sstream>

#include "../core/error.h"

namespace strata::image {

const char* interpolation_name(Interpolation mode) {
    switch (mode) {
        case Interpolation::Bilinear: return "bilinear";
        case Interpolation::Bicubic: return "bicubic";
        case Interpolation::Box: return "box";
        case Interpolation::Hamming: return "hamming";
        case Interpolation::Lanczos: return "lanczos";
    }
    return "?";
}

Interpolation parse_interpolation(const std::string& name) {
    for (Interpolation m : {Interpolation::Bilinear, Interpolation::Bicubic, Interpolation::Box,
                            Interpolation::Hamming, Interpolation::Lanczos})
        if (name == interpolation_name(m)) return m;
    STRATA_FAIL("unknown interpolation '", name, "'; expected bilinear, bicubic, box, hamming or lanczos");
}

Size parse_size(const std::string& text, const std::string& what) {
    auto number = [&](const std::string& part) {
        size_t used = 0;
        long long v = 0;
        try {
            v = std::stoll(part, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        STRATA_CHECK(used > 0 && used == part.size() && v >= 1 && v <= (1 << 16), what, " '", text,
                     "': expected one number or HxW, each a whole number from 1 to 65536");
        return static_cast<int64_t>(v);
    };
    const size_t x = text.find('x');
    if (x == std::string::npos) return Size::shorter_side(number(text));
    return Size::exact(number(text.substr(0, x)), number(text.substr(x + 1)));
}

Transform::~Transform() = default;
Image Transform::apply(const Image&) const { STRATA_FAIL(repr(), " does not take an image"); }
Tensor Transform::to_tensor(const Image&) const { STRATA_FAIL(repr(), " does not turn an image into a tensor"); }
Tensor Transform::apply(const Tensor&) const { STRATA_FAIL(repr(), " does not take a tensor"); }

// ---- PIL's resampling (Pillow's src/libImaging/Resample.c) -------------------------------------
namespace {

// The filters and their supports, as Resample.c defines them.
double bilinear_filter(double x) {
    if (x < 0.0) x = -x;
    if (x < 1.0) return 1.0 - x;
    return 0.0;
}
double bicubic_filter(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}
double box_filter(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }
double hamming_filter(double x) {
    if (x < 0.0) x = -x;
    if (x == 0.0) return 1.0;
    if (x >= 1.0) return 0.0;
    x = x * M_PI;
    return std::sin(x) / x * (0.54f + 0.46f * std::cos(x));  // float constants, as in PIL
}
double sinc_filter(double x) {
    if (x == 0.0) return 1.0;
    x = x * M_PI;
    return std::sin(x) / x;
}
double lanczos_filter(double x) {
    if (-3.0 <= x && x < 3.0) return sinc_filter(x) * sinc_filter(x / 3);
    return 0.0;
}

struct Filter {
    double (*f)(double);
    double support;
};
Filter filter_of(Interpolation mode) {
    switch (mode) {
        case Interpolation::Bilinear: return {bilinear_filter, 1.0};
        case Interpolation::Bicubic: return {bicubic_filter, 2.0};
        case Interpolation::Box: return {box_filter, 0.5};
        case Interpolation::Hamming: return {hamming_filter, 1.0};
        case Interpolation::Lanczos: return {lanczos_filter, 3.0};
    }
    return {bilinear_filter, 1.0};
}

// 8 bits for the result, 2 for overflow and sign: coefficients carry 22 fractional bits.
constexpr int kPrecisionBits = 32 - 8 - 2;

// For each output position: the first input index, how many inputs it reads, and their weights
// in fixed point (precompute_coeffs + normalize_coeffs_8bpc).
struct Coefficients {
    int ksize = 0;
    std::vector<int> first, count;
    std::vector<int32_t> weights;  // out_size * ksize
};

Coefficients precompute(int in_size, int out_size, const Filter& filter) {
    // The box is the whole input: in0 = 0, in1 = in_size (floats in PIL; exact here).
    const float in0 = 0.0f, in1 = static_cast<float>(in_size);
    const double scale = static_cast<double>(in1 - in0) / out_size;
    double filterscale = scale;
    if (filterscale < 1.0) filterscale = 1.0;  // upscaling: the plain filter; downscaling: widened
    const double support = filter.support * filterscale;
    Coefficients c;
    c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
    c.first.resize(out_size);
    c.count.resize(out_size);
    c.weights.assign(static_cast<size_t>(out_size) * c.ksize, 0);
    std::vector<double> k(c.ksize);
    for (int xx = 0; xx < out_size; ++xx) {
        const double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0;
        const double ss = 1.0 / filterscale;
        int xmin = static_cast<int>(center - support + 0.5);  // truncation, as PIL's (int) cast
        if (xmin < 0) xmin = 0;
        int xmax = static_cast<int>(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; ++x) {
            const double w = filter.f((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (int x = 0; x < xmax; ++x)
            if (ww != 0.0) k[x] /= ww;
        for (int x = 0; x < xmax; ++x) {
            const double v = k[x] * (1 << kPrecisionBits);
            c.weights[static_cast<size_t>(xx) * c.ksize + x] =
                static_cast<int32_t>(k[x] < 0 ? -0.5 + v : 0.5 + v);
        }
        c.first[xx] = xmin;
        c.count[xx] = xmax;
    }
    return c;
}

// clip8: the sum carries 22 fractional bits (plus the 0.5 added up front); keep 0..255.
inline uint8_t clip8(int64_t sum) {
    const int64_t v = sum >> kPrecisionBits;  // arithmetic shift, as PIL's int >>
    return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

}  // namespace

Image resize_pil(const Image& img, int64_t out_h, int64_t out_w, Interpolation mode) {
    STRATA_CHECK(img.height > 0 && img.width > 0, "resize: empty image");
    STRATA_CHECK(out_h > 0 && out_w > 0 && out_h <= (1 << 16) && out_w <= (1 << 16), "resize: output size ", out_h,
                 "x", out_w, " is not between 1 and 65536 per side");
    if (out_h == img.height && out_w == img.width) return img;  // PIL returns a copy
    const Filter filter = filter_of(mode);
    const int in_h = static_cast<int>(img.height), in_w = static_cast<int>(img.width);
    const int oh = static_cast<int>(out_h), ow = static_cast<int>(out_w);
    const Coefficients vert = precompute(in_h, oh, filter);
    // The input rows the vertical pass reads; the horizontal pass makes only these.
    const int y_first = vert.first[0];
    const int y_last = vert.first[oh - 1] + vert.count[oh - 1];
    const bool need_horizontal = ow != in_w, need_vertical = oh != in_h;

    // Horizontal pass: rows [y_first, y_last) of the input, each to `ow` pixels.
    Image temp;
    const Image* src = &img;
    int row_offset = 0;  // input row of temp's row 0
    if (need_horizontal) {
        const Coefficients hor = precompute(in_w, ow, filter);
        temp.height = y_last - y_first;
        temp.width = ow;
        temp.pixels.resize(static_cast<size_t>(temp.height) * ow * 3);
        for (int y = 0; y < temp.height; ++y) {
            const uint8_t* in = img.data() + static_cast<size_t>(y + y_first) * in_w * 3;
            uint8_t* out = temp.data() + static_cast<size_t>(y) * ow * 3;
            for (int xx = 0; xx < ow; ++xx) {
                const int32_t* k = &hor.weights[static_cast<size_t>(xx) * hor.ksize];
                const uint8_t* p = in + static_cast<size_t>(hor.first[xx]) * 3;
                int64_t s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
                for (int x = 0; x < hor.count[xx]; ++x, p += 3) {
                    s0 += p[0] * int64_t{k[x]};
                    s1 += p[1] * int64_t{k[x]};
                    s2 += p[2] * int64_t{k[x]};
                }
                out[xx * 3 + 0] = clip8(s0);
                out[xx * 3 + 1] = clip8(s1);
                out[xx * 3 + 2] = clip8(s2);
            }
        }
        src = &temp;
        row_offset = y_first;
    }
    if (!need_vertical) return need_horizontal ? temp : img;

    // Vertical pass: each output row from `count` rows of `src`.
    Image out;
    out.height = oh;
    out.width = src->width;
    out.pixels.resize(static_cast<size_t>(oh) * out.width * 3);
    const size_t row = static_cast<size_t>(src->width) * 3;
    for (int yy = 0; yy < oh; ++yy) {
        const int32_t* k = &vert.weights[static_cast<size_t>(yy) * vert.ksize];
        const uint8_t* base = src->data() + static_cast<size_t>(vert.first[yy] - row_offset) * row;
        uint8_t* dst = out.data() + static_cast<size_t>(yy) * row;
        for (size_t i = 0; i < row; ++i) {
            int64_t s = 1 << (kPrecisionBits - 1);
            for (int y = 0; y < vert.count[yy]; ++y) s += base[y * row + i] * int64_t{k[y]};
            dst[i] = clip8(s);
        }
    }
    return out;
}

// ---- Resize ------------------------------------------------------------------------------------
Resize::Resize(Size size, Interpolation mode, int64_t max_size) : size_(size), mode_(mode), max_size_(max_size) {
    STRATA_CHECK(size.height >= 1 && size.width >= 0, "Resize: size must be positive");
    STRATA_CHECK(max_size >= 0, "Resize: max_size must be positive (or 0: none)");
    STRATA_CHECK(max_size == 0 || size.one_number(), "Resize: max_size is only allowed with one number for size "
                 "(torchvision's rule)");
    STRATA_CHECK(max_size == 0 || max_size > size.height, "Resize: max_size = ", max_size,
                 " must be larger than the requested size ", size.height);
}

std::array<int64_t, 2> Resize::output_size(int64_t h, int64_t w) const {
    if (!size_.one_number()) return {size_.height, size_.width};
    // torchvision's _compute_resized_output_size: the shorter side becomes `size`, the longer
    // int(size * long / short), Python's true division then truncation.
    const int64_t shorter = std::min(h, w), longer = std::max(h, w);
    int64_t new_short = size_.height;
    int64_t new_long = static_cast<int64_t>(static_cast<double>(new_short * longer) / static_cast<double>(shorter));
    if (max_size_ > 0 && new_long > max_size_) {
        new_short = static_cast<int64_t>(static_cast<double>(max_size_ * new_short) / static_cast<double>(new_long));
        new_long = max_size_;
    }
    return w <= h ? std::array<int64_t, 2>{new_long, new_short} : std::array<int64_t, 2>{new_short, new_long};
}

Image Resize::apply(const Image& img) const {
    const auto [h, w] = output_size(img.height, img.width);
    return resize_pil(img, h, w, mode_);
}

std::string Resize::repr() const {
    std::ostringstream os;
    os << "Resize(size=";
    if (size_.one_number()) os << size_.height;
    else os << "[" << size_.height << ", " << size_.width << "]";
    os << ", interpolation=" << interpolation_name(mode_) << ", max_size="
       << (max_size_ > 0 ? std::to_string(max_size_) : "None") << ", antialias=True)";
    return os.str();
}

// ---- CenterCrop --------------------------------------------------------------------------------
CenterCrop::CenterCrop(Size size) : size_(size) {
    STRATA_CHECK(size.height >= 1 && size.width >= 0, "CenterCrop: size must be positive");
}

namespace {
// int(round(d / 2.0)) in Python: round half to even.
int64_t half_round_even(int64_t d) {
    if (d % 2 == 0) return d / 2;
    const int64_t lo = (d - 1) / 2;  // d odd: d / 2 is lo + 0.5
    return lo % 2 == 0 ? lo : lo + 1;
}
}  // namespace

Image CenterCrop::apply(const Image& img) const {
    const int64_t ch = size_.height, cw = size_.one_number() ? size_.height : size_.width;
    const Image* src = &img;
    Image padded;
    if (cw > img.width || ch > img.height) {
        // torchvision pads with zeros: left/top (c - s) // 2, right/bottom (c - s + 1) // 2.
        const int64_t left = cw > img.width ? (cw - img.width) / 2 : 0;
        const int64_t top = ch > img.height ? (ch - img.height) / 2 : 0;
        const int64_t right = cw > img.width ? (cw - img.width + 1) / 2 : 0;
        const int64_t bottom = ch > img.height ? (ch - img.height + 1) / 2 : 0;
        padded = Image(img.height + top + bottom, img.width + left + right);
        for (int64_t y = 0; y < img.height; ++y)
            std::memcpy(padded.data() + ((y + top) * padded.width + left) * 3, img.at(y, 0),
                        static_cast<size_t>(img.width) * 3);
        src = &padded;
    }
    const int64_t top = half_round_even(src->height - ch), left = half_round_even(src->width - cw);
    if (top == 0 && left == 0 && ch == src->height && cw == src->width) return *src;
    Image out(ch, cw);
    for (int64_t y = 0; y < ch; ++y)
        std::memcpy(out.data() + y * cw * 3, src->at(y + top, left), static_cast<size_t>(cw) * 3);
    return out;
}

std::string CenterCrop::repr() const {
    const int64_t w = size_.one_number() ? size_.height : size_.width;
    return "CenterCrop(size=(" + std::to_string(size_.height) + ", " + std::to_string(w) + "))";
}

// ---- ToTensor, Normalize -------------------------------------------------------------------------
Tensor ToTensor::to_tensor(const Image& img) const {
    STRATA_CHECK(img.height > 0 && img.width > 0 &&
                     img.pixels.size() == static_cast<size_t>(img.height * img.width * 3),
                 "ToTensor: the image holds ", img.pixels.size(), " bytes, expected ", img.height, "x", img.width,
                 "x3");
    Tensor x = Tensor::empty({3, img.height, img.width});
    float* out = x.data<float>();
    const int64_t n = img.height * img.width;
    const uint8_t* p = img.data();
    for (int64_t i = 0; i < n; ++i)
        for (int c = 0; c < 3; ++c) out[c * n + i] = static_cast<float>(p[i * 3 + c]) / 255.0f;
    return x;
}

Normalize::Normalize(std::vector<float> mean, std::vector<float> std) : mean_(std::move(mean)), std_(std::move(std)) {
    STRATA_CHECK(!mean_.empty() && mean_.size() == std_.size(), "Normalize: mean and std need one value per "
                 "channel (got ", mean_.size(), " and ", std_.size(), ")");
    for (float s : std_)
        STRATA_CHECK(s != 0.0f && std::isfinite(s), "Normalize: std evaluated to zero or is not finite (", s,
                     "), leading to division by zero");
}

Tensor Normalize::apply(const Tensor& x_in) const {
    STRATA_CHECK(x_in.defined() && x_in.dtype() == DType::Float32 && (x_in.dim() == 3 || x_in.dim() == 4),
                 "Normalize: expected a float32 [C, H, W] or [N, C, H, W] tensor");
    const int64_t c = x_in.size(-3);
    STRATA_CHECK(c == static_cast<int64_t>(mean_.size()), "Normalize: the tensor has ", c,
                 " channels, mean and std have ", mean_.size(), " values");
    Tensor x = x_in.clone();
    float* p = x.data<float>();
    const int64_t plane = x.size(-1) * x.size(-2), batches = x.numel() / (plane * c);
    for (int64_t b = 0; b < batches; ++b)
        for (int64_t ch = 0; ch < c; ++ch) {
            float* q = p + (b * c + ch) * plane;
            const float m = mean_[ch], s = std_[ch];
            for (int64_t i = 0; i < plane; ++i) q[i] = (q[i] - m) / s;  // torch: sub_(mean).div_(std)
        }
    return x;
}

std::string Normalize::repr() const {
    std::ostringstream os;
    auto list = [&](const std::vector<float>& v) {
        os << "[";
        for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
        os << "]";
    };
    os << "Normalize(mean=";
    list(mean_);
    os << ", std=";
    list(std_);
    os << ")";
    return os.str();
}

// ---- Compose -----------------------------------------------------------------------------------
Compose::Compose(std::vector<std::shared_ptr<const Transform>> steps) : steps_(std::move(steps)) {
    int stage = 0;  // 0: images, 1: tensors
    for (const auto& s : steps_) {
        STRATA_CHECK(s != nullptr, "Compose: a step is null");
        switch (s->kind()) {
            case Transform::Kind::ImageToImage:
                STRATA_CHECK(stage == 0, "Compose: ", s->repr(), " takes an image but comes after ToTensor");
                break;
            case Transform::Kind::ImageToTensor:
                STRATA_CHECK(stage == 0, "Compose: ", s->repr(), " comes after another ToTensor");
                stage = 1;
                break;
            case Transform::Kind::TensorToTensor:
                STRATA_CHECK(stage == 1, "Compose: ", s->repr(), " takes a tensor but comes before ToTensor");
                break;
        }
    }
    STRATA_CHECK(stage == 1, "Compose: the steps need a ToTensor to make a tensor of the image");
}

Image Compose::apply_image_steps(const Image& img) const {
    Image cur = img;
    for (const auto& s : steps_) {
        if (s->kind() != Transform::Kind::ImageToImage) break;
        cur = s->apply(cur);
    }
    return cur;
}

Tensor Compose::operator()(const Image& img) const {
    STRATA_CHECK(!steps_.empty(), "Compose: no steps (a default-constructed Compose)");
    Image cur = img;
    Tensor x;
    for (const auto& s : steps_) {
        switch (s->kind()) {
            case Transform::Kind::ImageToImage: cur = s->apply(cur); break;
            case Transform::Kind::ImageToTensor: x = s->to_tensor(cur); break;
            case Transform::Kind::TensorToTensor: x = s->apply(x); break;
        }
    }
    return x;
}

std::string Compose::repr() const {
    std::string s = "Compose(";
    for (size_t i = 0; i < steps_.size(); ++i) s += (i ? ", " : "") + steps_[i]->repr();
    return s + ")";
}

const std::vector<float>& imagenet_mean() {
    static const std::vector<float> v{0.485f, 0.456f, 0.406f};
    return v;
}
const std::vector<float>& imagenet_std() {
    static const std::vector<float> v{0.229f, 0.224f, 0.225f};
    return v;
}

Compose image_classification(int64_t crop_size, int64_t resize_size, const std::vector<float>& mean,
                             const std::vector<float>& std, Interpolation mode) {
    return Compose({std::make_shared<Resize>(Size::shorter_side(resize_size), mode),
                    std::make_shared<CenterCrop>(Size::shorter_side(crop_size)), std::make_shared<ToTensor>(),
                    std::make_shared<Normalize>(mean, std)});
}

Compose imagenet_classification() { return image_classification(); }

Tensor stack(const std::vector<Tensor>& images) {
    STRATA_CHECK(!images.empty(), "stack: no tensors");
    const Shape shape = images[0].shape();
    STRATA_CHECK(shape.size() == 3, "stack: expected [C, H, W] tensors, got ", shape_str(shape));
    Shape out_shape{static_cast<int64_t>(images.size())};
    out_shape.insert(out_shape.end(), shape.begin(), shape.end());
    Tensor out = Tensor::empty(out_shape);
    const size_t each = static_cast<size_t>(shape_numel(shape));
    for (size_t i = 0; i < images.size(); ++i) {
        STRATA_CHECK(images[i].shape() == shape && images[i].dtype() == DType::Float32, "stack: tensor ", i,
                     " is ", shape_str(images[i].shape()), ", tensor 0 is ", shape_str(shape),
                     " (all must be float32 of one shape; resize or crop them to one size)");
        const Tensor c = images[i].contiguous();
        std::memcpy(out.data<float>() + i * each, c.data<float>(), each * sizeof(float));
    }
    return out;
}

}  // namespace strata::image
