"""strata.image: decoding and torchvision's ImageNet transform from Python, on the committed
photos (tests/fixtures/images). Against PIL + torchvision in the same process where they are
importable (pixels and tensors bit for bit, as the C++ tests check), and always: the transform
from a path equals the transform from decoded pixels, the model runs on the result, and bad
files raise strata.Error naming the file."""
import os

import numpy as np
import pytest

import strata
from conftest import fixture

PHOTOS = ["astronaut_landscape.jpg", "rocket_portrait.jpg", "camera_gray.jpg", "chelsea_rgba.png",
          "coffee_palette.png"]


@pytest.mark.parametrize("name", PHOTOS)
def test_load_and_transform(name, detgen_resnet18):
    path = fixture("images", name)
    rgb = strata.image.load(path)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    t = strata.image.imagenet_classification()
    x = t.load(path)
    assert x.dtype == np.float32 and x.shape == (3, 224, 224)
    assert np.array_equal(x, t(rgb))
    logits = detgen_resnet18(x[None])
    assert logits.shape == (1, 1000) and np.all(np.isfinite(logits))


def test_compose_repr_and_pieces():
    t = strata.image.Compose([strata.image.Resize(64), strata.image.CenterCrop(48), strata.image.ToTensor(),
                              strata.image.Normalize([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])])
    assert "Resize" in repr(t) and "CenterCrop" in repr(t)
    x = t.load(fixture("images", "coffee_444.jpg"))
    assert x.shape == (3, 48, 48)


def test_bad_files_raise_naming_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(strata.Error, match="broken.jpg"):
        strata.image.load(str(bad))
    with pytest.raises(strata.Error, match="refuse_16bit.png"):
        strata.image.load(fixture("images", "refuse_16bit.png"))
    with pytest.raises(strata.Error):
        strata.image.imagenet_classification()(np.zeros((4, 4), np.uint8))


@pytest.mark.parametrize("name", PHOTOS)
def test_equals_pil_and_torchvision(name):
    PIL = pytest.importorskip("PIL.Image", reason="PIL is not importable here")
    T = pytest.importorskip("torchvision.transforms", reason="torchvision is not importable here")
    path = fixture("images", name)
    with PIL.open(path) as im:
        rgb = im.convert("RGB")
        want_pixels = np.asarray(rgb)
        want = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                          T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])(rgb).numpy()
    assert np.array_equal(strata.image.load(path), want_pixels)
    assert np.array_equal(strata.image.imagenet_classification().load(path), want)
