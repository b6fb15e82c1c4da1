"""Host time per call of the generated Mamba-1 kernels (what eager decode and short sequences
pay): a tight loop of calls, synchronizing once, for a call replayed from its signature's
recording (replay.py), a call planned afresh (recordings cleared first), and the module's
step; next to do_bench's median for the same call. Prints microseconds per call.
(2026-11-24, H100 host, before replay.py: raw_call 154 us at B64 L1 D5120, of which the
planner's Python 133 us; module.step 410 us.)"""

from __future__ import annotations

import os
import sys
import time

import torch
import triton

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
from mamba1 import mamba1  # noqa: E402

import ssmc  # noqa: E402


def per_call_us(fn, n=300):
    for _ in range(20):
        fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / n * 1e6


def main():
    r = lambda *s: torch.randn(*s, device="cuda").to(torch.bfloat16)  # noqa: E731
    for (B, L, D, N) in ((64, 1, 5120, 16), (8, 512, 2048, 16), (8, 2048, 2048, 16)):
        c = ssmc.compile(mamba1)
        ins = dict(x=r(B, L, D), dt=r(B, L, D), B=r(B, L, N), C=r(B, L, N), z=r(B, L, D),
                   A_log=torch.zeros(D, N, device="cuda"), D=torch.ones(D, device="cuda"), dt_bias=torch.zeros(D, device="cuda"))
        if L == 1:
            ins["h0"] = torch.randn(B, D, N, device="cuda")
        call = lambda c=c, ins=ins: c.raw_call(**ins)  # noqa: E731
        replayed = per_call_us(call)
        planned = per_call_us(lambda c=c, call=call: (c._recipes.clear(), call()))
        gpu = triton.testing.do_bench(call, warmup=25, rep=200, return_mode="median") * 1e3
        print(f"B{B} L{L} D{D} N{N}: a call replayed {replayed:.1f} us, planned {planned:.1f} us; "
              f"do_bench median {gpu:.1f} us", flush=True)
    m = ssmc.to_module(mamba1, {"D": 5120, "N": 16}).cuda()
    si = {k: r(64, 5120) for k in ("x", "dt", "z")} | {k: r(64, 16) for k in ("B", "C")}
    st = {"h_final": torch.randn(64, 5120, 16, device="cuda")}
    with torch.no_grad():
        print(f"module.step B64 D5120: {per_call_us(lambda: m.step(st, **si)):.1f} us")
    x = torch.empty(1, device="cuda")
    print(f"torch empty+add_ (reference): {per_call_us(lambda: x.add_(1)):.1f} us")


if __name__ == "__main__":
    main()
