"""Two costs a user meets besides the kernels' speed, on the GPU (issue 9):

1. Deterministic mode: Mamba-1 forward+backward with ``deterministic=True`` against the default
   (atomic sums) at the bench shapes, each checked first (deterministic: two runs give the same
   bits; against the default: max relative difference), timed with do_bench (median).
2. The first call at a new length after warm-up: wall clock (synchronized) of the first call
   against a warm call at that length, with the host time of the call (before the sync) and
   the CUDA allocator's new segments, to say where a slow first call spends its time.
Writes bench_modes.json to $OUT."""

from __future__ import annotations

import json
import os
import sys
import time

import torch
import triton

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
sys.path.insert(0, os.path.dirname(__file__))
from mamba1 import mamba1  # noqa: E402
from sweep_mamba1 import copy_rate_gbs, make_inputs  # noqa: E402

import ssmc  # noqa: E402


def fwd_bwd(c, ins, g):
    t = {k: v.detach().requires_grad_() for k, v in ins.items()}
    y = c(**t)["y"]
    y.backward(g)
    return [y.detach()] + [t[k].grad for k in sorted(t)]


def deterministic_cost(rows):
    for B, L, D in ((8, 2048, 2048), (2, 8192, 2048)):
        ins = make_inputs(B, L, D, 16, torch.bfloat16)
        g = torch.randn(B, L, D, device="cuda", dtype=torch.bfloat16)
        det, default = ssmc.compile(mamba1, deterministic=True), ssmc.compile(mamba1)
        a, b, ref = fwd_bwd(det, ins, g), fwd_bwd(det, ins, g), fwd_bwd(default, ins, g)
        same = all(torch.equal(x, y) for x, y in zip(a, b))
        r1, r2 = fwd_bwd(default, ins, g), fwd_bwd(default, ins, g)
        default_same = all(torch.equal(x, y) for x, y in zip(r1, r2))
        diff = max(((x.float() - y.float()).abs().max() / y.float().abs().max().clamp_min(1e-30)).item() for x, y in zip(a, ref))
        ms = {}
        for name, c in (("default", default), ("deterministic", det)):
            ms[name] = triton.testing.do_bench(lambda c=c, ins=ins, g=g: fwd_bwd(c, ins, g), warmup=5, rep=60, return_mode="median")
        row = dict(shape=f"B{B} L{L} D{D} N16", default_ms=ms["default"], deterministic_ms=ms["deterministic"],
                   ratio=ms["deterministic"] / ms["default"], det_bitwise_twice=same, default_bitwise_twice=default_same,
                   max_rel_diff_vs_default=diff)
        rows.append(row)
        print(f"fwd+bwd B{B} L{L} D{D}: default {ms['default']:.3f} ms (bitwise twice: {default_same}), "
              f"deterministic {ms['deterministic']:.3f} ms (bitwise twice: {same}) = {row['ratio']:.2f}x; "
              f"max rel diff {diff:.1e}", flush=True)


def first_calls(rows):
    c = ssmc.compile(mamba1)
    B, D = 8, 2048
    for grad in (False, True):
        for L in (2048, 4):  # warm-up
            ins = make_inputs(B, L, D, 16, torch.bfloat16)
            (fwd_bwd(c, ins, torch.randn(B, L, D, device="cuda", dtype=torch.bfloat16)) if grad else c(**ins))
        torch.cuda.synchronize()
        for L in (1000, 3001, 1500):
            ins = make_inputs(B, L, D, 16, torch.bfloat16, seed=L)
            g = torch.randn(B, L, D, device="cuda", dtype=torch.bfloat16)
            segs = torch.cuda.memory_stats().get("segment.all.allocated", 0)
            times = []
            for i in range(4):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                fwd_bwd(c, ins, g) if grad else c(**ins)
                host = time.perf_counter() - t0
                torch.cuda.synchronize()
                times.append((time.perf_counter() - t0, host))
                if i == 0:
                    new_segs = torch.cuda.memory_stats().get("segment.all.allocated", 0) - segs
            warm = sorted(t for t, _ in times[1:])[1]
            row = dict(L=L, grad=grad, first_ms=times[0][0] * 1e3, first_host_ms=times[0][1] * 1e3,
                       warm_ms=warm * 1e3, warm_host_ms=times[2][1] * 1e3, new_segments=new_segs)
            rows.append(row)
            print(f"first call B{B} L{L} grad={grad}: {row['first_ms']:.3f} ms (host {row['first_host_ms']:.3f}, "
                  f"{new_segs} new allocator segments); warm {row['warm_ms']:.3f} ms (host {row['warm_host_ms']:.3f}) "
                  f"= {times[0][0] / warm:.2f}x", flush=True)


def main() -> None:
    out = os.environ.get("OUT", "bench/results")
    copy = copy_rate_gbs()
    print(f"device {torch.cuda.get_device_name()}; copy {copy:.0f} GB/s", flush=True)
    det, first = [], []
    first_calls(first)
    deterministic_cost(det)
    with open(os.path.join(out, "bench_modes.json"), "w") as f:
        json.dump(dict(device=torch.cuda.get_device_name(), copy_gbs=copy, deterministic=det, first_call=first), f, indent=1)


if __name__ == "__main__":
    main()
