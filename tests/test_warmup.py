"""Warm-up: compiles ahead of time into the cache; a later process then writes nothing new."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_warmup_fills_the_cache_and_a_second_run_reuses_it(tmp_path):
    env = dict(os.environ, SSMC_CACHE_DIR=str(tmp_path / "cache"))
    cmd = [sys.executable, "-m", "ssmc.cli", "warmup", "examples/mamba1.py:mamba1", "--dtype", "bf16", "--sizes", "B=2,L=9,D=5,N=4", "--backward"]
    first = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert "mamba1 bf16 B=2,L=9,D=5,N=4:" in first.stdout
    cached = sorted(p.name for p in (tmp_path / "cache").glob("*.py"))
    assert cached and "source(s) cached" in first.stdout
    assert any("def mamba1_backward_k0_bidir(" in p.read_text() for p in (tmp_path / "cache").glob("*.py"))
    second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    assert "0 source(s) cached" in second.stdout
    assert sorted(p.name for p in (tmp_path / "cache").glob("*.py")) == cached
