"""Mamba-1 forward+backward through the generated kernels, on the GPU.

Checks gradients against float64 autograd through a PyTorch loop on a small shape, then times
(triton.testing.do_bench, median, after warm-up, random data) the forward, the backward kernels
alone and forward+backward at the benchmark shapes, for a few schedules of the backward kernel,
next to the device copy rate measured in the same run. Prints a table; writes JSON to $OUT."""

from __future__ import annotations

import json
import os
import sys
import time

import torch
import triton

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
sys.path.insert(0, os.path.dirname(__file__))
from mamba1 import mamba1  # noqa: E402
from sweep_mamba1 import SHAPES, copy_rate_gbs, make_inputs  # noqa: E402

import ssmc  # noqa: E402
from ssmc.backends.triton.backward import CompiledBackward  # noqa: E402

SEQ = ("x", "dt", "B", "C", "z")


def reference(ins):
    x, dt, Bm, C, z = (ins[k] for k in SEQ)
    A = -torch.exp(ins["A_log"])
    delta = torch.nn.functional.softplus(dt + ins["dt_bias"])
    h = torch.zeros(x.shape[0], x.shape[2], A.shape[1], dtype=x.dtype, device=x.device)
    ys = []
    for t in range(x.shape[1]):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * x[:, t])[:, :, None] * Bm[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1))
    y = torch.stack(ys, 1) + ins["D"] * x
    return y * torch.nn.functional.silu(z)


def check(dtype) -> float:
    """Max over arguments of max|grad - ref| / max|ref| (float64 autograd reference)."""
    ins = make_inputs(2, 300, 96, 16, dtype, seed=1)
    ref_in = {k: v.detach().double().requires_grad_() for k, v in ins.items()}
    got_in = {k: v.detach().clone().requires_grad_() for k, v in ins.items()}
    g = torch.randn(2, 300, 96, device="cuda", dtype=torch.float64)
    gr = torch.autograd.grad((reference(ref_in) * g).sum(), list(ref_in.values()))
    y = ssmc.compile(mamba1)(**got_in)["y"]
    gg = torch.autograd.grad((y.double() * g).sum(), list(got_in.values()))
    return max(float((a.double() - b).abs().max() / b.abs().max()) for a, b in zip(gg, gr))


def bytes_fwd(B, L, D, N, e):
    # read x, dt, z, B, C; write y
    return (3 * B * L * D + 2 * B * L * N) * e + B * L * D * e


def bytes_bwd(B, L, D, N, e):
    # read x, dt, B, C, z, dy; write dx, ddt, dz (and dB, dC): each once
    return (3 * B * L * D + 2 * B * L * N) * e * 2 + B * L * D * e


CONFIGS = [dict(), dict(unroll=2)]


def main() -> None:
    out_dir = os.environ.get("OUT", "bench/results")
    os.makedirs(out_dir, exist_ok=True)
    copy = copy_rate_gbs()
    print(f"device {torch.cuda.get_device_name()}; copy rate {copy:.0f} GB/s (read+write)", flush=True)
    errs = {str(dt): check(dt) for dt in (torch.float32, torch.bfloat16)}
    print("gradient check vs float64 autograd (max err / max |ref|):", {k: f"{v:.2e}" for k, v in errs.items()}, flush=True)
    fwd = ssmc.compile(mamba1)
    rows = []
    for B, L, D, N in SHAPES:
        ins = make_inputs(B, L, D, N, torch.bfloat16)
        dy = torch.randn(B, L, D, device="cuda", dtype=torch.bfloat16)
        t_fwd = triton.testing.do_bench(lambda: fwd.raw_call(**ins), warmup=25, rep=200, return_mode="median")  # noqa: B023
        for cfg in CONFIGS:
            t0 = time.time()
            bwd = CompiledBackward(mamba1, forward=fwd, **cfg)
            bwd(**ins, grad_y=dy)
            torch.cuda.synchronize()
            compile_s = time.time() - t0
            t_bwd = triton.testing.do_bench(lambda: bwd(**ins, grad_y=dy), warmup=25, rep=200, return_mode="median")  # noqa: B023
            e = 2
            floor_ms = (bytes_fwd(B, L, D, N, e) + bytes_bwd(B, L, D, N, e)) / (copy * 1e9) * 1e3
            row = dict(shape=f"B{B} L{L} D{D} N{N}", config=cfg or "defaults", fwd_ms=t_fwd, bwd_ms=t_bwd,
                       fwd_bwd_ms=t_fwd + t_bwd, copy_floor_ms=floor_ms, fraction_of_copy=floor_ms / (t_fwd + t_bwd),
                       compile_s=compile_s)
            rows.append(row)
            print(f"  {row['shape']} {str(row['config']):34s} fwd {t_fwd:.3f} bwd {t_bwd:.3f} fwd+bwd {t_fwd + t_bwd:.3f} ms"
                  f"  {row['fraction_of_copy']:.3f} of copy  (compile {compile_s:.1f}s)", flush=True)
    # registers and spills of the backward's main kernel (defaults, last shape compiled)
    k = fwd.backward_compiled()
    k(**ins, grad_y=dy)
    ck = k.last_launched
    print(f"bidir kernel: {getattr(ck, 'n_regs', '?')} registers, {getattr(ck, 'n_spills', '?')} spills", flush=True)
    # one decode step: the forward at L = 1 from a state; the state is read and written once
    for Bd, Dd in ((64, 5120), (256, 2048)):
        step_in = make_inputs(Bd, 1, Dd, 16, torch.float32)
        step_in["h0"] = torch.randn(Bd, Dd, 16, device="cuda")
        t_step = triton.testing.do_bench(lambda: fwd.raw_call(**step_in), warmup=25, rep=200, return_mode="median")  # noqa: B023
        state_bytes = 2 * Bd * Dd * 16 * 4
        print(f"decode step B{Bd} D{Dd} N16 (fp32 state): {t_step * 1e3:.1f} us, state r+w {state_bytes / (t_step * 1e-3) / 1e9:.0f} GB/s = {state_bytes / (t_step * 1e-3) / 1e9 / copy:.3f} of copy", flush=True)
        rows.append(dict(shape=f"decode B{Bd} D{Dd} N16", step_ms=t_step, state_fraction_of_copy=state_bytes / (t_step * 1e-3) / 1e9 / copy))
    # autograd end to end (module-level overhead included), defaults, first shape
    B, L, D, N = SHAPES[0]
    ins = make_inputs(B, L, D, N, torch.bfloat16)
    leaf = {k: v.detach().requires_grad_() for k, v in ins.items()}
    dy = torch.randn(B, L, D, device="cuda", dtype=torch.bfloat16)

    def step():
        y = fwd(**leaf)["y"]  # outputs by name (a dict)
        torch.autograd.backward(y, dy)

    t_auto = triton.testing.do_bench(step, warmup=10, rep=100, return_mode="median", grad_to_none=list(leaf.values()))
    print(f"autograd fwd+bwd B{B} L{L} D{D} N{N}: {t_auto:.3f} ms (mamba-ssm CUDA in DESIGN.md: 3.02 ms at 2962 GB/s)")
    with open(os.path.join(out_dir, "bench_backward.json"), "w") as f:
        json.dump(dict(device=torch.cuda.get_device_name(), copy_gbs=copy, grad_check=errs, rows=rows,
                       autograd_ms=t_auto, torch=torch.__version__, triton=triton.__version__), f, indent=1)


if __name__ == "__main__":
    main()
