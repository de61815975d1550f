"""The Python API's contract: zero copies in and out, the GIL released during calls (threads run
in parallel and agree bit for bit with a serial run), run options, loading and errors."""
import gc
import os
import re
import stat
import threading
import time

import numpy as np
import pytest

import strata
from conftest import REPO, close, detgen, fixture

SEED = {"layer1": "feat1", "layer3": "feat2"}


def rand(*shape, seed=0):
    return np.random.RandomState(seed).rand(*shape).astype(np.float32)


@pytest.fixture(scope="module")
def getter(detgen_resnet18):
    return strata.IntermediateLayerGetter(detgen_resnet18, SEED)


# ---- zero copies ---------------------------------------------------------------------------------

def test_contiguous_input_is_read_in_place(detgen_resnet18):
    # Node "x" is the input itself: with no copy on the way in, the output is the caller's memory.
    g = strata.IntermediateLayerGetter(detgen_resnet18, {"x": "input", "layer1": "feat"})
    x = rand(1, 3, 32, 32)
    out = g(x)
    assert np.shares_memory(out["input"], x)
    assert out["input"].flags.writeable  # as writeable as the input
    x.flags.writeable = False
    assert not g(x)["input"].flags.writeable


def test_outputs_own_strata_buffers(getter):
    x = rand(1, 3, 64, 64)
    before = x.copy()
    out = getter(x)
    for v in out.values():
        assert not v.flags.owndata and type(v.base).__name__ == "PyCapsule"  # strata's buffer, no copy
        assert v.flags.c_contiguous and v.flags.writeable
    np.testing.assert_array_equal(x, before)  # the input is never written


def test_outputs_outlive_model_and_getter():
    m = strata.models.resnet18(seed=3)
    g = strata.IntermediateLayerGetter(m, {"layer2": "f"})
    out = g(rand(1, 3, 64, 64))
    want = out["f"].copy()
    del m, g
    gc.collect()
    np.testing.assert_array_equal(out["f"], want)


def test_other_layouts_are_copied_once_with_the_same_result(getter):
    base = rand(2, 3, 80, 72)
    x = base[:, :, 8:72, 4:68]  # a crop: not contiguous
    unaligned = np.frombuffer(b"\0" + x.tobytes(), np.float32, offset=1).reshape(x.shape)
    assert not unaligned.flags.aligned
    for variant in [x, np.asfortranarray(x), x[::-1], np.broadcast_to(x[:1], x.shape), unaligned]:
        got = getter(variant)
        want = getter(np.ascontiguousarray(variant))
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])


# ---- the GIL and threads ------------------------------------------------------------------------

def test_threads_match_serial_bit_for_bit(detgen_resnet18):
    # 4 Python threads x 50 calls on one fresh getter, against a serial run (issue 16's test).
    g = strata.IntermediateLayerGetter(strata.models.resnet18(seed=5), {"layer1": "a", "layer4": "b"})
    inputs = [rand(1, 3, 48, 40 + 8 * (i % 3), seed=i) for i in range(8)]
    serial = [g(x, num_threads=1) for x in inputs]
    results, errors = {}, []

    def worker(t):
        try:
            for i in range(50):
                k = (t * 50 + i) % len(inputs)
                results[(t, i)] = (k, g(inputs[k], num_threads=1))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(results) == 200
    for k, out in results.values():
        for name in out:
            np.testing.assert_array_equal(out[name], serial[k][name])


def test_gil_is_released_during_a_call(detgen_resnet18):
    # A slow call (the reference kernels) on one thread; this thread keeps running meanwhile.
    g = strata.IntermediateLayerGetter(detgen_resnet18, {"layer4": "out"})
    x = rand(1, 3, 128, 128)
    started = threading.Event()
    done = []

    def worker():
        started.set()
        t0 = time.perf_counter()
        g(x, backend="reference", num_threads=1)
        done.append(time.perf_counter() - t0)

    t = threading.Thread(target=worker)
    t.start()
    started.wait()
    ticks = 0
    while t.is_alive():
        time.sleep(0.005)
        ticks += 1
    t.join()
    # Holding the GIL for the call would leave this thread a tick or two; released, it ticks
    # through the call (about one tick per 5 ms of it).
    assert done and done[0] > 0.2, done
    assert ticks >= 10, "main thread ticked %d times during a %.2f s call" % (ticks, done[0])


