"""Session 12's layers on the GPU (written without one; `--smoke` runs its code paths on the CPU
under TRITON_INTERPRET=1 at tiny sizes, without timing): each checked against the interpreter
at a small size first (check_compiled, the tolerance table), then timed with do_bench (median)
next to the device copy rate measured in the same run, forward and forward+backward.

- bimamba (examples/bimamba.py) at B8 L2048 D2048 N16: the default (a kernel per direction)
  against strategy="bidir" (both in one kernel), and mamba-ssm's CUDA selective_scan_fn run
  once per direction (the reverse on flipped inputs, as Vision Mamba does) where it imports.
- lru (examples/lru.py) at B8 L2048 D2048 (complex state, its parts as registers).
Each line: ms, bytes moved (inputs once, outputs once) per second as a fraction of the copy rate.
Usage (the peer needs bench/run_gpu.sh's set-up: SSMC_MAMBA_CSRC=$PWD/.peers/selective_scan):
    python bench/new_layers_gpu.py [--smoke]"""

from __future__ import annotations

import os
import sys

SMOKE = "--smoke" in sys.argv
if SMOKE:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
from bimamba import bimamba  # noqa: E402
from lru import lru  # noqa: E402

import ssmc  # noqa: E402
from ssmc.testing.check import check_compiled  # noqa: E402

DEV = "cpu" if SMOKE else "cuda"
DT = torch.float32 if SMOKE else torch.bfloat16


def rnd(*shape, dtype=DT):
    return torch.randn(*shape, device=DEV).to(dtype)


def nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def timed(name, fn, moved, copy):
    if SMOKE:
        fn()
        print(f"  {name:58s} ran")
        return
    from ssmc.benchmark.measure import time_ms

    ms = time_ms(fn, 25, 200)
    print(f"  {name:58s} {ms:9.3f} ms   {moved / (ms * 1e-3) / copy:.3f} of copy", flush=True)


def check(layer, compiled, sizes):
    bad = [str(r) for r in check_compiled(layer, compiled, sizes, "bf16" if not SMOKE else "f32", 1, DEV, True) if not r.ok]
    print(f"  check {layer.name} {getattr(compiled, 'strategy', '')}: {'ok' if not bad else bad}", flush=True)


def bimamba_case(copy):
    B, L, D, N = (2, 9, 8, 4) if SMOKE else (8, 2048, 2048, 16)
    ins = dict(x=rnd(B, L, D), dt=rnd(B, L, D), B=rnd(B, L, N), C=rnd(B, L, N), z=rnd(B, L, D))
    params = {k: torch.tensor(v, dtype=torch.float32, device=DEV) for k, v in bimamba.init_params(dict(D=D, N=N), 0).items()}
    moved = nbytes(ins.values()) + nbytes([ins["x"]])
    dy = rnd(B, L, D)
    for strategy in (None, "bidir"):
        c = ssmc.compile(bimamba, strategy=strategy)
        check(bimamba, c, dict(B=2, L=77, D=40, N=16) if not SMOKE else dict(B=2, L=9, D=5, N=3))
        timed(f"bimamba fwd B{B} L{L} D{D} N{N} ssmc {strategy or 'default'}", lambda c=c: c.raw_call(**ins, **params), moved, copy)
        leaves = {k: v.detach().clone().requires_grad_() for k, v in {**ins, **params}.items()}

        def step(c=c, leaves=leaves):
            c(**leaves)["y"].backward(dy)

        timed(f"bimamba fwd+bwd B{B} L{L} D{D} N{N} ssmc {strategy or 'default'}", step, 2 * moved + nbytes(ins.values()), copy)
    if PEER is None or isinstance(PEER, str):
        print(f"  mamba-ssm's CUDA scan: none ({PEER or 'smoke run'}); no peer")
        return
    selective_scan_fn = PEER
    u, delta, z = (ins[k].transpose(1, 2).contiguous() for k in ("x", "dt", "z"))
    Bm, Cm = (ins[k].transpose(1, 2).contiguous() for k in ("B", "C"))
    Af, Ar = -torch.exp(params["A_log"]), -torch.exp(params["A_log_r"])

    def peer():
        yf = selective_scan_fn(u, delta, Af, Bm, Cm, None, None, params["dt_bias"], True)
        yr = selective_scan_fn(u.flip(-1), delta.flip(-1), Ar, Bm.flip(-1), Cm.flip(-1), None, None, params["dt_bias"], True)
        y = yf + yr.flip(-1) + params["D"][:, None] * u
        return y * torch.nn.functional.silu(z)

    ssmc_y = ssmc.compile(bimamba).raw_call(**ins, **params)["y"].transpose(1, 2).float()
    err = (peer().float() - ssmc_y).abs().max().item() / ssmc_y.abs().max().item()
    print(f"  peer vs ssmc: max rel err {err:.2e}")
    timed(f"bimamba fwd B{B} L{L} D{D} N{N} mamba-ssm CUDA x2 (flip)", peer, moved, copy)


def lru_case(copy):
    B, L, D = (2, 9, 6) if SMOKE else (8, 2048, 2048)
    bu = rnd(B, L, D, 2)
    params = {k: torch.tensor(v, dtype=torch.float32, device=DEV) for k, v in lru.init_params(dict(D=D), 0).items()}
    c = ssmc.compile(lru)
    check(lru, c, dict(B=2, L=77, D=40) if not SMOKE else dict(B=2, L=9, D=5))
    moved = 2 * nbytes([bu])
    timed(f"lru fwd B{B} L{L} D{D} ssmc", lambda: c.raw_call(bu=bu, **params), moved, copy)
    leaves = {k: v.detach().clone().requires_grad_() for k, v in {"bu": bu, **params}.items()}
    dy = rnd(B, L, D, 2)

    def step():
        c(**leaves)["y"].backward(dy)

    timed(f"lru fwd+bwd B{B} L{L} D{D} ssmc", step, 3 * moved, copy)


PEER = None  # mamba-ssm's selective_scan_fn on its CUDA kernel, built from its sources (the bench's peer)


def main():
    global PEER
    if SMOKE:
        copy = 1.0
        print("smoke run: CPU, Triton's interpreter, tiny sizes, no timing")
    else:
        from ssmc.benchmark import peers
        from ssmc.benchmark.measure import copy_rate

        build = peers.start_selective_scan_build()  # needs SSMC_MAMBA_CSRC (bench/run_gpu.sh's set-up)
        copy = copy_rate()
        print(f"{torch.cuda.get_device_name()}; copy {copy / 1e9:.0f} GB/s", flush=True)
        try:
            PEER = peers.selective_scan_fn(build)
        except Exception as e:  # noqa: BLE001  (reported; the run goes on without the peer)
            PEER = f"{type(e).__name__}: {str(e)[:200]}"
    bimamba_case(copy)
    lru_case(copy)


if __name__ == "__main__":
    main()
