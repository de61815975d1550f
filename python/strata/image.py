"""Photos in, as torchvision gets them: decoding as PIL (libjpeg-turbo, libpng; converted as
PIL's convert("RGB"), EXIF orientation ignored as PIL's default) and torchvision's transforms,
reproduced bit for bit (PIL's fixed-point resampling).

    import strata
    t = strata.image.imagenet_classification()        # ResNet18_Weights.IMAGENET1K_V1.transforms()
    x = t.load("photo.jpg")                            # float32 [3, 224, 224]
    rgb = strata.image.load("photo.jpg")               # uint8 [H, W, 3], numpy.asarray(PIL image)
    x = t(rgb)                                         # the same from pixels
    custom = strata.image.Compose([strata.image.Resize(232), strata.image.CenterCrop(224),
                                   strata.image.ToTensor(), strata.image.Normalize(mean, std)])
"""
from . import _strata

Compose = _strata.Compose
Transform = _strata.Transform


def load(path):
    """Decodes a JPEG or PNG file to a uint8 [H, W, 3] RGB array (strata.Error naming the file and
    the reason for a file it cannot decode)."""
    return _strata.image_load(str(path))


def _size(size):
    return [int(size)] if isinstance(size, int) else [int(v) for v in size]


def Resize(size, interpolation="bilinear", max_size=None):
    """torchvision.transforms.Resize: one number resizes the shorter side, (h, w) exactly."""
    return _strata.Resize(_size(size), interpolation, int(max_size or 0))


def CenterCrop(size):
    """torchvision.transforms.CenterCrop."""
    return _strata.CenterCrop(_size(size))


def ToTensor():
    """torchvision.transforms.ToTensor: [3, H, W] float32 in [0, 1]."""
    return _strata.ToTensor()


def Normalize(mean, std):
    """torchvision.transforms.Normalize."""
    return _strata.Normalize([float(v) for v in mean], [float(v) for v in std])


def imagenet_classification():
    """Resize(256), CenterCrop(224), ToTensor(), Normalize(ImageNet's mean and std): what
    torchvision's ResNet weights' transforms() does."""
    return _strata.imagenet_classification()


__all__ = ["Compose", "CenterCrop", "Normalize", "Resize", "ToTensor", "Transform", "imagenet_classification", "load"]
