"""Experiment (GPU): which changes to the generated Mamba-1 forward pay, before building them
into the code generator.

Variants, each checked against the generated kernel's float32-state output first, then timed
with do_bench (median) next to the copy rate measured in the same run:
- ssmc as generated (default schedule, and the plain sequential kernel): the anchors;
- the same with the in-loop exp2 as ``ex2.approx.ftz`` (no denormal fix-up around MUFU.EX2);
- a hand-written sequential kernel with the state dim N unrolled into N registers per channel
  (sum over N as an FMA chain, B/C rows as scalar loads), with options: B/C loaded as int32
  pairs of bf16; the next tile's loads issued before this tile's work (register prefetch).
Also the SASS instruction count of each kernel's main loop (the largest basic block)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections import Counter

import torch
import triton

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
sys.path.insert(0, HERE)
from mamba1 import mamba1  # noqa: E402
from sweep_mamba1 import bytes_moved, copy_rate_gbs, make_inputs  # noqa: E402

import ssmc  # noqa: E402
from ssmc.backends.triton import jit as J  # noqa: E402

FTZ = '''
@triton.jit
def _x_exp2_ftz(x):
    return tl.inline_asm_elementwise("ex2.approx.ftz.f32 $0, $1;", "=f,f", [x], dtype=tl.float32, is_pure=True, pack=1)
'''

_orig_generate = J.generate


def with_ftz(src: str) -> str:
    """In-loop tl.exp2 -> ex2.approx.ftz (the loop-invariant accurate exps are untouched)."""
    head, sep, body = src.partition("@triton.jit(do_not_specialize")
    body = body.replace("tl.exp2(v", "_x_exp2_ftz(v")
    return head + FTZ + "\n\n" + sep + body


def load_module(src: str, name: str):
    d = tempfile.mkdtemp()
    path = os.path.join(d, f"{name}.py")
    open(path, "w").write(src)
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def unrolled_source(N: int, U: int, pairs: bool, prefetch: bool, ftz: bool) -> str:
    """A sequential Mamba-1 forward, contiguous [B, L, D] / [B, L, N] inputs, L % U == 0,
    one channel per thread, state as N registers. No h0, no final state (timing only)."""
    e = "_x_exp2_ftz" if ftz else "tl.exp2"
    L_ = []
    w = L_.append
    w("import triton\nimport triton.language as tl\n")
    w(FTZ)
    w("""
@triton.jit
def _softplus(x):
    u = 1.0 + tl.exp(x)
    d = u - 1.0
    r = tl.where(d == 0.0, tl.exp(x), tl.log(u) * (tl.exp(x) / tl.where(d == 0.0, 1.0, d)))
    return tl.where(x > 20.0, x, r)
""")
    w("@triton.jit(do_not_specialize=['L', 'D'])")
    w("def kern(x_ptr, dt_ptr, B_ptr, C_ptr, z_ptr, Alog_ptr, Dp_ptr, dtb_ptr, y_ptr, L, D, BLOCK_D: tl.constexpr):")
    w("    pid = tl.program_id(0).to(tl.int64)")
    w("    nbd = tl.cdiv(D, BLOCK_D)")
    w("    pd = pid % nbd")
    w("    b = pid // nbd")
    w("    offs = pd * BLOCK_D + tl.arange(0, BLOCK_D)")
    w("    mask = offs < D")
    w("    dtb = tl.load(dtb_ptr + offs, mask=mask, other=0.0)")
    w("    Dp = tl.load(Dp_ptr + offs, mask=mask, other=0.0)")
    for n in range(N):
        w(f"    A{n} = -tl.exp(tl.load(Alog_ptr + offs * {N} + {n}, mask=mask, other=0.0)) * 1.4426950408889634")
        w(f"    h{n} = tl.zeros([BLOCK_D], tl.float32)")
    w("    pD = b * L * D + offs")
    w("    pN = b * L * " + str(N))
    if pairs:
        w("    Bq = B_ptr.to(tl.pointer_type(tl.int32))")
        w("    Cq = C_ptr.to(tl.pointer_type(tl.int32))")
        w("    pN = pN // 2")

    def loads(prefix: str, base_d: str, base_n: str, indent: str):
        for u in range(U):
            for nm in ("x", "dt", "z"):
                w(f"{indent}{prefix}{nm}{u} = tl.load({nm}_ptr + {base_d} + {u} * D, mask=mask, other=0.0)")
            if pairs:
                for j in range(N // 2):
                    w(f"{indent}{prefix}B{u}_{j} = tl.load(Bq + {base_n} + {u * N // 2 + j})")
                    w(f"{indent}{prefix}C{u}_{j} = tl.load(Cq + {base_n} + {u * N // 2 + j})")
            else:
                for n in range(N):
                    w(f"{indent}{prefix}B{u}_{n} = tl.load(B_ptr + {base_n} + {u * N + n})")
                    w(f"{indent}{prefix}C{u}_{n} = tl.load(C_ptr + {base_n} + {u * N + n})")

    names = [f"{nm}{u}" for u in range(U) for nm in ("x", "dt", "z")]
    names += [f"{m}{u}_{j}" for u in range(U) for m in "BC" for j in range(N // 2 if pairs else N)]
    if prefetch:
        loads("n_", "pD", "pN", "    ")
    w(f"    for t0 in range(0, L, {U}):")
    ind = "        "
    if prefetch:
        for nm in names:
            w(f"{ind}{nm} = n_{nm}")
        w(f"{ind}tn = tl.minimum(t0 + {U}, L - {U})")
        loads("n_", "pD + tn * D", f"pN + tn * {N // 2 if pairs else N}", ind)
    else:
        loads("", "pD + t0 * D", f"pN + t0 * {N // 2 if pairs else N}", ind)
    for u in range(U):
        w(f"{ind}xx = x{u}.to(tl.float32)")
        w(f"{ind}dl = _softplus(dt{u}.to(tl.float32) + dtb)")
        w(f"{ind}dx = dl * xx")
        w(f"{ind}y = Dp * xx")
        for n in range(N):
            if pairs:
                j, hi = divmod(n, 2)
                op = "& -65536" if hi else "<< 16"
                bn, cn = (f"({m}{u}_{j} {op}).to(tl.float32, bitcast=True)" for m in "BC")
            else:
                bn, cn = f"B{u}_{n}.to(tl.float32)", f"C{u}_{n}.to(tl.float32)"
            w(f"{ind}h{n} = {e}(dl * A{n}) * h{n} + dx * {bn}")
            w(f"{ind}y += h{n} * {cn}")
        w(f"{ind}zz = z{u}.to(tl.float32)")
        w(f"{ind}y = y * (zz * tl.sigmoid(zz))")
        w(f"{ind}tl.store(y_ptr + pD + (t0 + {u}) * D, y.to(y_ptr.dtype.element_ty), mask=mask)")
    return "\n".join(L_) + "\n"


def sass_of(compiled) -> tuple[int, list]:
    """Size and opcode mix of the kernel's largest basic block (the unrolled loop)."""
    from aot_sm90 import cubin_sass, sass_blocks

    big = max(sass_blocks(cubin_sass(compiled.asm["cubin"])[1]), key=len)
    return len(big), Counter(big).most_common(12)


