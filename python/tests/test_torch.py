"""Parity with torchvision in the same process, where torch and torchvision import (skipped with
the reason otherwise: CI installs neither by default, see scripts/test_python.sh --torch)."""
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not importable here (parity tests need torch + torchvision)")
torchvision = pytest.importorskip("torchvision", reason="torchvision is not importable here")
from torchvision.models._utils import IntermediateLayerGetter as TorchGetter  # noqa: E402

import strata  # noqa: E402
from conftest import close  # noqa: E402


def torch_model(name, **kwargs):
    m = getattr(torchvision.models, name)(**kwargs).eval()
    for mod in m.modules():
        if isinstance(mod, torch.nn.ReLU):
            mod.inplace = False  # torchvision's in-place ReLU overwrites a requested bn1
    # Non-trivial BatchNorm statistics (a fresh model has mean 0, var 1).
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.25, 0.25, generator=g)
                mod.running_var.uniform_(0.5, 2.0, generator=g)
                mod.weight.uniform_(0.5, 1.5, generator=g)
                mod.bias.uniform_(-0.25, 0.25, generator=g)
    return m


@pytest.mark.parametrize("name,kwargs,layers,size", [
    ("resnet18", {}, {"layer1": "feat1", "layer3": "feat2"}, (2, 3, 97, 131)),
    ("resnet18", {}, {"conv1": "c", "bn1": "b", "layer4": "l4", "fc": "logits"}, (1, 3, 64, 64)),
    ("resnet50", {"replace_stride_with_dilation": [False, True, True]}, {"layer3": "aux", "layer4": "out"}, (1, 3, 65, 97)),
    ("resnext50_32x4d", {}, {"layer2": "l2"}, (1, 3, 64, 64)),
])
def test_getter_matches_torchvision(name, kwargs, layers, size):
    tm = torch_model(name, **kwargs)
    sm = getattr(strata.models, name)(init="none", **kwargs)
    # torch tensors load directly (through __array__, no copy on the way in).
    sm.load_state_dict(tm.state_dict())
    torch_layers = {k: v for k, v in layers.items() if k != "fc"}
    x = torch.rand(*size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = TorchGetter(tm, torch_layers)(x)
        if "fc" in layers:
            want[layers["fc"]] = tm(x)
    got = strata.IntermediateLayerGetter(sm, layers)(x)  # a torch CPU tensor as input
    assert list(got) == [layers[k] for k in sm.children_names() if k in layers]
    for k, v in got.items():
        close(v, want[k].numpy())
    # The same from numpy, and at 1 thread: the same bits as the torch-tensor call.
    again = strata.IntermediateLayerGetter(sm, layers)(x.numpy(), num_threads=1)
    for k in got:
        close(again[k], got[k].astype(np.float64), rel=1e-5)


def test_torch_save_file_into_model(tmp_path):
    tm = torch_model("resnet18")
    path = os.path.join(str(tmp_path), "resnet18.pth")
    torch.save(tm.state_dict(), path)
    sm = strata.load(path, into=strata.models.resnet18(init="none"))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        close(sm(x), tm(x).numpy())
    loaded = strata.load(path)
    for k, v in tm.state_dict().items():
        np.testing.assert_array_equal(loaded[k], v.numpy())


def test_torch_tensor_inputs():
    sm = strata.models.resnet18(seed=1)
    g = strata.IntermediateLayerGetter(sm, {"x": "input", "layer1": "f"})
    x = torch.rand(1, 3, 32, 32)
    out = g(x)
    assert np.shares_memory(out["input"], x.numpy())  # read in place
    np.testing.assert_array_equal(g(x.contiguous(memory_format=torch.channels_last))["f"], out["f"])
    with pytest.raises(TypeError, match="requires grad|require"):
        g(x.requires_grad_())
    with pytest.raises(ValueError, match="float64"):
        g(torch.rand(1, 3, 32, 32, dtype=torch.float64))


def test_dlpack_only_object():
    class OnlyDLPack:  # an array library that speaks DLPack and has no __array__
        def __init__(self, t):
            self.t = t

        def __dlpack__(self, stream=None):
            return self.t.__dlpack__()

        def __dlpack_device__(self):
            return self.t.__dlpack_device__()

    sm = strata.models.resnet18(seed=1)
    g = strata.IntermediateLayerGetter(sm, {"layer1": "f"})
    x = torch.rand(1, 3, 32, 32)
    np.testing.assert_array_equal(g(OnlyDLPack(x))["f"], g(x.numpy())["f"])
