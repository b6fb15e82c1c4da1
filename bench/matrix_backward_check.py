"""Mamba-2's gradients on the GPU at a benchmark-like size (argv: L, B): the matrix form's
backward (forced for float32 inputs too) and the recurrent one (strategy chunked) against a
float64 PyTorch loop; the max error over the max of the reference, per gradient, for float32
and bf16 inputs."""

import sys

import torch

sys.path[:0] = ["examples", "tests"]
from mamba2 import mamba2  # noqa: E402
from test_backward import mamba2_torch  # noqa: E402

import ssmc  # noqa: E402
from ssmc.testing.check import make_inputs  # noqa: E402

L = int(sys.argv[1]) if len(sys.argv) > 1 else 512
B, G, R, P, N = int(sys.argv[2]) if len(sys.argv) > 2 else 2, 1, 4, 64, 128
sizes = dict(B=B, L=L, G=G, R=R, P=P, N=N)
values = make_inputs(mamba2, sizes, "f32", seed=3)
ref_in = {k: torch.tensor(v, dtype=torch.float64, device="cuda", requires_grad=True) for k, v in values.items()}
ref = mamba2_torch(**ref_in)
cot = {k: torch.randn(v.shape, dtype=torch.float64, device="cuda") for k, v in ref.items()}
g_ref = torch.autograd.grad(sum((ref[k] * cot[k]).sum() for k in ref), list(ref_in.values()))
for dtype in (torch.float32, torch.bfloat16):
    for strategy in (None, "chunked"):
        c = ssmc.compile(mamba2, strategy=strategy)
        if strategy is None:
            c.backward_compiled().force = True  # the matrix scans for float32 inputs too
        got_in = {k: v.detach().to(dtype if v.dim() > 2 else torch.float32).requires_grad_() for k, v in ref_in.items()}
        got = c(**got_in)
        g = torch.autograd.grad(sum((got[k].double() * cot[k]).sum() for k in got), list(got_in.values()))
        errs = {k: float((a.double() - b).abs().max() / b.abs().max()) for k, a, b in zip(ref_in, g, g_ref)}
        print(f"{str(dtype):15s} {type(c.backward_compiled()).__name__:16s} " + "  ".join(f"{k} {e:.1e}" for k, e in errs.items()), flush=True)