SHAPES = [(8, 2048, 2048, 16), (8, 4096, 5120, 16), (2, 8192, 2048, 16)]


def main() -> None:
    out_dir = os.environ.get("OUT", "/tmp")
    copy = copy_rate_gbs()
    print(f"device {torch.cuda.get_device_name()}; copy {copy:.0f} GB/s", flush=True)
    results = []
    inputs = {s: make_inputs(*s, torch.bfloat16) for s in SHAPES}
    ref_layer = ssmc.compile(mamba1, strategy="sequential")
    refs = {s: ref_layer(**inputs[s])["y"].float() for s in SHAPES}

    def record(name, fn, s, kernel=None):
        B, L, D, N = s
        y = fn()
        err = ((y.float() - refs[s]).norm() / refs[s].norm()).item()
        if not err < 2e-2:
            print(f"{name:44s} B{B} L{L} D{D}: MISMATCH rel err {err:.2e}", flush=True)
            return
        ms = triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median")
        frac = bytes_moved(B, L, D, N, 2) / (ms * 1e-3) / 1e9 / copy
        results.append(dict(variant=name, shape=f"B{B} L{L} D{D} N{N}", ms=ms, frac=frac, err=err))
        print(f"{name:44s} B{B} L{L} D{D}: {ms:.3f} ms {frac:.3f} of copy (err {err:.1e})", flush=True)

    # generated kernels, as is and with ftz
    for tag, transform in (("gen", None), ("gen+ftz", with_ftz)):
        J.generate = (lambda *a, t=transform: t(_orig_generate(*a))) if transform else _orig_generate
        for strat in (None, "sequential"):
            layer = ssmc.compile(mamba1, strategy=strat)
            for s in SHAPES:
                if strat == "sequential" and s[0] == 2:
                    continue
                record(f"{tag} {strat or 'default'}", lambda layer=layer, s=s: layer(**inputs[s])["y"], s)
            n, hist = sass_of(layer.last_launched)
            print(f"   SASS main block {n} instr (unroll 4): {hist}", flush=True)
    J.generate = _orig_generate

    # hand-written N-unrolled sequential kernels
    for pairs in (False, True):
        for prefetch in (False, True):
            for U in (2, 4):
                for bd, nw in ((32, 1), (64, 2)):
                    name = f"unrolledN U{U} pairs={int(pairs)} pf={int(prefetch)} bd{bd}"
                    mod = load_module(unrolled_source(16, U, pairs, prefetch, True), f"k_{U}{int(pairs)}{int(prefetch)}{bd}")
                    last = None
                    for s in SHAPES[:2]:
                        B, L, D, N = s
                        ins = inputs[s]
                        y = torch.empty_like(ins["x"])

                        def fn(ins=ins, y=y, B=B, L=L, D=D, bd=bd, nw=nw, mod=mod):
                            nonlocal last
                            last = mod.kern[(B * triton.cdiv(D, bd),)](
                                ins["x"], ins["dt"], ins["B"], ins["C"], ins["z"], ins["A_log"], ins["D"],
                                ins["dt_bias"], y, L, D, BLOCK_D=bd, num_warps=nw)
                            return y
                        record(name, fn, s)
                    if last is not None:
                        n, hist = sass_of(last)
                        print(f"   SASS main block {n} instr (unroll {U}): {hist}", flush=True)
                        print(f"   regs {last.n_regs} spills {last.n_spills}", flush=True)
    with open(os.path.join(out_dir, "exp_fwd_variants.json"), "w") as f:
        json.dump(dict(device=torch.cuda.get_device_name(), copy_gbs=copy, rows=results), f, indent=1)


if __name__ == "__main__":
    main()
