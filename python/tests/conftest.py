"""Shared fixtures for the Python tests: the repository's torchvision-made fixtures
(tests/fixtures, see its README) and tools/detgen.py's deterministic weights."""
import os
import sys

import numpy as np
import pytest

import strata

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO, "tests", "fixtures")
sys.path.insert(0, os.path.join(REPO, "tools"))

import detgen  # noqa: E402  (tools/detgen.py: numpy only)

if os.path.isdir(os.path.join(os.getcwd(), "strata")) and \
        os.path.dirname(strata.__file__) == os.path.join(os.getcwd(), "strata"):
    raise RuntimeError("imported the source tree's python/strata (no compiled module): run pytest "
                       "from the repository root against the installed package")


def fixture(*parts):
    return os.path.join(FIXTURES, *parts)


def close(got, want, rel=1e-4):
    """The suite's tolerance: max|strata - torch| <= rel * max|torch| per tensor, same shape."""
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    err = float(np.max(np.abs(got.astype(np.float64) - want))) if want.size else 0.0
    assert err <= rel * scale, "max error %g > %g * max|want| (%g)" % (err, rel, scale)
    return err / scale if scale else 0.0


@pytest.fixture(scope="session")
def detgen_resnet18():
    """strata ResNet-18 with fill_deterministic(seed 2024) weights, the fixtures' model."""
    m = strata.models.resnet18(init="none")
    m.load_state_dict(detgen.fill_deterministic(m.state_dict(), 2024))
    return m
