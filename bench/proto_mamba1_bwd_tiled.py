"""A hand-written prototype, not generated code: Mamba-1's backward with time across threads.

Question it answers (issue 5): ssmc's backward main kernel (the tensor form: a program walks its
steps one at a time over a [channels, N] tile, and each step's dB / dC are sums over channels
across threads) takes ~3.0 ms at B8 L2048 D2048 N16, where mamba-ssm's whole forward+backward
takes 3.06. mamba-ssm's CUDA backward puts one channel on a block, time across its threads, and
scans each state index with block scans; dB / dC leave each block as atomic adds. Would that
split, written in Triton (a tile of T steps x BD channels x N, `tl.associative_scan` along the
steps: forward for h, reverse for its cotangent g; dB / dC of a tile summed over its BD channels
and added with one atomic per element), be faster? If so, the generator gets it as a lowering.

Two kernels: `_ckpt` (h entering each tile of T steps, from the forward over the tiles) and
`_bwd` (tiles last to first: h from the tile's entry state, g from the later tile's carry).
Checked against torch autograd through a float64 loop (small sizes; on the CPU with
TRITON_INTERPRET=1), and on a GPU against ssmc's generated backward at the benchmark shapes,
then timed against it in the same run (mamba-ssm's CUDA kernel: bench/mamba1_vs_cuda_peer.py).

What the compiler makes of it (sm_90, Triton 3.6.0, compiled on a CPU machine with
bench/aot_sm90.py's helpers, session 17): per tile iteration 2152 SASS instructions a thread at
T 32, BD 2, 4 warps (128 registers, no spills; SHFL 286, LDS 172, STS 62: the scans' and sums'
exchanges across lanes and warps), i.e. 8.4 warp-instructions per (step, channel, state)
element, 6.3 at T 64; the generated tensor-form kernel's phase B issues ~1.3 (NOTES.md,
session 4's SASS). So 4.8-6.5x the instructions of the kernel it would replace: not worth a
GPU run or a lowering (session 1's generated time-tile backward ran 2.3x slower than its
sequential one, too). Kept as the record of that answer, and as a checked reference.

Usage: python bench/proto_mamba1_bwd_tiled.py check            (small, against autograd)
       python bench/proto_mamba1_bwd_tiled.py bench [T,BD,WARPS[,SHIFT]]...  (GPU: the three shapes)
"""

from __future__ import annotations

import json
import os
import sys

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634


@triton.jit
def _fwd_op(a1, b1, a2, b2):
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _rev_op(fb, A2, B2, fa, A, Bv):
    # segments of a reverse recurrence g[t] = beta[t] + a[t+1] g[t+1], each held as (a at its
    # first step, A, B) with g at its first step = B + A x, x = a at the step after it times g
    # there. Under reverse=True the first argument is the later segment (Triton 3.6.0's
    # interpreter: flip, scan, flip; `check` holds the GPU to it too): the later one's first
    # decay joins the product.
    return fa, A * fb * A2, Bv + A * fb * B2


@triton.jit
def _rev_pair(A2, B2, A1, B1):
    # g[t] = B + A x over a segment, x = g after it; under reverse=True the later segment first
    return A1 * A2, B1 + A1 * B2


@triton.jit
def _softplus(v):
    return tl.where(v > 20.0, v, tl.log(1.0 + tl.exp(v)))


@triton.jit
def _state(ptr, pid_b, D, od, on, dm, GIVEN: tl.constexpr, BD: tl.constexpr, N: tl.constexpr):
    """A [BD, N] block of a [B, D, N] state, or zeros where none is given."""
    if GIVEN:
        return tl.load(ptr + pid_b * D * N + od[:, None] * N + on[None, :], mask=dm[:, None], other=0.0)
    return tl.zeros([BD, N], tl.float32)


