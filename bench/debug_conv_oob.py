"""Mamba-2's forward+backward (with its conv fused, or PLAIN=1 without) at given sizes, to run
under compute-sanitizer: it found the illegal shared/local address of session 8's 16-bit
products (bench/NOTES.md "2026-11-24 (9)"). Env: B L H P N K (sizes), STRIDED=1 (x, B, C as
views of one xBC tensor), MODE=exact|bt32|warps8 (what was tried), PLAIN=1.

    compute-sanitizer --tool memcheck python3 bench/debug_conv_oob.py"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
from mamba2 import mamba2  # noqa: E402
from mamba2_conv import mamba2_conv  # noqa: E402

if os.environ.get("PLAIN"):  # Mamba-2 without the conv
    mamba2_conv = mamba2  # noqa: F811

import ssmc  # noqa: E402
from ssmc.testing.check import make_inputs  # noqa: E402

B, L, H, P, N, K = (int(os.environ.get(k, d)) for k, d in (("B", 1), ("L", 256), ("H", 4), ("P", 64), ("N", 16), ("K", 4)))
sizes = {"B": B, "L": L, "G": 1, "R": H, "P": P, "N": N, "K": K}
a = make_inputs(mamba2_conv, sizes, "bf16", 0, with_optional=False)
t = {k: torch.tensor(v, dtype=torch.bfloat16 if mamba2_conv.specs[k].kind == "input" else torch.float32, device="cuda").requires_grad_()
     for k, v in a.items()}
if os.environ.get("STRIDED"):  # x, B and C as views of one [B, L, H*P + 2N] tensor, as in a block
    xBC = torch.randn(B, L, H * P + 2 * N, device="cuda", dtype=torch.bfloat16).requires_grad_()
    x, Bm, Cm = xBC.split([H * P, N, N], dim=-1)
    t.update(x=x.reshape(B, L, 1, H, P), B=Bm.reshape(B, L, 1, N), C=Cm.reshape(B, L, 1, N))
mode = os.environ.get("MODE", "default")
opts = {"bt32": {"block_t": 32}, "warps8": {"num_warps": 8}}.get(mode, {})
c = ssmc.compile(mamba2_conv, **opts)
if mode == "exact":  # every matrix scan of the backward with float32-accurate products
    bw = c.backward_compiled()
    bw.part.exact = frozenset(name for name, _ in bw.part.graph.outputs)
if mode.startswith("low"):  # session 8's 16-bit products for dk and dq (low_bp64: P blocks of 64)
    from ssmc.backends.triton import jit, schedule
    from ssmc.backends.triton.backward import MatrixBackward

    c._backward = MatrixBackward(c.layer, forward=c, low_precision=True)
    if mode == "low_bp64":
        orig = schedule.choose_matrix

        def wide(kernel, *a, **kw):
            s = orig(kernel, *a, **kw)
            if kernel.role != "states":
                s = s.__class__(**{**s.__dict__, "blocks": tuple((d, max(b, 64) if d == kernel.matrix.p else b) for d, b in s.blocks),
                                   "even": tuple((d, e if d != kernel.matrix.p else False) for d, e in s.even)})
            return s

        jit.choose_matrix = wide
print("strategy", c.default_strategy(True, L), flush=True)
y = c(**t)["y"]
torch.cuda.synchronize()
print("forward ok", flush=True)
b = c.backward_compiled()
print(type(b).__name__, [k.name for k in b.rest.kernels("bidir")] if hasattr(b, "rest") else "", flush=True)
g = torch.autograd.grad(y, list(t.values()), torch.randn_like(y))
torch.cuda.synchronize()
print("backward ok", flush=True)
