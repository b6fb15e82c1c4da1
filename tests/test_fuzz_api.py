"""ssmc.fuzz and `ssmc fuzz`: the differential test on a user's layer."""

import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import HAS_GPU
from mingru import mingru

import ssmc

ROOT = Path(__file__).resolve().parents[1]


def test_fuzz_passes_on_an_example():
    report = ssmc.fuzz(mingru, examples=10, seed=1)
    assert report.ok and report.examples == 10, str(report)


def test_fuzz_reports_a_shrunk_failure_with_a_working_snippet(capsys):
    # with the tolerance scaled to 0 any rounding difference is a failure; shrinking is bounded
    # (unbounded, it took ~250 s of CI in Triton's interpreter)
    t0 = time.monotonic()
    report = ssmc.fuzz(
        mingru, examples=10, seed=1, tol_scale=0.0, target=str(ROOT / "examples/mingru.py") + ":mingru",
        shrink_seconds=15.0,
    )
    assert not report.ok
    # the budget is checked between cases: one case past it at most (a case runs in seconds)
    assert time.monotonic() - t0 < 15.0 + 60.0
    assert "MISMATCH" in report.failure and "reproduce with:" in report.failure
    snippet = report.failure.split("reproduce with:\n", 1)[1]
    code = "\n".join(line[2:] for line in snippet.splitlines())
    env = dict(os.environ)
    if not HAS_GPU:  # the snippet runs where the tests do: on the GPU if there is one
        env.setdefault("TRITON_INTERPRET", "1")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "MISMATCH" in r.stdout


def test_cli_fuzz_mamba1_50_examples():
    r = subprocess.run(
        [sys.executable, "-m", "ssmc.cli", "fuzz", "examples/mamba1.py:mamba1", "--examples", "50", "--seed", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "50 cases, all match the interpreter" in r.stdout