@triton.jit
def _ckpt(x, dt, Bm, A_log, bias, h0, hck, L, D, n_tiles,
          N: tl.constexpr, T: tl.constexpr, BD: tl.constexpr, HAS_H0: tl.constexpr):
    """hck[b, i, d, n] = the state entering tile i (h0 for i = 0)."""
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    ot = tl.arange(0, T)
    od = pid_d * BD + tl.arange(0, BD)
    on = tl.arange(0, N)
    dm = od < D
    A2 = -tl.exp(tl.load(A_log + od[:, None] * N + on[None, :], mask=dm[:, None], other=0.0)) * 1.4426950408889634
    bs = tl.load(bias + od, mask=dm, other=0.0)
    h = _state(h0, pid_b, D, od, on, dm, HAS_H0, BD, N)
    for i in range(0, n_tiles):
        tl.store(hck + ((pid_b * n_tiles + i) * D + od[:, None]) * N + on[None, :], h, mask=dm[:, None])
        t = i * T + ot
        tm = t < L
        m2 = tm[:, None] & dm[None, :]
        row = (pid_b * L + t[:, None]) * D + od[None, :]
        xv = tl.load(x + row, mask=m2, other=0.0).to(tl.float32)
        v = tl.load(dt + row, mask=m2, other=0.0).to(tl.float32) + bs[None, :]
        delta = _softplus(v)
        delta = tl.where(m2, delta, 0.0)
        Bv = tl.load(Bm + (pid_b * L + t[:, None]) * N + on[None, :], mask=tm[:, None], other=0.0).to(tl.float32)
        a = tl.exp2(delta[:, :, None] * A2[None, :, :])
        bx = (delta * xv)[:, :, None] * Bv[:, None, :]
        ac, bc = tl.associative_scan((a, bx), 0, _fwd_op)
        hs = ac * h[None, :, :] + bc
        h = tl.sum(tl.where((ot == T - 1)[:, None, None], hs, 0.0), axis=0)


