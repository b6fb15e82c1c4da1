"""Per-kernel GPU time of Mamba-1's forward+backward (torch.profiler, mean of 10 calls after
warm-up; gradients set to None before each) at B8 L2048 D2048 and B2 L8192 D2048: where the
backward's time goes."""

import os
import sys

import torch
import triton

HERE = os.path.dirname(os.path.abspath(__file__))
sys.argv[1:] = []
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
from mamba1 import mamba1  # noqa: E402
from sweep_mamba1 import make_inputs  # noqa: E402

import ssmc  # noqa: E402

layer = ssmc.compile(mamba1)
for s in ((8, 2048, 2048, 16), (2, 8192, 2048, 16)):
    x = make_inputs(*s, torch.bfloat16)
    for v in x.values():
        v.requires_grad_(True)
    gy = torch.randn_like(x["x"])

    def step(x=x, gy=gy):
        for v in x.values():
            v.grad = None
        out = layer(**x)
        torch.autograd.backward([out["y"]], [gy])

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(10):
            step()
        torch.cuda.synchronize()
    ms = triton.testing.do_bench(step, warmup=25, rep=200, return_mode="median")
    print(f"B{s[0]} L{s[1]} D{s[2]} N{s[3]}: forward+backward {ms:.3f} ms (do_bench median)")
    rows = [(e.key, e.self_device_time_total / 10, e.count // 10) for e in prof.key_averages() if e.self_device_time_total > 0]
    print(f"B{s[0]} L{s[1]} D{s[2]} N{s[3]}: {sum(t for _, t, _ in rows):.0f} us of kernels per forward+backward")
    for k, t, c in sorted(rows, key=lambda r: -r[1]):
        print(f"   {k[:50]:50s} {t:9.1f} us  ({c} launches)")