def test_load_while_calling_is_serialised():
    # Loads wait for calls in flight on other threads (and calls for loads): no torn weights.
    m = strata.models.resnet18(seed=1)
    g = strata.IntermediateLayerGetter(m, {"layer2": "f"})
    x = rand(1, 3, 40, 40)
    state_a = m.state_dict()
    state_b = strata.models.resnet18(seed=2).state_dict()
    m.load_state_dict(state_b)
    want_b = g(x, num_threads=1)["f"]
    m.load_state_dict(state_a)
    want_a = g(x, num_threads=1)["f"]
    stop = threading.Event()
    seen = []

    def caller():
        while not stop.is_set():
            seen.append(g(x, num_threads=1)["f"])

    t = threading.Thread(target=caller)
    t.start()
    for i in range(10):
        m.load_state_dict(state_b if i % 2 == 0 else state_a)
    stop.set()
    t.join()
    for out in seen:
        assert np.array_equal(out, want_a) or np.array_equal(out, want_b)


# ---- run options --------------------------------------------------------------------------------

def test_run_options(getter):
    x = rand(1, 3, 64, 64)
    want = getter(x)
    for kwargs in [dict(num_threads=1), dict(num_threads=2), dict(packing="lean"), dict(cpu="baseline"),
                   dict(backend="reference"), dict(max_activation_bytes=0)]:
        got = getter(x, **kwargs)
        for k in want:
            close(got[k], want[k])
    with pytest.raises(ValueError, match="num_threads=-1"):
        getter(x, num_threads=-1)
    with pytest.raises(ValueError, match="num_threads"):
        getter(x, num_threads=strata.max_threads() + 1)
    with pytest.raises(TypeError, match="num_threads"):
        getter(x, num_threads=1.5)
    with pytest.raises(ValueError, match="packing='quick'"):
        getter(x, packing="quick")
    with pytest.raises(ValueError, match="backend='cuda'"):
        getter(x, backend="cuda")
    with pytest.raises(ValueError, match="auto, baseline, avx2, avx512|avx512"):
        getter(x, cpu="sse9")
    with pytest.raises(ValueError, match="over the limit"):
        getter(x, max_activation_bytes=1000)
    level = strata.cpu_info().split(" ")[0]
    if level != "avx512":
        with pytest.raises(ValueError, match="AVX-512"):
            getter(x, cpu="avx512")


def test_output_info_without_running(getter):
    info = getter.output_info((2, 3, 97, 131))
    assert info == [strata.OutputInfo("feat1", (2, 64, 25, 33), 64, 4),
                    strata.OutputInfo("feat2", (2, 256, 7, 9), 256, 16)]
    with pytest.raises(ValueError, match="input channels"):
        getter.output_info((1, 4, 64, 64))


# ---- models and state dicts ---------------------------------------------------------------------

def test_models_and_names():
    assert sorted(strata.models.list_models()) == sorted(strata.models._NAMES)
    for name in strata.models.list_models():
        m = getattr(strata.models, name)(init="none")
        assert m.arch == name
        assert m.output_shape((1, 3, 64, 64)) == (1, 1000)
    m = strata.models.resnet50(replace_stride_with_dilation=(False, True, True), num_classes=10, init="none")
    g = strata.IntermediateLayerGetter(m, {"layer4": "out"})
    assert g.output_info((1, 3, 64, 64))[0].shape == (1, 2048, 8, 8)
    assert m.output_shape((1, 3, 64, 64)) == (1, 10)
    with pytest.raises(ValueError, match="dilation"):
        strata.models.resnet18(replace_stride_with_dilation=[False, True, True])
    with pytest.raises(ValueError, match="resnet18"):
        strata.models.create("resnet19")
    assert "layer1.0.conv2" in m.node_names()
    assert m.children_names()[:2] == ["conv1", "bn1"]
    assert repr(m).startswith("ResNet(\n  (conv1): Conv2d(3, 64")
    assert m.eval() is m