@triton.jit
def _bwd(x, dt, Bm, Cm, z, A_log, Dp, bias, dout, dhf, hck,
         dx, ddt, dB, dC, dz, dA_log, dD, dbias, dh0,
         L, D, n_tiles,
         N: tl.constexpr, T: tl.constexpr, BD: tl.constexpr, HAS_DHF: tl.constexpr, SHIFT: tl.constexpr):
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    ot = tl.arange(0, T)
    od = pid_d * BD + tl.arange(0, BD)
    on = tl.arange(0, N)
    dm = od < D
    An = -tl.exp(tl.load(A_log + od[:, None] * N + on[None, :], mask=dm[:, None], other=0.0))
    A2 = An * 1.4426950408889634
    bs = tl.load(bias + od, mask=dm, other=0.0)
    Dv = tl.load(Dp + od, mask=dm, other=0.0)
    c = _state(dhf, pid_b, D, od, on, dm, HAS_DHF, BD, N)
    acc_dA = tl.zeros([BD, N], tl.float32)
    acc_dD = tl.zeros([BD], tl.float32)
    acc_db = tl.zeros([BD], tl.float32)
    for k in range(0, n_tiles):
        i = n_tiles - 1 - k
        t = i * T + ot
        tm = t < L
        m2 = tm[:, None] & dm[None, :]
        row = (pid_b * L + t[:, None]) * D + od[None, :]
        xv = tl.load(x + row, mask=m2, other=0.0).to(tl.float32)
        v = tl.load(dt + row, mask=m2, other=0.0).to(tl.float32) + bs[None, :]
        zv = tl.load(z + row, mask=m2, other=0.0).to(tl.float32)
        go = tl.load(dout + row, mask=m2, other=0.0).to(tl.float32)
        ev = tl.exp(v)
        delta = tl.where(v > 20.0, v, tl.log(1.0 + ev))
        delta = tl.where(m2, delta, 0.0)
        nrow = (pid_b * L + t[:, None]) * N + on[None, :]
        Bv = tl.load(Bm + nrow, mask=tm[:, None], other=0.0).to(tl.float32)
        Cv = tl.load(Cm + nrow, mask=tm[:, None], other=0.0).to(tl.float32)
        a = tl.exp2(delta[:, :, None] * A2[None, :, :])
        u = delta * xv
        bx = u[:, :, None] * Bv[:, None, :]
        hin = tl.load(hck + ((pid_b * n_tiles + i) * D + od[:, None]) * N + on[None, :], mask=dm[:, None], other=0.0)
        ac, bc = tl.associative_scan((a, bx), 0, _fwd_op)
        h = ac * hin[None, :, :] + bc
        y = tl.sum(h * Cv[:, None, :], axis=2) + Dv[None, :] * xv
        sz = 1.0 / (1.0 + tl.exp(-zv))
        dy = go * zv * sz
        tl.store(dz + row, (go * y * sz * (1.0 + zv * (1.0 - sz))).to(dz.dtype.element_ty), mask=m2)
        beta = dy[:, :, None] * Cv[:, None, :]
        if SHIFT:  # the decay of the step after each: dt reloaded a row later, its exp2 again
            m1 = ((t + 1) < L)[:, None] & dm[None, :]
            v1 = tl.load(dt + row + D, mask=m1, other=0.0).to(tl.float32) + bs[None, :]
            d1 = _softplus(v1)
            d1 = tl.where(m1 & (ot < T - 1)[:, None], d1, 0.0)  # the last row's is the carry's
            alpha = tl.exp2(d1[:, :, None] * A2[None, :, :])
            gA, gB = tl.associative_scan((alpha, beta), 0, _rev_pair, reverse=True)
            g = gB + gA * c[None, :, :]
            d0 = tl.sum(tl.where((ot == 0)[:, None], delta, 0.0), axis=0)
            c = tl.exp2(d0[:, None] * A2) * tl.sum(tl.where((ot == 0)[:, None, None], g, 0.0), axis=0)
        else:
            ones = tl.full([T, BD, N], 1.0, tl.float32)
            _, gA, gB = tl.associative_scan((a, ones, beta), 0, _rev_op, reverse=True)
            g = gB + gA * c[None, :, :]
            c = tl.sum(tl.where((ot == 0)[:, None, None], a * g, 0.0), axis=0)
        gBs = tl.sum(g * Bv[:, None, :], axis=2)
        gh = g * (h - bx)
        dl = xv * gBs + tl.sum(gh * An[None, :, :], axis=2)
        dtv = dl * (ev / (1.0 + ev))
        dtv = tl.where(v > 20.0, dl, dtv)
        tl.store(dx + row, (delta * gBs + Dv[None, :] * dy).to(dx.dtype.element_ty), mask=m2)
        tl.store(ddt + row, dtv.to(ddt.dtype.element_ty), mask=m2)
        acc_dA += tl.sum(gh * delta[:, :, None], axis=0)
        acc_dD += tl.sum(dy * xv, axis=0)
        acc_db += tl.sum(tl.where(m2, dtv, 0.0), axis=0)
        tl.atomic_add(dB + nrow, tl.sum(g * u[:, :, None], axis=1), mask=tm[:, None], sem="relaxed")
        tl.atomic_add(dC + nrow, tl.sum(h * dy[:, :, None], axis=1), mask=tm[:, None], sem="relaxed")
    tl.store(dh0 + pid_b * D * N + od[:, None] * N + on[None, :], c, mask=dm[:, None])
    tl.atomic_add(dA_log + od[:, None] * N + on[None, :], acc_dA * An, mask=dm[:, None], sem="relaxed")
    tl.atomic_add(dD + od, acc_dD, mask=dm, sem="relaxed")
    tl.atomic_add(dbias + od, acc_db, mask=dm, sem="relaxed")


