"""Which kernel sources and Triton binaries a call creates after warm-up (tests/test_recompile.py's
sequences, grad=True), on the GPU: prints each new source's kernel and each compile."""

import cProfile
import os
import pstats
import sys
import time

import torch
import triton

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
from mamba1 import mamba1  # noqa: E402
from test_recompile import _inputs, _run  # noqa: E402

import ssmc  # noqa: E402
import ssmc.backends.triton.jit as jit  # noqa: E402

orig = jit.CompiledLayer._fn
stage = ["warm-up"]


def logged(self, kernel):
    key = (kernel.name, kernel.strategy, kernel.held, kernel.pairs)
    if key not in self._fns:
        print(f"  [{stage[0]}] new source: {kernel.name} held={kernel.held} pairs={kernel.pairs}", flush=True)
    return orig(self, kernel)


jit.CompiledLayer._fn = logged
triton.knobs.runtime.jit_post_compile_hook = lambda **kw: print(f"  [{stage[0]}] compiled {kw.get('fn')}", flush=True)

c = ssmc.compile(mamba1)
for B, L in ((2, 9), (2, 3)):
    _run(c, _inputs(B, L, 5, 4, torch.float32, True), True)
cu = torch.tensor([0, 4, 13], dtype=torch.int32, device="cuda")
c(**_inputs(1, 13, 5, 4, torch.float32), cu_seqlens=cu)
for B, L in ((1, 1), (3, 2), (2, 7), (1, 17), (3, 40), (1, 129)):
    stage[0] = f"B{B} L{L}"
    _run(c, _inputs(B, L, 5, 4, torch.float32, True, seed=L), True)

print("--- B8 D2048 bf16", flush=True)
c = ssmc.compile(mamba1)
stage[0] = "warm-up"
for L in (2048, 4):
    _run(c, _inputs(8, L, 2048, 16, torch.bfloat16, True), True)
torch.cuda.synchronize()
for b, L in ((8, 1900), (8, 3001), (6, 2500)):
    stage[0] = f"B{b} L{L}"
    t = _inputs(b, L, 2048, 16, torch.bfloat16, True, seed=L)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    _run(c, t, True)
    torch.cuda.synchronize()
    prof.disable()
    first = time.perf_counter() - t0
    if first > 0.1:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    t0 = time.perf_counter()
    _run(c, t, True)
    torch.cuda.synchronize()
    print(f"B{b} L{L}: first {first * 1e3:.1f} ms, second {(time.perf_counter() - t0) * 1e3:.1f} ms", flush=True)
