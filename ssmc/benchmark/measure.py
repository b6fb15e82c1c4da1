"""What every workload is measured with: the ceilings of the device (copy rate, exp2 rate, bf16
matrix rate), measured in the same run, and the timer (``triton.testing.do_bench`` medians
after warm-up)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl


def time_ms(fn, warmup_ms: float = 25, rep_ms: float = 200, grad_to_none=None) -> float:
    """Median time of ``fn()`` on the device, after warm-up (milliseconds)."""
    return triton.testing.do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="median", grad_to_none=grad_to_none)


def kernel_times(fn, calls: int = 5, warmup: int = 3) -> list[tuple[str, float, int]]:
    """Where ``fn``'s GPU time goes: (kernel, microseconds per call, launches per call), the
    mean of ``calls`` calls under torch.profiler after ``warmup`` calls, largest first."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    rows = [(e.key, e.self_device_time_total / calls, e.count // calls) for e in prof.key_averages() if e.self_device_time_total > 0]
    return sorted(rows, key=lambda r: -r[1])


def copy_rate() -> float:
    """Device-to-device copy of 1 GiB: bytes read plus bytes written per second."""
    n = 1 << 30
    a = torch.empty(n, dtype=torch.uint8, device="cuda").random_()
    b = torch.empty_like(a)
    ms = time_ms(lambda: b.copy_(a), 50, 300)
    return 2 * n / (ms * 1e-3)


@triton.jit
def _exp2_chain(x_ptr, y_ptr, REPS: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    a = tl.load(x_ptr + offs)
    b = a + 0.25
    c = a - 0.25
    d = a * 0.5
    for _ in tl.static_range(REPS):  # four independent chains: MUFU-bound, not latency-bound
        a = tl.exp2(a * 0.5 - 1.0)
        b = tl.exp2(b * 0.5 - 1.0)
        c = tl.exp2(c * 0.5 - 1.0)
        d = tl.exp2(d * 0.5 - 1.0)
    tl.store(y_ptr + offs, a + b + c + d)


def exp2_rate() -> float:
    """fp32 exp2 per second: a Triton kernel of four independent exp2 chains per element."""
    n, reps, block = 1 << 24, 64, 1024
    x = torch.rand(n, device="cuda")
    y = torch.empty_like(x)
    ms = time_ms(lambda: _exp2_chain[(n // block,)](x, y, REPS=reps, BLOCK=block), 25, 200)
    return 4 * reps * n / (ms * 1e-3)


def matmul_rate() -> float:
    """bf16 matrix product (8192 cubed, torch.matmul): flops per second."""
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    ms = time_ms(lambda: a @ b, 50, 300)
    return 2 * n**3 / (ms * 1e-3)


@dataclass
class Ceilings:
    copy: float  # bytes/s, read + write
    exp2: float  # exp2/s
    matmul: float  # bf16 flop/s

    @staticmethod
    def measure() -> "Ceilings":
        return Ceilings(copy=copy_rate(), exp2=exp2_rate(), matmul=matmul_rate())


@dataclass
class Floor:
    """Work that must be done: bytes moved (inputs once, outputs once), exponentials, matrix
    flops. Its time is the largest of the three over the device's measured rates."""

    bytes: float
    exps: float = 0.0
    flops: float = 0.0
    note: str = ""

    def terms_ms(self, c: Ceilings) -> dict[str, float]:
        return {"bytes": self.bytes / c.copy * 1e3, "exp": self.exps / c.exp2 * 1e3, "matmul": self.flops / c.matmul * 1e3}

    def ms(self, c: Ceilings) -> float:
        return max(self.terms_ms(c).values())

    def bound(self, c: Ceilings) -> str:
        t = self.terms_ms(c)
        return max(t, key=t.get)


def rel_max_err(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| / max |want|, in float64; NaN where either has a NaN the other lacks."""
    g, w = got.detach().double(), want.detach().double()
    if not torch.equal(torch.isnan(g), torch.isnan(w)):
        return math.nan
    scale = w.abs().max().item()
    return (g - w).abs().max().item() / (scale if scale > 0 else 1.0)