def backward(x, dt, B, C, z, A_log, D, dt_bias, h0, gy, ghf, T=64, BD=2, warps=4, stages=1, shift=False):
    """Gradients of (x, dt, B, C, z, A_log, D, dt_bias, h0) given those of y and h_final."""
    Bsz, L, Dd = x.shape
    N = A_log.shape[1]
    n_tiles = triton.cdiv(L, T)
    dev = x.device
    hck = torch.empty(Bsz, n_tiles, Dd, N, device=dev, dtype=torch.float32)
    grid = (Bsz, triton.cdiv(Dd, BD))
    _ckpt[grid](x, dt, B, A_log, dt_bias, h0 if h0 is not None else hck, hck, L, Dd, n_tiles,
                N=N, T=T, BD=BD, HAS_H0=h0 is not None, num_warps=warps)
    dx, ddt, dz = torch.empty_like(x), torch.empty_like(dt), torch.empty_like(z)
    dB = torch.zeros(Bsz, L, N, device=dev, dtype=torch.float32)
    dC = torch.zeros_like(dB)
    dA_log = torch.zeros_like(A_log, dtype=torch.float32)
    dD = torch.zeros_like(D, dtype=torch.float32)
    dbias = torch.zeros_like(dt_bias, dtype=torch.float32)
    dh0 = torch.empty(Bsz, Dd, N, device=dev, dtype=torch.float32)
    _bwd[grid](x, dt, B, C, z, A_log, D, dt_bias, gy, ghf if ghf is not None else dh0, hck,
               dx, ddt, dB, dC, dz, dA_log, dD, dbias, dh0, L, Dd, n_tiles,
               N=N, T=T, BD=BD, HAS_DHF=ghf is not None, SHIFT=shift, num_warps=warps, num_stages=stages)
    return dict(x=dx, dt=ddt, B=dB, C=dC, z=dz, A_log=dA_log, D=dD, dt_bias=dbias, h0=dh0)


def reference(x, dt, B, C, z, A_log, D, dt_bias, h0, gy, ghf):
    """torch autograd through a float64 loop: the gradients the kernels must give."""
    names = ["x", "dt", "B", "C", "z", "A_log", "D", "dt_bias", "h0"]
    vals = [t.detach().double().requires_grad_() for t in (x, dt, B, C, z, A_log, D, dt_bias, h0)]
    xv, dtv, Bv, Cv, zv, Al, Dv, bv, h = vals
    delta = torch.nn.functional.softplus(dtv + bv)
    A = -torch.exp(Al)
    ys = []
    for t in range(xv.shape[1]):
        a = torch.exp(delta[:, t, :, None] * A)
        h = a * h + (delta[:, t] * xv[:, t])[:, :, None] * Bv[:, t, None, :]
        ys.append((h * Cv[:, t, None, :]).sum(-1) + Dv * xv[:, t])
    y = torch.stack(ys, 1) * torch.nn.functional.silu(zv)
    (y * gy.double()).sum().add_((h * ghf.double()).sum()).backward()
    return {k: v.grad for k, v in zip(names, vals)}


def inputs(Bsz, L, Dd, N, dtype, device, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    t = dict(x=r(Bsz, L, Dd), dt=r(Bsz, L, Dd) - 1.0, B=r(Bsz, L, N), C=r(Bsz, L, N), z=r(Bsz, L, Dd))
    t = {k: v.to(device=device, dtype=dtype) for k, v in t.items()}
    t["A_log"] = torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(Dd, 1).to(device)
    t["D"] = torch.ones(Dd, device=device)
    t["dt_bias"] = (torch.rand(Dd, generator=g) * 2 - 3).to(device)
    t["h0"] = r(Bsz, Dd, N).to(device) * 0.1
    t["gy"] = r(Bsz, L, Dd).to(device=device, dtype=dtype)
    t["ghf"] = r(Bsz, Dd, N).to(device)
    return t


def max_rel(a, b):
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30))


