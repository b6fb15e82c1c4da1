"""The Mamba-1 forward's kernels compiled with a register cap (Triton's maxnreg) against the
default, in one run: more warps per SM for some spilled registers. python bench/exp_maxnreg.py"""

import os
import sys

import torch
import triton

HERE = os.path.dirname(os.path.abspath(__file__))
sys.argv[1:] = []
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
from mamba1 import mamba1  # noqa: E402
from sweep_mamba1 import SHAPES, bytes_moved, copy_rate_gbs, make_inputs, reference  # noqa: E402

import ssmc  # noqa: E402
from ssmc.backends.triton.schedule import Schedule  # noqa: E402

base = Schedule.constexprs
copy = copy_rate_gbs()
print(f"copy rate {copy:.0f} GB/s")
small = make_inputs(2, 300, 96, 16, torch.bfloat16, seed=1)
y_ref, _ = reference(small)
inputs = {s: make_inputs(*s, torch.bfloat16) for s in SHAPES}
for cap in (None, 160, 152, 144, None):
    Schedule.constexprs = (lambda self, cap=cap: {**base(self), "maxnreg": cap}) if cap else base
    layer = ssmc.compile(mamba1)
    err = ((layer(**small)["y"].double() - y_ref).norm() / y_ref.norm()).item()
    for s in SHAPES:
        ms = triton.testing.do_bench(lambda: layer(**inputs[s]), warmup=10, rep=100, return_mode="median")
        frac = bytes_moved(*s, 2) / (ms * 1e-3) / 1e9 / copy
        print(f"maxnreg {cap}: err {err:.1e}  B{s[0]} L{s[1]} D{s[2]}: {ms:.3f} ms  {frac:.3f} of copy", flush=True)
