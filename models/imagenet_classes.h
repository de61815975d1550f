// ImageNet-1k's class names in torchvision's index order (index i is logit i of every
// torchvision ImageNet classifier): torchvision's own weight metadata,
// ResNet18_Weights.IMAGENET1K_V1.meta["categories"], generated into imagenet_classes.cpp by
// tools/make_imagenet_classes.py. "tench", "goldfish", ..., "toilet tissue".
#pragma once
#include <strata/export.h>
#include <string>
#include <vector>

namespace strata::models {

STRATA_API const std::vector<std::string>& imagenet_classes();  // 1000 names

}  // namespace strata::models