def test_state_dict_round_trip_and_strictness():
    a = strata.models.resnet18(seed=1)
    b = strata.models.resnet18(seed=2)
    sd = a.state_dict()
    assert list(sd)[:3] == ["conv1.weight", "bn1.weight", "bn1.bias"]
    assert sd["bn1.num_batches_tracked"].dtype == np.int64
    assert b.load_state_dict(sd) == strata.IncompatibleKeys([], [])
    x = rand(1, 3, 40, 40)
    np.testing.assert_array_equal(a(x), b(x))
    # float64 and float16 values convert as torch's copy_ would.
    b.load_state_dict({k: (v.astype(np.float64) if v.dtype == np.float32 else v) for k, v in sd.items()})
    np.testing.assert_array_equal(a(x), b(x))
    missing = dict(sd)
    del missing["fc.bias"]
    missing["extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(strata.Error, match="fc.bias") as e:
        b.load_state_dict(missing)
    assert "extra.weight" in str(e.value)
    assert b.load_state_dict(missing, strict=False) == strata.IncompatibleKeys(["fc.bias"], ["extra.weight"])
    bad = dict(sd)
    bad["conv1.weight"] = np.zeros((64, 3, 3, 3), np.float32)
    with pytest.raises(strata.Error, match="conv1.weight"):
        b.load_state_dict(bad)
    with pytest.raises(ValueError, match="bool"):
        b.load_state_dict(dict(sd, **{"fc.bias": np.zeros(1000, bool)}))
    # Strided numpy values load as their values.
    c = strata.models.resnet18(seed=9)
    c.load_state_dict({k: np.asfortranarray(v) if v.ndim > 1 else v for k, v in sd.items()})
    np.testing.assert_array_equal(a(x), c(x))


def test_weights_file_straight_into_the_model(tmp_path):
    src = strata.models.resnet18(seed=4)
    path = str(tmp_path / "w.safetensors")
    # A safetensors file written by tools/st_io.py from the model's state_dict.
    import st_io
    st_io.save_safetensors(src.state_dict(), path)
    m = strata.models.resnet18(weights=path)
    x = rand(1, 3, 40, 40)
    np.testing.assert_array_equal(m(x), src(x))
    m2 = strata.models.resnet18(init="none")
    assert strata.load(path, into=m2) is m2
    np.testing.assert_array_equal(m2(x), src(x))
    loaded = strata.load(path)
    assert list(loaded) == list(src.state_dict())
    with pytest.raises(ValueError, match="read-only"):
        loaded["conv1.weight"][0, 0, 0, 0] = 1.0


# ---- errors -------------------------------------------------------------------------------------

def test_input_errors(getter):
    x = rand(1, 3, 64, 64)
    with pytest.raises(strata.Error, match=r"float32 array, got dtype float64; convert it with x.astype"):
        getter(x.astype(np.float64))
    with pytest.raises(ValueError, match=r"4-D input \[N, C, H, W\], got shape \[3, 64, 64\]"):
        getter(x[0])
    with pytest.raises(ValueError, match="expected 3 input channels, got 4"):
        getter(rand(1, 4, 64, 64))
    with pytest.raises(ValueError, match="empty batch"):
        getter(rand(0, 3, 64, 64))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        getter(rand(1, 3, 0, 7))
    with pytest.raises(ValueError, match="float32 array, got dtype >f4"):
        getter(x.astype(">f4"))
    with pytest.raises(TypeError, match="expected a float32 NCHW array"):
        getter([[1.0]])
    with pytest.raises(TypeError, match="IntermediateLayerGetter: expected a strata model"):
        strata.IntermediateLayerGetter(object(), SEED)
    with pytest.raises(ValueError, match="nearest: 'layer1'"):
        strata.IntermediateLayerGetter(getter.model, {"layer5": "x"})
    with pytest.raises(ValueError, match="new name"):
        strata.IntermediateLayerGetter(getter.model, {"layer1": "a", "layer2": "a"})
    assert issubclass(strata.Error, ValueError)


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        strata.load(str(tmp_path / "missing.pth"))
    with pytest.raises(IsADirectoryError):
        strata.load(str(tmp_path))
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        strata.load(fifo)  # refused without opening it (opening would block)
    if os.geteuid() != 0:
        locked = tmp_path / "locked.pth"
        locked.write_bytes(b"x")
        locked.chmod(0)
        with pytest.raises(PermissionError):
            strata.load(str(locked))
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a weight file at all")
    with pytest.raises(strata.Error, match="junk.bin"):
        strata.load(str(junk))
    with pytest.raises(strata.Error, match="torch.nn.modules.container.Sequential"):
        strata.load(fixture("pth", "refuse_whole_model.pth"))
    with pytest.raises(strata.Error, match="float64"):
        strata.load(fixture("pth", "refuse_float64.pth"))
    with pytest.raises(FileNotFoundError):
        strata.models.resnet18(weights=str(tmp_path / "nope.pth"))


def test_version_matches_cmake():
    text = open(os.path.join(REPO, "CMakeLists.txt")).read()
    assert strata.__version__ == re.search(r"project\(strata VERSION ([0-9.]+)", text).group(1)
    import importlib.metadata as md
    try:
        assert md.version("strata") == strata.__version__
    except md.PackageNotFoundError:
        pass  # a development build (PYTHONPATH=build/python) is not an installed distribution
