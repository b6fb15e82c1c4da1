"""The ssmc command line."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ssmc(*args):
    return subprocess.run([sys.executable, "-m", "ssmc.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_show_ir():
    r = ssmc("show", "examples/mamba1.py:mamba1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("layer mamba1 dims [B, L, D, N]")
    assert "scan[axis=L, reverse=False]" in r.stdout


def test_show_passes_and_kernel():
    r = ssmc("show", "examples/mamba1.py:mamba1", "--stage", "passes")
    assert r.returncode == 0 and "=== after fuse ===" in r.stdout and "group k0" in r.stdout
    r = ssmc("show", "examples/mingru.py:mingru", "--stage", "kernel", "--strategy", "tiled")
    assert r.returncode == 0 and "tl.associative_scan" in r.stdout


def test_run_prints_shapes_and_summaries():
    r = ssmc("run", "examples/s4d.py:s4d_zoh", "--sizes", "L=5")
    assert r.returncode == 0, r.stderr
    assert "y [B, L, H] shape (2, 5, 13)" in r.stdout and "h_final [B, H, N]" in r.stdout


def test_run_check_passes_and_fails_honestly():
    r = ssmc("run", "examples/mingru.py:mingru", "--check", "--sizes", "L=9,D=5")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "max rel error" in r.stdout and "check: passed" in r.stdout
    r = ssmc("run", "examples/mingru.py:mingru", "--check", "--sizes", "L=9,D=5", "--tol-scale", "0")
    assert r.returncode == 1 and "MISMATCH" in r.stdout


def test_errors_are_one_line():
    r = ssmc("show", "examples/mamba1.py:nope")
    assert r.returncode == 2 and "has no layer 'nope'" in r.stderr and "Traceback" not in r.stderr
    r = ssmc("run", "examples/mamba1.py:mamba1", "--sizes", "Q=3")
    assert r.returncode == 2 and "has no dim 'Q'" in r.stderr
