// torchvision's image preprocessing, named as torchvision names it, reproducing what
// torchvision.transforms does on a PIL image (torchvision 0.14, Pillow 9):
//
//   Resize(256)            PIL Image.resize: separable, horizontal pass then vertical, filter
//                          support scaled by the downscale factor (antialiasing), 8-bit fixed
//                          point; torchvision's output size rule. Bit-identical uint8 output.
//   CenterCrop(224)        torchvision's offsets (Python's round, half to even) and its zero
//                          padding when the crop is larger than the image.
//   ToTensor()             uint8 HWC -> float32 [3, H, W] in [0, 1] (x / 255).
//   Normalize(mean, std)   (x - mean) / std per channel, in float32 as torch computes it.
//   Compose({...})         runs them in order: image stages, ToTensor, then tensor stages.
//
// imagenet_classification() is the transform of torchvision's ImageNet classification weights
// (`ResNet18_Weights.IMAGENET1K_V1.transforms()`: resize 256, center crop 224, ImageNet mean and
// std), equal to T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(...)]).
//
//   auto transform = strata::image::imagenet_classification();
//   strata::Tensor x = transform(strata::image::load("photo.jpg"));   // [3, 224, 224]
//   auto out = getter(strata::image::stack({x}));                      // [1, 3, 224, 224]
#pragma once
#include <strata/export.h>
#include <array>
#include <memory>
#include <string>
#include <vector>

#include "../core/tensor.h"
#include "image.h"

