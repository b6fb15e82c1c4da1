"""The cost of an accurate exp2 in the time loop (the decay): Mamba-1 bf16, forward at the three
benchmark shapes and forward+backward at B8 L2048 / B2 L8192, with the op registry's exp2
template as the GPU's ex2.approx (tl.exp2) and as the prelude's polynomial
(_ssmc_exp2_accurate) or the FMA-pipe one (_ssmc_exp2_fma), next to the copy rate of the same run. Usage: python bench/exp_exp2.py"""

import dataclasses
import os
import sys

import torch
import triton

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
from mamba1 import mamba1  # noqa: E402
from sweep_mamba1 import bytes_moved, copy_rate_gbs, make_inputs  # noqa: E402

import ssmc  # noqa: E402
import ssmc.ops.registry as registry  # noqa: E402

EXP2 = registry.get("exp2")
VARIANTS = {"tl.exp2 (ex2.approx)": EXP2,
            "_ssmc_exp2_accurate": dataclasses.replace(EXP2, triton="_ssmc_exp2_accurate({0})"),
            "_ssmc_exp2_fma": dataclasses.replace(EXP2, triton="_ssmc_exp2_fma({0})")}
if len(sys.argv) > 1:
    VARIANTS = {k: v for k, v in VARIANTS.items() if k in sys.argv[1].split(",")}
copy = copy_rate_gbs()
print(f"{torch.cuda.get_device_name()}; copy {copy:.0f} GB/s", flush=True)
for name, op in VARIANTS.items():
    registry.REGISTRY["exp2"] = op
    layer = ssmc.compile(mamba1)
    for s in ((8, 2048, 2048, 16), (8, 4096, 5120, 16), (2, 8192, 2048, 16)):
        ins = make_inputs(*s, torch.bfloat16)
        ms = triton.testing.do_bench(lambda layer=layer, ins=ins: layer(**ins), warmup=25, rep=200, return_mode="median")
        frac = bytes_moved(*s, 2) / (ms * 1e-3) / 1e9 / copy
        line = f"{name:22s} B{s[0]} L{s[1]} D{s[2]}: forward {ms:.3f} ms ({frac:.3f} of copy)"
        if s[2] == 2048:
            for v in ins.values():
                v.requires_grad_(True)
            gy = torch.randn_like(ins["x"])

            def step(layer=layer, ins=ins, gy=gy):
                for v in ins.values():
                    v.grad = None
                torch.autograd.backward([layer(**ins)["y"]], [gy])

            fb = triton.testing.do_bench(step, warmup=10, rep=200, return_mode="median")
            line += f"; forward+backward {fb:.3f} ms"
        print(line, flush=True)
