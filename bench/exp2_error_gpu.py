"""The GPU's float32 exp2 (what tl.exp2 compiles to: ex2.approx) against float64, and the
prelude's FMA-pipe one (_ssmc_exp2_fma): max and mean error in ulps of the float32 result, over
arguments where Mamba's decays live (dt * A * log2 e in [-1, 0]) and wider. The reference
rule's GPU model (ssmc/testing/check.py GPU_EXP2_ERROR, 2^-22 relative) rests on the first.
Usage on a GPU: python bench/exp2_error_gpu.py"""

import os
import sys

import torch
import triton

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))
from kernel_source import load  # noqa: E402

from ssmc.backends.triton.prelude import prelude_for  # noqa: E402

SRC = "import triton\nimport triton.language as tl\n\n" + prelude_for("_ssmc_exp2_fma") + '''

@triton.jit
def both(x_ptr, a_ptr, b_ptr, n, BLOCK: tl.constexpr):
    o = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = o < n
    x = tl.load(x_ptr + o, mask=m)
    tl.store(a_ptr + o, tl.exp2(x), mask=m)
    tl.store(b_ptr + o, _ssmc_exp2_fma(x), mask=m)
'''
mod = load(SRC, "exp2_error_kernels")

print(torch.cuda.get_device_name())
g = torch.Generator(device="cuda").manual_seed(0)
for lo, hi in ((-1e-3, 0.0), (-0.05, 0.0), (-1.0, 0.0), (-1.0, 1.0), (-30.0, 30.0)):
    x = torch.rand(1 << 26, device="cuda", generator=g) * (hi - lo) + lo
    a, b = torch.empty_like(x), torch.empty_like(x)
    mod.both[(triton.cdiv(x.numel(), 1024),)](x, a, b, x.numel(), BLOCK=1024)
    ref = torch.exp2(x.double())
    ulp = (torch.nextafter(ref.float(), torch.tensor(float("inf"), device="cuda")) - ref.float()).double()
    for name, y in (("ex2.approx (tl.exp2)", a), ("_ssmc_exp2_fma", b)):
        e = (y.double() - ref) / ulp
        rel = ((y.double() - ref) / ref).abs().max().item()
        print(f"x in [{lo:g}, {hi:g}] {name:22s}: max {e.abs().max().item():.2f} ulps (relative {rel:.2e} = 2^{torch.log2(torch.tensor(rel)).item():.1f}), mean {e.mean().item():+.3f} ulps", flush=True)