namespace strata::image {

// PIL's resampling filters (torchvision's InterpolationMode for PIL images), except NEAREST,
// which PIL resizes by another code path.
enum class Interpolation { Bilinear, Bicubic, Box, Hamming, Lanczos };
STRATA_API const char* interpolation_name(Interpolation mode);        // "bilinear", ...
STRATA_API Interpolation parse_interpolation(const std::string& name);  // throws Error on others

// A size as torchvision takes it: one number (Resize: the shorter side; CenterCrop: a square) or
// an exact height x width.
struct Size {
    int64_t height = 0, width = 0;  // width == 0: the one-number form
    static Size shorter_side(int64_t n) { return {n, 0}; }
    static Size exact(int64_t h, int64_t w) { return {h, w}; }
    bool one_number() const { return width == 0; }
};
// "256" -> one number; "240x320" -> height 240, width 320. Throws Error naming `what`.
STRATA_API Size parse_size(const std::string& text, const std::string& what);

// One preprocessing step. It transforms an image (Resize, CenterCrop), turns an image into a
// tensor (ToTensor), or transforms a [C, H, W] float32 tensor (Normalize).
class STRATA_API Transform {
public:
    enum class Kind { ImageToImage, ImageToTensor, TensorToTensor };
    virtual ~Transform();
    virtual Kind kind() const = 0;
    virtual Image apply(const Image& img) const;    // ImageToImage; others throw
    virtual Tensor to_tensor(const Image& img) const;  // ImageToTensor; others throw
    virtual Tensor apply(const Tensor& x) const;    // TensorToTensor; others throw
    // torchvision's repr: "Resize(size=256, interpolation=bilinear, max_size=None, antialias=True)".
    virtual std::string repr() const = 0;
};

// torchvision.transforms.Resize(size, interpolation=BILINEAR) on a PIL image. One number: the
// shorter side becomes `size` and the longer int(size * long / short) (truncated, as Python's
// int()); an exact size is used as given. An image already of the output size is returned as
// is (PIL copies it). `max_size` (0: none) caps the longer side as torchvision does.
class STRATA_API Resize : public Transform {
public:
    explicit Resize(Size size, Interpolation mode = Interpolation::Bilinear, int64_t max_size = 0);
    explicit Resize(int64_t shorter_side, Interpolation mode = Interpolation::Bilinear)
        : Resize(Size::shorter_side(shorter_side), mode) {}
    Kind kind() const override { return Kind::ImageToImage; }
    Image apply(const Image& img) const override;
    using Transform::apply;
    std::string repr() const override;
    // The [height, width] an image of `height` x `width` is resized to.
    std::array<int64_t, 2> output_size(int64_t height, int64_t width) const;

private:
    Size size_;
    Interpolation mode_;
    int64_t max_size_;
};

// PIL's Image.resize(size=(width, height), resample) for an 8-bit RGB image, box = the whole
// image (PIL's Resample.c, see transforms.cpp). Exposed for tests and other pipelines.
STRATA_API Image resize_pil(const Image& img, int64_t height, int64_t width, Interpolation mode);

// torchvision.transforms.CenterCrop(size): offsets int(round((h - ch) / 2.0)) (half to even); an
// image smaller than the crop is first zero-padded as torchvision pads it.
class STRATA_API CenterCrop : public Transform {
public:
    explicit CenterCrop(Size size);
    explicit CenterCrop(int64_t side) : CenterCrop(Size::shorter_side(side)) {}
    Kind kind() const override { return Kind::ImageToImage; }
    Image apply(const Image& img) const override;
    using Transform::apply;
    std::string repr() const override;

private:
    Size size_;
};

// torchvision.transforms.ToTensor(): [3, H, W] float32, each value uint8 / 255 (float32 division).
class STRATA_API ToTensor : public Transform {
public:
    Kind kind() const override { return Kind::ImageToTensor; }
    Tensor to_tensor(const Image& img) const override;
    std::string repr() const override { return "ToTensor()"; }
};

// torchvision.transforms.Normalize(mean, std): out = (x - mean[c]) / std[c] in float32 (two
// rounded operations, as torch's sub_ then div_). Takes [C, H, W] or [N, C, H, W].
class STRATA_API Normalize : public Transform {
public:
    Normalize(std::vector<float> mean, std::vector<float> std);
    Kind kind() const override { return Kind::TensorToTensor; }
    Tensor apply(const Tensor& x) const override;
    using Transform::apply;
    std::string repr() const override;

private:
    std::vector<float> mean_, std_;
};

// torchvision.transforms.Compose: the steps in order. Image steps come first, then exactly one
// ToTensor, then tensor steps (checked when built). Calling it gives a [3, H, W] tensor.
class STRATA_API Compose {
public:
    Compose() = default;
    explicit Compose(std::vector<std::shared_ptr<const Transform>> steps);
    Tensor operator()(const Image& img) const;
    // Only the steps before ToTensor (the uint8 image torchvision's ToTensor would receive).
    Image apply_image_steps(const Image& img) const;
    const std::vector<std::shared_ptr<const Transform>>& steps() const { return steps_; }
    // "Compose(Resize(...), CenterCrop(size=(224, 224)), ToTensor(), Normalize(...))", one line.
    std::string repr() const;

private:
    std::vector<std::shared_ptr<const Transform>> steps_;
};

// ImageNet's channel statistics, as torchvision's weights use them.
STRATA_API const std::vector<float>& imagenet_mean();  // 0.485, 0.456, 0.406
STRATA_API const std::vector<float>& imagenet_std();   // 0.229, 0.224, 0.225

// torchvision.transforms._presets.ImageClassification, the transform of every torchvision
// classification weight: Resize(resize_size, mode), CenterCrop(crop_size), ToTensor,
// Normalize(mean, std). The defaults are ResNet's IMAGENET1K_V1 weights'.
STRATA_API Compose image_classification(int64_t crop_size = 224, int64_t resize_size = 256,
                                        const std::vector<float>& mean = imagenet_mean(),
                                        const std::vector<float>& std = imagenet_std(),
                                        Interpolation mode = Interpolation::Bilinear);
// image_classification() with ImageNet's defaults: what ResNet18_Weights.IMAGENET1K_V1.transforms() does.
STRATA_API Compose imagenet_classification();

// [3, H, W] tensors of one size -> one [N, 3, H, W] tensor (torch.stack). Throws Error on
// differing shapes or an empty list.
STRATA_API Tensor stack(const std::vector<Tensor>& images);

}  // namespace strata::image
