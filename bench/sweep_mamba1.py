"""Sweep schedules of the generated Mamba-1 forward kernel on the GPU.

Checks each schedule against a float64 PyTorch recurrence on a small shape, then times it at
the benchmark shapes with triton.testing.do_bench (median), next to the device copy rate
measured in the same run. Prints a table; writes JSON to $OUT (or ./bench/results)."""

from __future__ import annotations

import json
import os
import sys
import time

import torch
import triton

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
from mamba1 import mamba1  # noqa: E402

import ssmc  # noqa: E402


def copy_rate_gbs() -> float:
    n = 1 << 30  # 1 GiB
    a = torch.empty(n, dtype=torch.uint8, device="cuda").random_()
    b = torch.empty_like(a)
    ms = triton.testing.do_bench(lambda: b.copy_(a), warmup=50, rep=300, return_mode="median")
    return 2 * n / (ms * 1e-3) / 1e9


def make_inputs(B, L, D, N, dtype, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    r = lambda *s: torch.randn(*s, device="cuda", generator=g)  # noqa: E731
    ins = {
        "x": r(B, L, D).to(dtype), "dt": r(B, L, D).to(dtype), "B": r(B, L, N).to(dtype),
        "C": r(B, L, N).to(dtype), "z": r(B, L, D).to(dtype),
        "A_log": torch.log(torch.arange(1, N + 1, device="cuda").float()).repeat(D, 1),
        "D": torch.ones(D, device="cuda"), "dt_bias": (torch.rand(D, device="cuda") * 4 - 6),
    }
    return ins


def reference(ins):
    x, dt, Bm, C, z = (ins[k].double() for k in ("x", "dt", "B", "C", "z"))
    A = -torch.exp(ins["A_log"].double())
    delta = torch.nn.functional.softplus(dt + ins["dt_bias"].double())
    h = torch.zeros(x.shape[0], x.shape[2], A.shape[1], dtype=torch.float64, device=x.device)
    ys = []
    for t in range(x.shape[1]):
        dA = torch.exp(delta[:, t, :, None] * A)
        h = dA * h + delta[:, t, :, None] * Bm[:, t, None, :] * x[:, t, :, None]
        ys.append((h * C[:, t, None, :]).sum(-1) + ins["D"].double() * x[:, t])
    y = torch.stack(ys, 1)
    return y * torch.nn.functional.silu(z), h


def bytes_moved(B, L, D, N, esize):
    return (3 * B * L * D + 2 * B * L * N + B * L * D) * esize + B * D * N * 4 + 3 * D * N * 4


CONFIGS = [
    dict(),  # the defaults: what users get
    dict(held="tensor"),  # the defaults before dims were held as registers
    dict(strategy="sequential", unroll=4, block=32, num_warps=1),
    dict(strategy="chunked", unroll=4, block=32, num_warps=1, chunks=16),
]
if len(sys.argv) > 1:  # configs as JSON: python bench/sweep_mamba1.py '[{"chunks": 8}, ...]'
    CONFIGS = json.loads(sys.argv[1])
SHAPES = [(8, 2048, 2048, 16), (8, 4096, 5120, 16), (2, 8192, 2048, 16)]


def main() -> None:
    out_dir = os.environ.get("OUT", "bench/results")
    os.makedirs(out_dir, exist_ok=True)
    dev = torch.cuda.get_device_name()
    copy = copy_rate_gbs()
    print(f"device {dev}; copy rate {copy:.0f} GB/s (read+write)", flush=True)
    rows = []
    small = make_inputs(2, 300, 96, 16, torch.bfloat16, seed=1)
    y_ref, h_ref = reference(small)
    for cfg in CONFIGS:
        t0 = time.time()
        layer = ssmc.compile(mamba1, **cfg)
        out = layer(**small)
        err_y = ((out["y"].double() - y_ref).norm() / y_ref.norm()).item()
        err_h = ((out["h_final"].double() - h_ref).norm() / h_ref.norm()).item()
        ok = err_y < 1e-2 and err_h < 1e-2
        name = ",".join(f"{k}={v}" for k, v in cfg.items()) or "defaults"
        print(f"{name}: rel err y {err_y:.2e} h {err_h:.2e} ({'ok' if ok else 'MISMATCH'}) compile {time.time()-t0:.1f}s", flush=True)
        if not ok:
            continue
        for (B, L, D, N) in SHAPES:
            ins = make_inputs(B, L, D, N, torch.bfloat16)
            ms = triton.testing.do_bench(lambda layer=layer, ins=ins: layer(**ins), warmup=10, rep=100, return_mode="median")
            gbs = bytes_moved(B, L, D, N, 2) / (ms * 1e-3) / 1e9
            rows.append(dict(cfg=name, shape=f"B{B} L{L} D{D} N{N}", ms=ms, gbs=gbs, frac=gbs / copy))
            print(f"   B{B} L{L} D{D} N{N}: {ms:.3f} ms  {gbs:.0f} GB/s  {gbs/copy:.3f} of copy", flush=True)
    print("\nbest per shape (fraction of the copy rate measured above):")
    for (B, L, D, N) in SHAPES:
        s = f"B{B} L{L} D{D} N{N}"
        best = max((r for r in rows if r["shape"] == s), key=lambda r: r["frac"], default=None)
        if best:
            print(f"  {s}: {best['ms']:.3f} ms, {best['frac']:.3f} of copy  [{best['cfg']}]")
    with open(os.path.join(out_dir, "sweep_mamba1.json"), "w") as f:
        json.dump(dict(device=dev, copy_gbs=copy, torch=torch.__version__, triton=triton.__version__, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