def check(device="cpu", sizes=((1, 37, 3, 4), (2, 130, 5, 16)), T=16, BD=2):
    worst = 0.0
    for (Bsz, L, Dd, N) in sizes:
        t = inputs(Bsz, L, Dd, N, torch.float32, device)
        ref = reference(**t)
        for shift in (False, True):
            got = backward(**t, T=T, BD=BD, shift=shift)
            errs = {k: max_rel(got[k], r) for k, r in ref.items()}
            worst = max(worst, *errs.values())
            print(f"B{Bsz} L{L} D{Dd} N{N} shift={shift}: " + " ".join(f"{k} {e:.1e}" for k, e in errs.items()))
    ok = worst < 1e-4
    print("check:", "ok" if ok else "FAILED", f"(worst {worst:.2e})")
    return ok


def bench(args):
    from triton.testing import do_bench

    import ssmc
    from ssmc.backends.triton.backward import CompiledBackward
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
    from mamba1 import mamba1

    configs = [tuple(int(v) for v in (a + ",0").split(",")[:4]) for a in args] or [(64, 2, 4, 0), (32, 4, 4, 0), (32, 2, 2, 1)]
    dev = "cuda"
    src = torch.empty(256 * 2**20, device=dev, dtype=torch.uint8)
    dst = torch.empty_like(src)
    copy_ms = do_bench(lambda: dst.copy_(src))
    copy = 2 * src.numel() / copy_ms / 1e6
    out = {"device": torch.cuda.get_device_name(), "copy_GBps": copy, "rows": []}
    print(f"{out['device']}  copy {copy:.0f} GB/s")
    ok_all = check(dev)
    fwd = ssmc.compile(mamba1)
    back = CompiledBackward(mamba1, forward=fwd)
    for (Bsz, L, Dd, N) in ((8, 2048, 2048, 16), (2, 8192, 2048, 16), (8, 4096, 5120, 16)):
        t = inputs(Bsz, L, Dd, N, torch.bfloat16, dev)
        args_ssmc = {k: t[k] for k in ("x", "dt", "B", "C", "z", "A_log", "D", "dt_bias", "h0")}
        ref_fn = lambda a=args_ssmc, t=t: back(**a, grad_y=t["gy"], grad_h_final=t["ghf"])  # noqa: E731
        ref = {k.removeprefix("grad_"): v for k, v in ref_fn().items()}
        ms_ssmc = do_bench(ref_fn)
        ms_fwd = do_bench(lambda a=args_ssmc: fwd(**a))
        row = {"shape": [Bsz, L, Dd, N], "ssmc_bwd_ms": ms_ssmc, "ssmc_fwd_ms": ms_fwd, "variants": []}
        print(f"B{Bsz} L{L} D{Dd} N{N}: ssmc backward {ms_ssmc:.3f} ms, forward {ms_fwd:.3f} ms")
        for (T, BD, W, S) in configs:
            try:
                fn = lambda t=t, k=(T, BD, W, S): backward(**t, T=k[0], BD=k[1], warps=k[2], shift=bool(k[3]))  # noqa: E731
                got = fn()
                errs = {}
                for k, rk in ref.items():
                    errs[k] = max_rel(got[k], rk)
                ms = do_bench(fn)
                print(f"  T{T} BD{BD} warps{W} shift{S}: {ms:.3f} ms ({ms_ssmc / ms:.2f}x ssmc)  worst err vs ssmc "
                      f"{max(errs.values()) if errs else float('nan'):.1e} {max(errs, key=errs.get) if errs else ''}")
                row["variants"].append({"T": T, "BD": BD, "warps": W, "shift": S, "ms": ms, "errs": errs})
            except Exception as e:  # noqa: BLE001
                print(f"  T{T} BD{BD} warps{W} shift{S}: failed {type(e).__name__}: {str(e)[:300]}")
        out["rows"].append(row)
    od = os.environ.get("OUT")
    if od:
        with open(os.path.join(od, "proto_mamba1_bwd_tiled.json"), "w") as f:
            json.dump(out, f, indent=1)
    return ok_all


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "check"
    ok = check() if what == "check" else bench(sys.argv[2:])
    sys.exit(0 if ok else 1)
