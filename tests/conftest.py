"""Test set-up: Triton's interpreter where there is no GPU (set before triton is imported),
a private kernel cache per session, and the hypothesis profiles."""

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

try:
    import torch

    HAS_GPU = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    HAS_GPU = False
if not HAS_GPU:
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("SSMC_CACHE_DIR", tempfile.mkdtemp(prefix="ssmc-test-cache-"))

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# ci: deterministic and bounded, no deadline (deadline flakes are the classic CI failure)
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=8,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", deadline=None, max_examples=25, print_blob=True)
settings.register_profile(
    "fuzz", deadline=None, max_examples=400, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

DEVICE = "cuda" if HAS_GPU else "cpu"


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not HAS_GPU:
            item.add_marker(skip)
