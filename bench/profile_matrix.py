"""Per-kernel times of the matrix form (Mamba-2 B8 L2048 H32 P64 N128, bf16) under a few
schedules, by torch.profiler (CUDA kernel time, averaged over 20 calls)."""


import torch
from torch.profiler import ProfilerActivity, profile

import ssmc
from ssmc.export.blocks import example_layer

B, L, H, P, N, G = 8, 2048, 32, 64, 128, 1
R = H // G
dev = "cuda"
x = torch.randn(B, L, G, R, P, device=dev, dtype=torch.bfloat16)
z = torch.randn_like(x)
dt = torch.randn(B, L, G, R, device=dev, dtype=torch.bfloat16)
Bm = torch.randn(B, L, G, N, device=dev, dtype=torch.bfloat16)
C = torch.randn_like(Bm)
args = dict(x=x, dt=dt, B=Bm, C=C, z=z, A_log=torch.rand(G, R, device=dev), D=torch.ones(G, R, device=dev),
            dt_bias=torch.rand(G, R, device=dev) - 4)
variants = [dict(), dict(num_warps=8), dict(block_t=32), dict(num_warps=4, block_t=128)]
for kw in variants:
    c = ssmc.compile(example_layer("mamba2"), strategy="matrix", **kw)
    for _ in range(3):
        c.raw_call(**args)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(20):
            c.raw_call(**args)
        torch.cuda.synchronize()
    rows = [(e.key, e.device_time_total / e.count / 1000) for e in prof.key_averages() if e.device_time_total > 0]
    print(kw, " ".join(f"{k[-28:]}={t:.3f}ms" for k, t in rows), flush=True)
