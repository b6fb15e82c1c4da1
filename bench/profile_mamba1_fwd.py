"""Per-kernel GPU time of the default Mamba-1 forward at the benchmark shapes (torch.profiler,
mean over 20 calls after warm-up): how the chunked plan's time splits among the states pass,
the combine and the main kernel."""

import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.argv[1:] = []
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
from mamba1 import mamba1  # noqa: E402
from sweep_mamba1 import SHAPES, make_inputs  # noqa: E402

import ssmc  # noqa: E402

layer = ssmc.compile(mamba1)
for s in SHAPES:
    x = make_inputs(*s, torch.bfloat16)
    for _ in range(5):
        layer(**x)
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(20):
            layer(**x)
        torch.cuda.synchronize()
    rows = [(e.key, e.self_device_time_total / e.count, e.count) for e in prof.key_averages() if e.self_device_time_total > 0]
    total = sum(t * c for _, t, c in rows) / 20
    print(f"B{s[0]} L{s[1]} D{s[2]} N{s[3]}: {total:.1f} us of kernels per call")
    for k, t, c in sorted(rows, key=lambda r: -r[1] * r[2]):
        print(f"   {k[:40]:40s} {t:8.1f} us x {c // 20}")
