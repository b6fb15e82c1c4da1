"""Where the host time of a first call at a new length goes (cProfile, on the GPU machine's
host): Mamba-1 forward, B8 D2048 bf16, warm at L 2048 and 4, then first calls at new lengths."""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
sys.path.insert(0, os.path.dirname(__file__))
from mamba1 import mamba1  # noqa: E402
from sweep_mamba1 import make_inputs  # noqa: E402

import ssmc  # noqa: E402


def main() -> None:
    c = ssmc.compile(mamba1)
    for L in (2048, 4):
        c(**make_inputs(8, L, 2048, 16, torch.bfloat16))
    torch.cuda.synchronize()
    ins = {L: make_inputs(8, L, 2048, 16, torch.bfloat16, seed=L) for L in range(1000, 1040)}
    t0 = time.perf_counter()
    for L in range(1000, 1020):
        c(**ins[L])
    print(f"first calls, host: {(time.perf_counter() - t0) / 20 * 1e6:.0f} us each", flush=True)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for L in range(1000, 1020):
        c(**ins[L])
    print(f"replayed calls, host: {(time.perf_counter() - t0) / 20 * 1e6:.0f} us each", flush=True)
    torch.cuda.synchronize()
    prof = cProfile.Profile()
    prof.enable()
    for L in range(1020, 1040):
        c(**ins[L])
    prof.disable()
    pstats.Stats(prof).sort_stats("cumtime").print_stats(30)
    pstats.Stats(prof).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
