// The CLI's inputs: a float32 .npy array, or a JPEG/PNG photo run through torchvision's
// preprocessing (io/transforms.h). An image gets the ImageNet classification transform of
// torchvision's ResNet weights by default (resize 256, center crop 224, ImageNet mean/std), as
// `weights.transforms()` does in Python; --resize, --crop, --interpolation, --mean, --std and
// --no-normalize change its pieces. The format is read from the file's first bytes.
#pragma once
#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "strata.h"

namespace strata_cli {

class Preprocess {
public:
    // Adds --resize, --crop, --interpolation, --mean, --std, --no-normalize to `command`.
    void add_to(CLI::App* command);
    // Whether any of them was given (they are refused for a .npy input).
    bool any_given() const;
    // The transform the flags describe: imagenet_classification() when none is given. Checks
    // the flags (usage errors before any file is read).
    strata::image::Compose transform() const;

private:
    std::string resize_ = "256", crop_ = "224", interpolation_ = "bilinear", mean_, std_;
    bool no_normalize_ = false;
    std::vector<CLI::Option*> options_;
};

enum class InputKind { Npy, Image };
// What `path` holds, from its first bytes; throws Error naming the file when it is neither a
// .npy array nor a JPEG/PNG image (or cannot be opened).
InputKind input_kind(const std::string& path);

// The model input from `path`: a .npy array as it is (NCHW), or an image preprocessed by
// `preprocess` into [1, 3, H, W]. `preprocessing` receives the transform's description (empty
// for a .npy).
strata::Tensor load_input(const std::string& path, const Preprocess& preprocess, std::string* preprocessing);

}  // namespace strata_cli
