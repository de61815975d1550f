"""strata from Python against outputs torchvision computed (tests/fixtures, tools/make_fixtures.py):
the seed example first, then every ResNet-18 getter configuration, torch.save files and the
segmentation / detection / getter checkpoints."""
import json
from collections import OrderedDict

import numpy as np
import pytest

import strata
from conftest import close, detgen, fixture

CONFIGS = ["seed", "full", "odd_all", "odd_b3", "bn1_relu", "small_layer2"]


def test_seed_example(detgen_resnet18):
    # The seed example, as torchvision writes it, on the fixture's input and weights.
    m = detgen_resnet18
    new_m = strata.IntermediateLayerGetter(m, {"layer1": "feat1", "layer3": "feat2"})
    want = strata.load(fixture("resnet18_seed.safetensors"))
    out = new_m(want["input"])
    assert [(k, v.shape) for k, v in out.items()] == [("feat1", (1, 64, 56, 56)), ("feat2", (1, 256, 14, 14))]
    assert isinstance(out, OrderedDict)
    for name, value in out.items():
        assert value.dtype == np.float32
        close(value, want["out." + name])


@pytest.mark.parametrize("config", CONFIGS)
def test_resnet18_configs(detgen_resnet18, config):
    want, meta = strata.load(fixture("resnet18_%s.safetensors" % config), metadata=True)
    return_layers = OrderedDict(json.loads(meta["return_layers"]))
    getter = strata.IntermediateLayerGetter(detgen_resnet18, return_layers)
    out = getter(want["input"], num_threads=2)
    assert list(out) == json.loads(meta["outputs"])  # model order, whatever order was asked
    for name, value in out.items():
        close(value, want["out." + name])
    # output_info agrees with what ran, without running.
    info = getter.output_info(want["input"].shape)
    assert [(i.name, i.shape) for i in info] == [(k, v.shape) for k, v in out.items()]


def test_bn1_is_not_aliased_by_relu(detgen_resnet18):
    want = strata.load(fixture("resnet18_bn1_relu.safetensors"))
    out = strata.IntermediateLayerGetter(detgen_resnet18, {"bn1": "bn1", "relu": "relu"})(want["input"])
    assert out["bn1"].min() < -1.0  # the true BatchNorm output, not torchvision's ReLU-overwritten one
    assert out["relu"].min() == 0.0


def test_full_model_call(detgen_resnet18):
    want = strata.load(fixture("resnet18_full.safetensors"))
    close(detgen_resnet18(want["input"]), want["out.logits"])


def test_pth_files_load_as_torch_wrote_them():
    expected = strata.load(fixture("pth", "small_expected.safetensors"))
    for name in ["small_zip.pth", "small_zip_proto4.pth", "small_zip_proto5.pth", "small_legacy.pth"]:
        got = strata.load(fixture("pth", name))
        assert list(got) == list(expected), name
        for key, value in got.items():
            want = expected[key]
            assert value.shape == want.shape, (name, key)
            assert not value.flags.writeable  # views of the mapped file
            np.testing.assert_array_equal(value, want, err_msg="%s: %s" % (name, key))
    tiny = strata.load(fixture("pth", "tiny_expected.safetensors"))
    for name in ["tiny_model.pth", "tiny_dataparallel.pth", "ckpt_state_dict.pth", "ckpt_model.pth",
                 "ckpt_model_state_dict_legacy.pth"]:
        got = strata.load(fixture("pth", name))
        assert list(got) == list(tiny), name
        for key in tiny:
            np.testing.assert_array_equal(got[key], tiny[key])


def test_bfloat16_becomes_float32():
    got = strata.load(fixture("pth", "small_zip.pth"))
    dtypes = {str(v.dtype) for v in got.values()}
    assert "float16" in dtypes and "int64" in dtypes and "float32" in dtypes
    # small_zip holds a bfloat16 tensor: numpy has no bfloat16, so it comes as float32 (exact).
    assert not any("bfloat" in d for d in dtypes)


def test_checkpoints_into_getter():
    want = strata.load(fixture("backbones", "ckpt_expected.safetensors"))
    x = want["input"]
    cases = [
        ("ckpt_segmentation.pth", "backbone.", {"layer1": "out", "maxpool": "aux"}, "segmentation."),
        ("ckpt_detection.pth", "backbone.body.", {"layer1": "0"}, "detection."),
        ("ckpt_getter.pth", None, {"layer1": "feat"}, "getter."),
    ]
    for name, prefix, layers, key in cases:
        getter = strata.IntermediateLayerGetter(strata.models.resnet18(init="none"), layers)
        assert strata.load(fixture("backbones", name), strip_prefix=prefix, into=getter) is getter
        out = getter(x)
        for new_name, value in out.items():
            close(value, want[key + new_name])
    # The same through getter.load_state_dict with numpy arrays.
    getter = strata.IntermediateLayerGetter(strata.models.resnet18(init="none"), {"layer1": "feat"})
    getter.load_state_dict(strata.load(fixture("backbones", "ckpt_getter.pth")))
    close(getter(x)["feat"], want["getter.feat"])


def test_wrong_prefix_is_named():
    getter = strata.IntermediateLayerGetter(strata.models.resnet18(init="none"), {"layer1": "out"})
    with pytest.raises(strata.Error, match="backbone"):
        strata.load(fixture("backbones", "ckpt_segmentation.pth"), into=getter)


def test_dilated_resnet50_against_torchvision_fixture():
    want, meta = strata.load(fixture("backbones", "resnet50_dilation_011.safetensors"), metadata=True)
    m = strata.models.resnet50(replace_stride_with_dilation=[False, True, True], init="none")
    m.load_state_dict(detgen.fill_deterministic(m.state_dict(), 2024))
    layers = OrderedDict(json.loads(meta["return_layers"]))
    out = strata.IntermediateLayerGetter(m, layers)(want["input"])
    steps = json.loads(meta["channel_step"])
    for name, value in out.items():
        close(value[:, ::steps[name]], want["sub." + name])
