"""Where the Mamba-1 backward's time goes, on the GPU (one shape, bf16).

Times the backward kernels of several schedules, and (for diagnosis only: their results are
wrong) variants of the generated source with one part removed: atomics turned into plain stores,
the checkpoint pass skipped. Each line is a ratio to the device copy rate of the same run."""

from __future__ import annotations

import json
import os
import sys

import torch
import triton

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
sys.path.insert(0, os.path.dirname(__file__))
from mamba1 import mamba1  # noqa: E402
from sweep_mamba1 import copy_rate_gbs, make_inputs  # noqa: E402

import ssmc  # noqa: E402
import ssmc.backends.triton.jit as jit  # noqa: E402
import ssmc.backends.triton.run as run  # noqa: E402
from ssmc.backends.triton.backward import CompiledBackward  # noqa: E402

_generate = jit.generate
EDIT: list = []


def edited(kernel, *a):
    src = _generate(kernel, *a)
    for old, new in EDIT:
        src = src.replace(old, new)
    return src


jit.generate = edited


def main() -> None:
    out_dir = os.environ.get("OUT", "bench/results")
    copy = copy_rate_gbs()
    print(f"device {torch.cuda.get_device_name()}; copy rate {copy:.0f} GB/s", flush=True)
    B, L, D, N = 8, 2048, 2048, 16
    ins = make_inputs(B, L, D, N, torch.bfloat16)
    dy = torch.randn(B, L, D, device="cuda", dtype=torch.bfloat16)
    fwd = ssmc.compile(mamba1)
    t_copy = (3 * B * L * D + 2 * B * L * N) * 2 * 2 / (copy * 1e9) * 1e3  # inputs read+written once
    t_fwd = triton.testing.do_bench(lambda: fwd.raw_call(**ins), warmup=25, rep=200, return_mode="median")
    print(f"forward {t_fwd:.3f} ms; copy of the inputs {t_copy:.3f} ms", flush=True)
    rows = []
    variants = [
        ("u4 sub 1", dict(unroll=4, sub=1), []),
        ("u4 sub 8", dict(unroll=4, sub=8), []),
        ("u4 sub 16", dict(unroll=4, sub=16), []),
        ("u4 sub 32", dict(unroll=4, sub=32), []),
        ("u8 sub 8", dict(unroll=8, sub=8), []),
        ("u2 sub 32", dict(unroll=2, sub=32), []),
        ("u4 sub 16 block 32", dict(unroll=4, sub=16, block=32), []),
        ("u4 sub 16 no atomics (wrong)", dict(unroll=4, sub=16), [("tl.atomic_add(p_add, v_add", "tl.store(p_add, v_add"), (", sem='relaxed')", ")")]),
    ]
    for label, cfg, edit in variants:
        EDIT[:] = edit
        bwd = CompiledBackward(mamba1, forward=fwd, **cfg)
        try:
            bwd(**ins, grad_y=dy)
            t = triton.testing.do_bench(lambda: bwd(**ins, grad_y=dy), warmup=10, rep=100, return_mode="median")  # noqa: B023
        except Exception as e:  # a schedule that does not compile: say so and go on
            print(f"  {label:28s} failed: {type(e).__name__}: {str(e)[:200]}", flush=True)
            continue
        # the checkpoint pass alone: the states kernel and the combine, timed by skipping the rest
        rows.append(dict(label=label, cfg=cfg, bwd_ms=t, vs_fwd=t / t_fwd, copy_fraction=t_copy / t))
        print(f"  {label:28s} bwd {t:7.3f} ms = {t / t_fwd:5.2f} x fwd", flush=True)
    EDIT[:] = []
    bwd = CompiledBackward(mamba1, forward=fwd)
    orig = run.Run.launch

    def only_states(self, kernel, sched, extra):
        if kernel.role == "states":
            orig(self, kernel, sched, extra)

    run.Run.launch = only_states
    t_states = triton.testing.do_bench(lambda: bwd(**ins, grad_y=dy), warmup=10, rep=100, return_mode="median")
    run.Run.launch = orig
    print(f"  checkpoint pass (states + combine, defaults) alone: {t_states:.3f} ms", flush=True)
    with open(os.path.join(out_dir, "profile_backward.json"), "w") as f:
        json.dump(dict(device=torch.cuda.get_device_name(), copy_gbs=copy, fwd_ms=t_fwd, rows=rows, states_ms=t_states), f, indent=1)


if __name__ == "__main__":
    main()
