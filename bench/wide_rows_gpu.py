"""Mamba-1's forward with its [B, L, N] inputs (B, C) passed in float32 against bf16, on a GPU
(issue 3): the register-held kernels read a B / C row each step as scalar loads, every thread
the same row, and unpack each bf16 value (one SHF / LOP3 each); float32 rows need no unpacking.
sm_90 compiles (bench/aot_sm90.py with FLOAT32=B / B,C, B2 L8192, 32 chunks): the states kernel's
loop 548 -> 461 instructions (95 -> 168 registers), the chunked kernel 909 -> 865 with B
(168 registers, 48 B stack) and 775 with B and C (254 registers). Each variant's outputs must equal
bf16's bit for bit (the widening is exact); the cast's own cost is timed apart. Then the
compiler's own widening (``run.WIDEN_ROWS``: the conversion inside the call, replayed), forward
at each shape and forward+backward at B8 L2048, against the default in the same run. Prints a
table; writes $OUT/wide_rows.json."""

import json
import os
import sys

import torch
import triton

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
from mamba1 import mamba1  # noqa: E402
from sweep_mamba1 import bytes_moved, make_inputs  # noqa: E402

import ssmc  # noqa: E402
from ssmc.backends.triton import run as R  # noqa: E402
from ssmc.backends.triton import schedule  # noqa: E402
from ssmc.benchmark.measure import copy_rate, rel_max_err  # noqa: E402

SHAPES = [(8, 2048, 2048, 16), (8, 4096, 5120, 16), (2, 8192, 2048, 16)]


def bench(f):
    return triton.testing.do_bench(f, warmup=25, rep=200, return_mode="median")


def main():
    copy = copy_rate()
    print(f"{torch.cuda.get_device_name()}  copy {copy / 1e9:.0f} GB/s", flush=True)
    layer = ssmc.compile(mamba1)
    rows = []
    for B, L, D, N in SHAPES:
        ins = make_inputs(B, L, D, N, torch.bfloat16)
        moved = bytes_moved(B, L, D, N, 2)  # as bench/sweep_mamba1.py counts them (y and h_final out)
        base = None
        for wide in ((), ("B",), ("B", "C")):
            x = dict(ins)
            for k in wide:
                x[k] = ins[k].float()
            y = layer(**x)["y"]
            torch.cuda.synchronize()
            if base is None:
                base = y.clone()
            same = bool(torch.equal(y, base))
            ms = bench(lambda x=x: layer(**x))
            cast = bench(lambda ins=ins, wide=wide: [ins[k].float() for k in wide]) if wide else 0.0
            frac = moved / ((ms + cast) * 1e-3) / copy
            rows.append(dict(shape=[B, L, D, N], wide=list(wide), ms=ms, cast_ms=cast, of_copy=frac, identical=same))
            print(f"B{B} L{L} D{D}  float32 rows {','.join(wide) or '-':5s} {ms:.4f} ms + cast {cast:.4f}  "
                  f"{frac:.4f} of copy  identical {same}", flush=True)
        # the compiler's widening, a fresh layer each: for every kernel, for the states pass
        # alone, and those with the states pass capped at 128 registers
        # (schedule.MAXNREG["held_states"]: 168 with B in float32, no stack at 128)
        for widen, cap in ((False, 0), (True, 0), (True, 128), ("states", 0), ("states", 128)):
            R.WIDEN_ROWS = widen
            schedule.MAXNREG["held_states"] = cap
            lw = ssmc.compile(mamba1)
            y = lw(**ins)["y"]
            torch.cuda.synchronize()
            same = bool(torch.equal(y, base))
            ms = bench(lambda lw=lw, ins=ins: lw(**ins))
            frac = moved / (ms * 1e-3) / copy
            rows.append(dict(shape=[B, L, D, N], widen_rows=widen, held_states_cap=cap, ms=ms, of_copy=frac, identical=same))
            print(f"B{B} L{L} D{D}  WIDEN_ROWS {widen!s:6s} cap {cap:3d} {ms:.4f} ms  {frac:.4f} of copy  identical {same}", flush=True)
        R.WIDEN_ROWS = False
        schedule.MAXNREG["held_states"] = 0
    B, L, D, N = SHAPES[0]
    ins = make_inputs(B, L, D, N, torch.bfloat16)
    dy = torch.randn_like(ins["x"])
    grads = {}
    for widen in (False, True, "states"):
        R.WIDEN_ROWS = widen
        lw = ssmc.compile(mamba1)
        x = {k: v.detach().clone().requires_grad_() for k, v in ins.items()}

        def step(lw=lw, x=x):
            for v in x.values():
                v.grad = None
            torch.autograd.backward([lw(**x)["y"]], [dy])

        step()
        grads[widen] = {k: v.grad.clone() for k, v in x.items()}
        ms = bench(step)
        err = max(rel_max_err(grads[widen][k], grads[False][k]) for k in grads[False]) if widen else 0.0
        rows.append(dict(shape=[B, L, D, N], backward=True, widen_rows=widen, ms=ms, err_vs_default=err))
        print(f"B{B} L{L} D{D} fwd+bwd  WIDEN_ROWS {widen!s:6s} {ms:.4f} ms  grads vs default {err:.1e}", flush=True)
    R.WIDEN_ROWS = False
    json.dump(dict(device=torch.cuda.get_device_name(), copy_gbs=copy / 1e9, rows=rows),
              open(os.path.join(os.environ.get("OUT", "."), "wide_rows.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
