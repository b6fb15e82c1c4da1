"""The per-step ops the kernels build from the GPU's exponential, against float64: tl.sigmoid
(1 / (1 + exp(-x)): ex2.approx and, for float32 `/`, Triton's approximate division), silu as the
kernels print it (x * tl.sigmoid(x)), the prelude's softplus, tl.exp, and sigmoid with a
correctly rounded division (tl.math.div_rn) for comparison. Max and mean (signed) error in ulps
of the float32 result, and the max relative error, over ranges where Mamba's dt + dt_bias and
gates live. Why: session 19 (bench/NOTES.md) saw the float32 Mamba-2 backward's grad_dt terms
err with one sign, about 4x what the GPU reference's +-2^-22 per such op (interpret.EXP_BUILT)
accounts for; a mean far from 0 or a max past 2 ulps here would say which op.
Usage on a GPU: python bench/exp_ops_error_gpu.py"""

import os
import sys

import torch
import triton

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))
from kernel_source import load  # noqa: E402

from ssmc.backends.triton.prelude import prelude_for  # noqa: E402

SRC = "import triton\nimport triton.language as tl\n\n" + prelude_for("_ssmc_softplus") + '''

@triton.jit
def ops(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    o = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = o < n
    x = tl.load(x_ptr + o, mask=m)
    tl.store(out_ptr + o, tl.sigmoid(x), mask=m)
    tl.store(out_ptr + n + o, x * tl.sigmoid(x), mask=m)
    tl.store(out_ptr + 2 * n + o, _ssmc_softplus(x), mask=m)
    tl.store(out_ptr + 3 * n + o, tl.exp(x), mask=m)
    tl.store(out_ptr + 4 * n + o, tl.math.div_rn(1.0, 1.0 + tl.exp(-x)), mask=m)
'''
mod = load(SRC, "exp_ops_error_kernels")


def references(x):
    x = x.double()
    s = torch.sigmoid(x)
    return {"tl.sigmoid": s, "silu (x * tl.sigmoid)": x * s, "_ssmc_softplus": torch.nn.functional.softplus(x),
            "tl.exp": torch.exp(x), "sigmoid, div_rn": s}


print(torch.cuda.get_device_name())
g = torch.Generator(device="cuda").manual_seed(0)
for lo, hi in ((-6.0, -2.0), (-3.0, 3.0), (-10.0, 10.0)):
    x = torch.rand(1 << 24, device="cuda", generator=g) * (hi - lo) + lo
    out = torch.empty(5 * x.numel(), device="cuda")
    mod.ops[(triton.cdiv(x.numel(), 1024),)](x, out, x.numel(), BLOCK=1024)
    for i, (name, ref) in enumerate(references(x).items()):
        y = out[i * x.numel() : (i + 1) * x.numel()].double()
        ulp = (torch.nextafter(ref.float(), torch.tensor(float("inf"), device="cuda")) - ref.float()).double()
        e = (y - ref) / ulp
        rel = ((y - ref) / ref).abs().max().item()
        print(f"x in [{lo:g}, {hi:g}] {name:22s}: max {e.abs().max().item():.2f} ulps (relative {rel:.2e}), "
              f"mean {e.mean().item():+.3f} ulps", flush=True)
