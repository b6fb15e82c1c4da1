"""Mamba-2 and simple GLA forward, ssmc (matrix form) against mamba-ssm / fla, timed in turns
(3 rounds each of do_bench medians, interleaved) after each output is checked against the
other: the peers' single readings varied up to 2x between runs on the lent H100."""

import json
import os

import torch
import torch.nn.functional as F
import triton

import ssmc
from ssmc.benchmark import peers
from ssmc.benchmark.measure import Ceilings
from ssmc.export.blocks import example_layer

torch.manual_seed(0)
dev = "cuda"
bf = torch.bfloat16
copy = Ceilings.measure().copy
print(f"copy {copy / 1e9:.0f} GB/s", flush=True)
ssd = peers.mamba_triton("mamba_chunk_scan_combined")
sgla = peers.fla_op("fla.ops.simple_gla", "chunk_simple_gla")
m2 = ssmc.compile(example_layer("mamba2"))
sg = ssmc.compile(example_layer("simple_gla", "gla"))
rows = []


def bench(name, shape, fns):
    outs = {k: f() for k, f in fns.items()}
    a, b = outs.values()
    err = ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()
    times = {k: [] for k in fns}
    for _ in range(3):
        for k, f in fns.items():
            times[k].append(triton.testing.do_bench(f, warmup=25, rep=200))
    med = {k: sorted(v)[1] for k, v in times.items()}
    (ka, ta), (kb, tb) = med.items()
    print(f"{name:14s} {shape:24s} {ka} {ta:.3f} ms  {kb} {tb:.3f} ms  ratio {tb / ta:.2f}  "
          f"rounds {[round(x, 3) for x in times[ka]]} {[round(x, 3) for x in times[kb]]}  rel err {err:.1e}", flush=True)
    rows.append(dict(workload=name, shape=shape, times=times, err=err))


for B, L, H, P, N in [(8, 2048, 32, 64, 128), (4, 8192, 80, 64, 128)]:
    x, z = torch.randn(B, L, H, P, device=dev, dtype=bf), torch.randn(B, L, H, P, device=dev, dtype=bf)
    Bm, C = torch.randn(B, L, 1, N, device=dev, dtype=bf), torch.randn(B, L, 1, N, device=dev, dtype=bf)
    dt = torch.randn(B, L, H, device=dev, dtype=bf)
    A = -torch.rand(H, device=dev) * 4 - 1
    Dp, bias = torch.randn(H, device=dev), torch.rand(H, device=dev) * 4 - 6
    kw = dict(x=x.view(B, L, 1, H, P), dt=dt.view(B, L, 1, H), B=Bm, C=C, z=z.view(B, L, 1, H, P),
              A_log=torch.log(-A).view(1, H), D=Dp.view(1, H), dt_bias=bias.view(1, H))
    bench("mamba2 fwd", f"B{B} L{L} H{H} P{P} N{N}", {
        "ssmc": lambda: m2.raw_call(**kw)["y"].view(B, L, H, P),
        "mamba-ssm": lambda: ssd(x, dt, A, Bm, C, chunk_size=256, D=Dp, z=z, dt_bias=bias, dt_softplus=True)})
for B, L, H, K in [(8, 2048, 16, 128), (8, 2048, 16, 64)]:
    q, k, v = (torch.randn(B, L, H, K, device=dev, dtype=bf) for _ in range(3))
    g = F.logsigmoid(torch.randn(B, L, H, device=dev) + 4)
    qs = (q.float() * K ** -0.5).to(bf)
    bench("simple gla fwd", f"B{B} L{L} H{H} K{K} V{K}", {
        "ssmc": lambda: sg.raw_call(q=qs, k=k, v=v, g=g)["o"],
        "fla": lambda: sgla(q, k, v, g=g)[0]})
json.dump(dict(copy_gbs=copy / 1e9, rows=rows), open(os.environ.get("OUT", ".") + "/matrix-interleaved.json", "w"), indent=1)
