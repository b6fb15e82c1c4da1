"""Mamba-2 forward+backward with the matrix form's backward (MatrixBackward) against mamba-ssm's
mamba_chunk_scan_combined, gradients checked against each other first (run_case), then where
ssmc's backward spends its time: the forward, each kernel pair of the backward's matrix scans,
the rest (CompiledBackward over their results). One run, the copy rate measured in it."""

import json
import os

import torch
import triton

from ssmc.benchmark import peers
from ssmc.benchmark import workloads as w
from ssmc.benchmark.measure import Ceilings

copy = Ceilings.measure().copy
print(f"copy {copy / 1e9:.0f} GB/s", flush=True)
ssd = peers.mamba_triton("mamba_chunk_scan_combined")
rows = []
shapes = [(8, 2048, 32, 64, 128), (4, 8192, 80, 64, 128)]
for s in shapes:
    rows += w.run_case(w.mamba2_case(*s, backward=True, ssd=ssd))
    rows += w.run_case(w.mamba2_case(*s, backward=False, ssd=ssd))

# the breakdown at the first shape
B, L, H, P, N = shapes[0]
layer = w._compiled("mamba2")
bf = torch.bfloat16
kw = dict(x=torch.randn(B, L, 1, H, P, device="cuda", dtype=bf), dt=torch.randn(B, L, 1, H, device="cuda", dtype=bf),
          B=torch.randn(B, L, 1, N, device="cuda", dtype=bf), C=torch.randn(B, L, 1, N, device="cuda", dtype=bf),
          z=torch.randn(B, L, 1, H, P, device="cuda", dtype=bf), A_log=torch.rand(1, H, device="cuda"),
          D=torch.randn(1, H, device="cuda"), dt_bias=torch.rand(1, H, device="cuda") * 4 - 6)
cot = dict(grad_y=torch.randn(B, L, 1, H, P, device="cuda", dtype=bf))
bwd = layer.backward_compiled()
mx = bwd.part.raw_call(**kw, **cot)
parts = {"forward": lambda: layer.raw_call(**kw), "backward: matrix scans": lambda: bwd.part.raw_call(**kw, **cot),
         "backward: rest": lambda: bwd.rest.raw_call(**kw, **cot, **mx)}
for g in bwd.part.graph.groups:
    plan = next(p for p in bwd.part.plans("matrix") if p.group is g)
    outs = [n.op + ("(rev)" if n.attr("reverse") else "") for n in g.stores]
    print(f"  group {g.name}: {outs}  kernels {[k.name for k in plan.kernels]}")
for g in bwd.rest.graph.groups:
    print(f"  rest {g.name}: {len(g.nodes)} nodes, notes {g.notes}")
breakdown = {}
for name, f in parts.items():
    breakdown[name] = triton.testing.do_bench(f, warmup=25, rep=200)
    print(f"  {name:28s} {breakdown[name]:.3f} ms", flush=True)
json.dump(dict(copy_gbs=copy / 1e9, rows=rows, breakdown=breakdown), open(os.environ.get("OUT", ".") + "/matrix-backward.json", "w"), indent=1)
