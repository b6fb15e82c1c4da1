"""Mamba-2's forward (matrix form) on a GPU, its chunk-states kernel in several schedules:
B8 L2048 H32 P64 N128 bf16 (issue 6's shape), against mamba-ssm's mamba_chunk_scan_combined in
the same run. Each variant changes only the forward's states kernel (products' precision, warps,
blocks of N and P, stages of loads); its outputs are compared with the default's (y and the
final state, max error / max of the default's), its call timed (do_bench median), and its
kernels listed (torch.profiler). sm_90 compile of the default: 142 registers (3 programs an SM),
662 SASS instructions a tile; with one bf16 product a tile 107 and 514 (bench/aot_new_kernels.py).

    [VARIANTS=name,...] [SHAPE=B,L,H] sh bench/fwd_states_gpu.sh   (results: $OUT/fwd_states_gpu_<shape>.json)
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace

import torch
import triton

sys.path[:0] = ["examples", "bench"]
from mamba2 import mamba2  # noqa: E402
from profile_cases import _peer  # noqa: E402

import ssmc  # noqa: E402
from ssmc.backends.triton import run as R  # noqa: E402
from ssmc.benchmark import peers  # noqa: E402
from ssmc.benchmark.measure import Ceilings, kernel_times  # noqa: E402

# name: the states kernel's (PREC, warps, N block, P block, stages, register cap) and, under
# "outputs", the outputs kernel's; unnamed: the default's
VARIANTS = {
    "default": {},
    "one bf16 product": dict(prec="bf16"),
    "two bf16 products": dict(prec="bf16x2"),
    "two bf16 products 3 stages": dict(prec="bf16x2", stages=3),
    "two bf16 products maxnreg 96": dict(prec="bf16x2", maxnreg=96),
    "three bf16 products maxnreg 96": dict(maxnreg=96),
    "8 warps": dict(warps=8),
    "P16": dict(bp=16),
    "N32": dict(bn=32),
    "3 stages": dict(stages=3),
    "one bf16 product, 3 stages": dict(prec="bf16", stages=3),
    "one bf16 product, P64": dict(prec="bf16", bp=64),
    "one bf16 product, 8 warps P64": dict(prec="bf16", bp=64, warps=8),
    "P64 8 warps": dict(bp=64, warps=8),
    # the outputs kernel (90 KB of shared memory and 141 registers on sm_90: 2 programs an SM):
    # its P block, then with the states kernel's two products and register cap
    "outputs P32": dict(outputs=dict(bp=32)),
    "outputs maxnreg 128": dict(outputs=dict(maxnreg=128)),
    "two bf16 products maxnreg 96 outputs P32": dict(prec="bf16x2", maxnreg=96, outputs=dict(bp=32)),
}


def patched(v: dict):
    plain = R.choose_matrix

    def choose(kernel, *a, **kw):
        s = plain(kernel, *a, **kw)
        w = v if kernel.role == "states" else v.get("outputs", {}) if kernel.role == "full" else {}
        if not w:
            return s
        return changed(s, kernel, w)
    return choose


def changed(s, kernel, v: dict):
    """Schedule ``s`` of ``kernel`` with what ``v`` names changed."""
    blocks = dict(s.blocks)
    m = kernel.matrix
    blocks[m.n] = v.get("bn", blocks[m.n])
    blocks[m.p] = v.get("bp", blocks[m.p])
    even = tuple((d, e and dict(s.blocks)[d] % blocks[d] == 0) for d, e in s.even)  # a divisor of an even block
    flags = tuple((k, v.get("prec", x) if k == "PREC" else x) for k, x in s.flags)
    return replace(s, blocks=tuple(blocks.items()), num_warps=v.get("warps", s.num_warps), even=even,
                   num_stages=v.get("stages", s.num_stages), flags=flags, maxnreg=v.get("maxnreg", s.maxnreg))


def kernels_of(fn) -> list[tuple[str, float]]:
    return [(k, t) for k, t, _ in kernel_times(fn)[:8]]


def main() -> None:
    c = Ceilings.measure()
    print(f"{torch.cuda.get_device_name()}  copy {c.copy / 1e9:.0f} GB/s", flush=True)
    out = dict(device=torch.cuda.get_device_name(), copy_gbs=c.copy / 1e9, rows=[], shape=os.environ.get("SHAPE", "8,2048,32"))
    path = os.path.join(os.environ.get("OUT", "."), f"fwd_states_gpu_{os.environ.get('SHAPE', '8,2048,32').replace(',', '_')}.json")
    B, L, H = (int(v) for v in os.environ.get("SHAPE", "8,2048,32").split(","))  # SHAPE=4,8192,80: the long case
    P, N = 64, 128
    g = torch.Generator(device="cuda").manual_seed(0)
    rn = lambda *s: torch.randn(*s, device="cuda", generator=g)  # noqa: E731
    x, z, dt = rn(B, L, H, P).bfloat16(), rn(B, L, H, P).bfloat16(), rn(B, L, H).bfloat16()
    Bm, C = rn(B, L, 1, N).bfloat16(), rn(B, L, 1, N).bfloat16()
    A = -torch.rand(H, device="cuda", generator=g) * 4 - 1
    Dp, bias = rn(H), torch.rand(H, device="cuda", generator=g) * 4 - 6
    args = dict(x=x.view(B, L, 1, H, P), dt=dt.view(B, L, 1, H), B=Bm, C=C, z=z.view(B, L, 1, H, P),
                A_log=torch.log(-A).view(1, H), D=Dp.view(1, H), dt_bias=bias.view(1, H))
    ssd = _peer(lambda: peers.mamba_triton("mamba_chunk_scan_combined"))
    peer_ms = None
    if not isinstance(ssd, str):
        run = lambda: ssd(x, dt, A, Bm, C, chunk_size=256, D=Dp, z=z, dt_bias=bias, dt_softplus=True)  # noqa: E731
        peer_ms = triton.testing.do_bench(run, warmup=50, rep=300)
        yp = run().float()
    names = [n for n in (os.environ.get("VARIANTS", "").split(",") if os.environ.get("VARIANTS") else VARIANTS)]
    plain = R.choose_matrix
    ref = None
    for name in names:
        R.choose_matrix = patched(VARIANTS[name])
        try:
            layer = ssmc.compile(mamba2)
            call = lambda layer=layer: layer.raw_call(**args)  # noqa: E731
            res = call()
            y, hf = res["y"].float(), res["h_final"]
            if ref is None:
                ref = (y, hf)
            ey = float((y - ref[0]).abs().max() / ref[0].abs().max())
            eh = float((hf - ref[1]).abs().max() / ref[1].abs().max())
            ms = triton.testing.do_bench(call, warmup=50, rep=300)
            ks = kernels_of(call)
        except Exception as e:  # a schedule the GPU refuses: a row, not the end
            print(f"{name:32s} {type(e).__name__}: {str(e)[:300]}", flush=True)
            out["rows"].append(dict(variant=name, error=repr(e)))
            continue
        finally:
            R.choose_matrix = plain
        row = dict(variant=name, ms=ms, err_y=ey, err_h_final=eh, kernels=ks,
                   peer_over_ssmc=peer_ms / ms if peer_ms else None)
        out["rows"].append(row)
        states = next((t for k, t in ks if "states" in k), float("nan"))
        print(f"{name:32s} {ms:.3f} ms  states {states:.0f} us  peer/ssmc {row['peer_over_ssmc'] or 0:.3f}  "
              f"y vs default {ey:.1e}  h_final {eh:.1e}", flush=True)
        json.dump(out, open(path, "w"), indent=1)
    if peer_ms:
        out["peer_ms"] = peer_ms
        out["peer_y_vs_default"] = float((yp - ref[0].view(B, L, H, P)).abs().max() / ref[0].abs().max())
        out["peer_kernels"] = kernels_of(run)
        print(f"mamba-ssm {peer_ms:.3f} ms  y vs ssmc default {out['peer_y_vs_default']:.1e}; kernels "
              + ", ".join(f"{k[:40]} {t:.0f}" for k, t in out["peer_kernels"]), flush=True)
    json.dump(out, open(path, "w"), indent=1)


if __name__ == "__main__":
    main()
