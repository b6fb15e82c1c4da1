"""Variants of the generated Mamba-1 forward (the prelude's softplus, D's mask, unroll), timed
in one run against each other and the device copy rate (bench/sweep_mamba1.py's harness).

Each variant replaces helper bodies in ``prelude.PRELUDE`` before compiling (the disk cache is
keyed by the generated source, so variants never share a kernel); each is checked against the
float64 recurrence first. Writes $OUT/exp_prelude.json.

    python bench/exp_prelude.py [variant,...]      (default: all)"""

from __future__ import annotations

import json
import os
import sys

import torch
import triton

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
from mamba1 import mamba1  # noqa: E402
from sweep_mamba1 import SHAPES, bytes_moved, copy_rate_gbs, make_inputs, reference  # noqa: E402

import ssmc  # noqa: E402
from ssmc.backends.triton import prelude  # noqa: E402

CURRENT = prelude.PRELUDE
SOFTPLUS_OLD = '''@triton.jit
def _ssmc_softplus(x):
    return tl.where(x > 20.0, x, _ssmc_log1p(tl.exp(x)))
'''

def helper(name: str, text: str = CURRENT) -> str:
    start = text.index(f"@triton.jit\ndef {name}(")
    end = text.index("\n\n\n", start)
    return text[start:end] + "\n"


def patched(**bodies: str) -> str:
    text = CURRENT
    for name, body in bodies.items():
        text = text.replace(helper(name), body)
    return text


def masked_tiled_dim(on: bool) -> None:
    """Kernel.even_dims without (on) / with (off) the register-held tiled dim: D always
    masked, as before EVEN_D."""
    from ssmc.backends.triton.kernel_ir import Kernel

    if not hasattr(Kernel, "_even_dims"):
        Kernel._even_dims = Kernel.even_dims
    Kernel.even_dims = property(lambda k: tuple(d for d in k.full_dims if d not in dict(k.held))) if on else Kernel._even_dims


# name: (prelude text, D always masked?, compile options)
VARIANTS = {
    "softplus_old": (patched(_ssmc_softplus=SOFTPLUS_OLD), True, {}),
    "masked_D": (CURRENT, True, {}),
    "current": (CURRENT, False, {}),
    "unroll8": (CURRENT, False, {"unroll": 8}),
}
CHUNKS = {(8, 2048, 2048, 16): [6, 12], (2, 8192, 2048, 16): [24, 48], (8, 4096, 5120, 16): []}


def main() -> None:
    names = sys.argv[1].split(",") if len(sys.argv) > 1 else list(VARIANTS)
    out_dir = os.environ.get("OUT", "bench/results")
    os.makedirs(out_dir, exist_ok=True)
    copy = copy_rate_gbs()
    print(f"device {torch.cuda.get_device_name()}; copy rate {copy:.0f} GB/s (read+write)", flush=True)
    small = make_inputs(2, 300, 96, 16, torch.bfloat16, seed=1)
    y_ref, h_ref = reference(small)
    small32 = {k: (v.float() if v.dtype == torch.bfloat16 else v) for k, v in small.items()}
    y32, h32 = reference(small32)
    rows = []
    inputs = {s: make_inputs(*s, torch.bfloat16) for s in SHAPES}
    for name in names:
        prelude.PRELUDE, masked, opts = VARIANTS[name]
        masked_tiled_dim(masked)
        layer = ssmc.compile(mamba1, **opts)
        out = layer(**small)
        o32 = layer(**small32)
        err = max(((out["y"].double() - y_ref).norm() / y_ref.norm()).item(), ((out["h_final"].double() - h_ref).norm() / h_ref.norm()).item())
        e32 = max(((o32["y"].double() - y32).abs().max() / y32.abs().max()).item(), ((o32["h_final"].double() - h32).abs().max() / h32.abs().max()).item())
        ok = err < 1e-2 and e32 < 1e-5
        print(f"{name}: bf16 rel err {err:.2e}, f32 max err / max {e32:.2e} ({'ok' if ok else 'MISMATCH'})", flush=True)
        if not ok:
            continue
        for s in SHAPES:
            for chunks in [None] + (CHUNKS[s] if name == "current" else []):
                lay = layer if chunks is None else ssmc.compile(mamba1, strategy="chunked", chunks=chunks)
                ins = inputs[s]
                ms = triton.testing.do_bench(lambda lay=lay, ins=ins: lay(**ins), warmup=10, rep=100, return_mode="median")
                frac = bytes_moved(*s, 2) / (ms * 1e-3) / 1e9 / copy
                label = f"{name}" + (f" chunks={chunks}" if chunks else "")
                rows.append(dict(variant=label, shape="B{} L{} D{} N{}".format(*s), ms=ms, frac=frac))
                print(f"  {label:28s} B{s[0]} L{s[1]} D{s[2]}: {ms:.3f} ms  {frac:.3f} of copy", flush=True)
    prelude.PRELUDE = CURRENT
    masked_tiled_dim(False)
    with open(os.path.join(out_dir, "exp_prelude.json"), "w") as f:
        json.dump(dict(device=torch.cuda.get_device_name(), copy_gbs=copy, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
