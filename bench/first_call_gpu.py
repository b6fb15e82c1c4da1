"""Why the first call at a new length can take over 2x a warm one (tests/test_recompile.py's
GPU test, grad=False, Mamba-1 B8 D2048 bf16): per call, wall time first and warm, and how many
device allocations (cudaMalloc, torch's memory_stats "num_device_alloc") and segments the first
call added. Then the same with the caching allocator grown beforehand (one large buffer
allocated and freed), and a second round of new lengths on the same compiled layer."""

import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
from mamba1 import mamba1  # noqa: E402
from test_recompile import _inputs, _run, _timed, _warm  # noqa: E402

import ssmc  # noqa: E402


def _allocs() -> tuple:
    s = torch.cuda.memory_stats()
    return s.get("num_device_alloc", -1), s.get("segment.all.current", -1)


def _round(c, shapes, grad, label):
    for b, L in shapes:
        t = _inputs(b, L, 2048, 16, torch.bfloat16, grad, seed=L)
        torch.cuda.synchronize()
        a0, s0 = _allocs()
        first = _timed(c, t, grad)
        a1, s1 = _allocs()
        w = _warm(c, t, grad)
        print(f"{label:>24} B{b} L{L} grad={grad}: first {first * 1e3:7.3f} ms  warm {w * 1e3:7.3f} ms"
              f"  ratio {first / w:5.2f}  cudaMallocs +{a1 - a0}  segments +{s1 - s0}", flush=True)


def main() -> None:
    for grad in (False, True):
        c = ssmc.compile(mamba1)
        for L in (2048, 4):
            _run(c, _inputs(8, L, 2048, 16, torch.bfloat16, grad), grad)
        torch.cuda.synchronize()
        _round(c, ((8, 1900), (8, 3001), (6, 2500)), grad, "as the test")
        _round(c, ((8, 1700), (8, 2900), (6, 2300)), grad, "second round")
        torch.cuda.empty_cache()
        c = ssmc.compile(mamba1)
        for L in (2048, 4):
            _run(c, _inputs(8, L, 2048, 16, torch.bfloat16, grad), grad)
        big = torch.empty(2 << 30, dtype=torch.uint8, device="cuda")
        del big
        torch.cuda.synchronize()
        _round(c, ((8, 1900), (8, 3001), (6, 2500)), grad, "allocator grown first")
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
