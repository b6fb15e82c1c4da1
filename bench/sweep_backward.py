"""Schedules of the generated backward kernels on the GPU, for Mamba-1 and HGRN at the bench
shapes: each schedule's gradients checked against the default's (max |a - b| / max |b|), then
the backward alone timed with do_bench (median) next to the device copy rate of the same run.
Usage: python bench/sweep_backward.py '[{"block": 32}, {"unroll": 4, "sub": 8}]' [mamba1,hgrn]
(a config's "maxnreg": the main kernel's register cap, schedule.MAXNREG["bidir"]; "main_block": its
channels a program, schedule.BIDIR_CHANNELS, where "block" sets every kernel's; SHAPES=0,2 picks
cases by index, before the layer filter: 0-2 Mamba-1's shapes, 3 HGRN's)."""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.nn.functional as F
import triton

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
from hgrn import hgrn  # noqa: E402
from mamba1 import mamba1  # noqa: E402

import ssmc  # noqa: E402
from ssmc.backends.triton import schedule  # noqa: E402
from ssmc.backends.triton.backward import CompiledBackward  # noqa: E402
from ssmc.benchmark.measure import copy_rate, rel_max_err  # noqa: E402

CONFIGS = json.loads(sys.argv[1]) if len(sys.argv) > 1 else [{"block": 32}, {"block": 8}, {"unroll": 4}]


def inputs(name, shape):
    r = lambda *s: torch.randn(*s, device="cuda").to(torch.bfloat16)  # noqa: E731
    if name == "mamba1":
        B, L, D, N = shape
        return dict(x=r(B, L, D), dt=r(B, L, D), B=r(B, L, N), C=r(B, L, N), z=r(B, L, D),
                    A_log=torch.log(torch.arange(1, N + 1, device="cuda").float()).repeat(D, 1),
                    D=torch.randn(D, device="cuda"), dt_bias=torch.rand(D, device="cuda") * 4 - 6), r(B, L, D)
    B, L, D = shape
    return dict(x=r(B, L, D), g=F.logsigmoid(torch.randn(B, L, D, device="cuda")).to(torch.bfloat16)), r(B, L, D)


def main():
    copy = copy_rate()
    print(f"{torch.cuda.get_device_name()}; copy {copy / 1e9:.0f} GB/s", flush=True)
    rows = []
    cases = [("mamba1", mamba1, s) for s in ((8, 2048, 2048, 16), (8, 4096, 5120, 16), (2, 8192, 2048, 16))]
    cases += [("hgrn", hgrn, (8, 4096, 2048))]
    if os.environ.get("SHAPES"):  # only these cases by index (0-2 Mamba-1's, 3 HGRN's), e.g. SHAPES=0
        keep = [int(i) for i in os.environ["SHAPES"].split(",")]
        cases = [c for i, c in enumerate(cases) if i in keep]
    if len(sys.argv) > 2:  # only these layers
        cases = [c for c in cases if c[0] in sys.argv[2].split(",")]
    for name, layer, shape in cases:
        fwd = ssmc.compile(layer)
        ins, dy = inputs(name, shape)
        base = None
        for cfg in [{}] + CONFIGS:
            try:
                args = dict(cfg)
                schedule.MAXNREG["bidir"] = args.pop("maxnreg", 0)  # the main kernel's register cap
                schedule.BIDIR_CHANNELS = args.pop("main_block", 16)  # its channels a program (alone)
                bwd = CompiledBackward(layer, forward=fwd, **args)
                got = bwd(**ins, grad_y=dy)
                torch.cuda.synchronize()
                if base is None:
                    base, err = got, 0.0
                else:
                    err = max(rel_max_err(got[k], base[k]) for k in base)
                ms = triton.testing.do_bench(lambda bwd=bwd, ins=ins, dy=dy: bwd(**ins, grad_y=dy), warmup=25, rep=200, return_mode="median")
                k = bwd.last_launched
                regs = getattr(k, "n_regs", "?")
                rows.append(dict(layer=name, shape=shape, cfg=cfg, ms=ms, err=err, regs=regs))
                print(f"{name} {shape} {cfg or 'defaults'}: backward {ms:.3f} ms, err vs defaults {err:.1e}, last kernel regs {regs}", flush=True)
            except Exception as e:  # noqa: BLE001
                print(f"{name} {shape} {cfg}: error {type(e).__name__}: {str(e)[:200]}", flush=True)
    with open(os.path.join(os.environ.get("OUT", "/tmp"), "sweep_backward.json"), "w") as f:
        json.dump(dict(copy_gbs=copy / 1e9, rows=rows), f, indent=1, default=str)


if __name__ == "__main__":
    main()
