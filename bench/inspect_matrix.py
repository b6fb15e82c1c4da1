"""The matrix form's compiled kernels (Mamba-2 B8 L2048 H32 P64 N128, bf16): registers, spills,
shared memory, grid, and each launch's time (do_bench median), under a few schedules."""

import dataclasses
import os

import torch
import triton

import ssmc
import ssmc.backends.triton.jit as jit
from ssmc.backends.triton.replay import Recorder
from ssmc.export.blocks import example_layer

B, L, H = (int(v) for v in os.environ.get("SHAPE", "8,2048,32").split(","))
P, N, G = 64, 128, 1
R = H // G
dev = "cuda"
x = torch.randn(B, L, G, R, P, device=dev, dtype=torch.bfloat16)
args = dict(x=x, dt=torch.randn(B, L, G, R, device=dev, dtype=torch.bfloat16),
            B=torch.randn(B, L, G, N, device=dev, dtype=torch.bfloat16), C=torch.randn(B, L, G, N, device=dev, dtype=torch.bfloat16),
            z=torch.randn_like(x), A_log=torch.rand(G, R, device=dev), D=torch.ones(G, R, device=dev),
            dt_bias=torch.rand(G, R, device=dev) - 4)
seen = []
orig = Recorder.launch


def launch(self, fn, grid, a, kw):
    compiled = orig(self, fn, grid, a, kw)
    seen.append((fn, grid, a, kw, compiled))
    return compiled


Recorder.launch = launch
base_choose = jit.choose_matrix


def variant(name, states=None, outputs=None, **opts):
    def choose(kernel, *a, **k):
        s = base_choose(kernel, *a, **k)
        ch = states if kernel.role == "states" else outputs
        return dataclasses.replace(s, **ch) if ch else s

    jit.choose_matrix = choose
    seen.clear()
    c = ssmc.compile(example_layer("mamba2"), strategy="matrix", **opts)
    c.raw_call(**args)
    torch.cuda.synchronize()
    for fn, grid, a, kw, comp in list(seen):
        ms = triton.testing.do_bench(lambda: fn[grid](*a, **kw), warmup=10, rep=100)
        print(f"{name:28s} {fn.__name__:28s} grid {grid[0]:6d} warps {kw.get('num_warps')} regs {comp.n_regs} spills {comp.n_spills} "
              f"smem {comp.metadata.shared} {ms:.3f} ms", flush=True)


import sys

for v in sys.argv[1:] or ["default"]:
    name, _, spec = v.partition(":")
    variant(name, **eval(spec or "{}"))

if __name__ == "__main__":
    import os
    out = os.environ.get("OUT")
    if out:
        for fn, grid, a, kw, comp in seen[:2]:
            for kind in ("ttgir", "ptx"):
                with open(f"{out}/{fn.__name__}.{kind}", "w") as f:
                    f.write(comp.asm[kind])
