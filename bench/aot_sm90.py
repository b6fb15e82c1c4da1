"""Compile ssmc's generated kernels for an H100 (sm_90) on a machine without a GPU, and report
registers, spills and the SASS instruction mix: the compiler's view of a kernel, at no GPU time.

Runs the layer under Triton's interpreter with launches intercepted (so every kernel gets the
arguments the JIT would pass), then compiles each kernel with ``triton.compile`` for sm_90,
specializing its arguments as Triton's JIT would (ints equal to 1 are constants, ints and
pointers divisible by 16 are marked so, except the arguments the kernel does not specialize),
and reads the cubin with the cuobjdump that ships with Triton.

    [DTYPE=float32] [FLOAT32=B,C] python bench/aot_sm90.py '{"strategy": "sequential"}' [B L D N]
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))

import ssmc  # noqa: E402
from ssmc.backends.triton import jit as J  # noqa: E402
from ssmc.backends.triton.codegen import generate  # noqa: E402
from ssmc.ir.printer import graph_hash  # noqa: E402
from ssmc.passes import pipeline_name  # noqa: E402

BIN = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
TY = {torch.bfloat16: "*bf16", torch.float16: "*fp16", torch.float32: "*fp32", torch.int32: "*i32"}


def jit_function(source: str, name: str):
    """``name`` from ``source`` as a JITFunction."""
    import importlib

    d = tempfile.mkdtemp()
    path = os.path.join(d, f"aot_{name}.py")
    open(path, "w").write(source)
    spec = importlib.util.spec_from_file_location(f"aot_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return getattr(mod, name)


def compile_sm90(fn, args: tuple, kwargs: dict, num_warps: int):
    names = fn.arg_names
    no_spec = set(getattr(fn, "do_not_specialize", ()) or ())
    no_spec |= {fn.arg_names[i] if isinstance(i, int) else i for i in no_spec if isinstance(i, int)}
    values = dict(zip(names, args))
    values.update(kwargs)
    signature, constexprs, attrs = {}, {}, {}
    for i, p in enumerate(fn.params):
        v = values[p.name]
        if p.is_constexpr:
            signature[p.name] = "constexpr"
            constexprs[p.name] = v
        elif isinstance(v, torch.Tensor):
            signature[p.name] = TY[v.dtype]
            attrs[(i,)] = [["tt.divisibility", 16]]  # torch allocations are 16-byte aligned
        elif isinstance(v, bool):
            signature[p.name] = "i1"
        elif isinstance(v, int):
            spec = p.name not in no_spec
            if spec and v == 1:
                signature[p.name] = "constexpr"
                constexprs[p.name] = 1
                continue
            signature[p.name] = "i32" if -(2**31) <= v < 2**31 else "i64"
            if spec and v % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
        else:
            raise TypeError(f"{p.name}: {type(v)}")
    src = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs)
    target = GPUTarget("cuda", 90, 32)
    backend = triton.compiler.make_backend(target)
    opts = {"num_warps": num_warps}
    if os.environ.get("MAXNREG"):  # a register cap (ptx .maxnreg): what spills to fit more programs an SM
        opts["maxnreg"] = int(os.environ["MAXNREG"])
    options = backend.parse_options(opts)
    return triton.compile(src, target=target, options=options.__dict__)


def cubin_sass(cubin: bytes) -> tuple[str, str]:
    """(cuobjdump -res-usage, cuobjdump -sass) of a cubin, with the cuobjdump Triton ships."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        run = lambda flag: subprocess.run([os.path.join(BIN, "cuobjdump"), flag, f.name], capture_output=True, text=True).stdout  # noqa: E731
        return run("-res-usage"), run("-sass")


def sass_blocks(sass: str) -> list[list[str]]:
    """The opcodes of each basic block (split at labels and branches)."""
    blocks, cur = [], []
    for line in sass.splitlines():
        if re.match(r"\s*\.L_x_\d+:", line) or "BRA" in line:
            blocks.append(cur)
            cur = []
        mm = re.search(r"/\*[0-9a-f]{4}\*/\s+(@!?U?P\d\s+)?([A-Z][A-Z0-9_.]+)", line)
        if mm:
            cur.append(mm.group(2).split(".")[0])
    blocks.append(cur)
    return blocks


def sass_loops(sass: str) -> list[tuple[int, int, Counter]]:
    """Each loop of the SASS (a branch back to a lower address): (start, end, its opcodes
    counted), inner loops first. Where a kernel's loops nest (the backward's span loop holding
    phase A0's and phase B's loops), the per-loop counts say what a step costs; the basic block
    with the most MUFU (``report``'s "loop block") may be the prologue's prefetch instead."""
    ins = []
    for line in sass.splitlines():
        mm = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?);", line)
        if mm:
            ins.append((int(mm.group(1), 16), mm.group(2)))
    loops = []
    for addr, text in ins:
        target = re.search(r"BRA\s.*?0x([0-9a-f]+)", text)
        if target and int(target.group(1), 16) < addr:
            lo = int(target.group(1), 16)
            ops = Counter(t.split()[1 if t.startswith("@") else 0].split(".")[0] for a, t in ins if lo <= a <= addr)
            loops.append((lo, addr, ops))
    return sorted(loops, key=lambda x: x[1] - x[0])


def report(k) -> tuple[str, str]:
    res, sass = cubin_sass(k.asm["cubin"])
    m = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", res)
    loop = max(sass_blocks(sass), key=lambda b: b.count("MUFU"))  # the time loop: where the exponentials are
    regs = f"regs {m.group(1)} stack {m.group(2)} local {m.group(4)}" if m else res.strip()
    loops = "; ".join(f"loop {lo:#x}-{hi:#x} {sum(ops.values())} instructions ({ops['MUFU']} MUFU, {ops['SHFL']} SHFL, "
                      f"{ops['FSEL']} FSEL, {ops['BAR']} BAR, {ops['LDL'] + ops['STL']} LDL/STL)" for lo, hi, ops in sass_loops(sass))
    return f"{regs}; loop block {len(loop)} instructions: {Counter(loop).most_common(14)}; {loops}", sass


def main() -> None:
    from mamba1 import mamba1

    cfg = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    B, L, D, N = (int(x) for x in sys.argv[2:6]) if len(sys.argv) > 5 else (1, 64, 5120, 16)
    dt = getattr(torch, os.environ.get("DTYPE", "bfloat16"))
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    ins = {"x": r(B, L, D).to(dt), "dt": r(B, L, D).to(dt), "B": r(B, L, N).to(dt),
           "C": r(B, L, N).to(dt), "z": r(B, L, D).to(dt),
           "A_log": torch.log(torch.arange(1, N + 1).float()).repeat(D, 1), "D": torch.ones(D),
           "dt_bias": torch.rand(D, generator=g) * 4 - 6}
    for k in filter(None, os.environ.get("FLOAT32", "").split(",")):  # these inputs in float32
        ins[k] = ins[k].float()
    c = ssmc.compile(mamba1, **cfg)
    launches = []

    class Capture:
        def __init__(self, kernel):
            self.kernel = kernel

        def __getitem__(self, grid):
            def launch(*args, num_warps=1, **kwargs):
                launches.append((self.kernel, args, kwargs, num_warps))
            return launch

    J.CompiledLayer._fn = lambda self, kernel: Capture(kernel)
    from ssmc.backends.triton import runtime

    runtime.chunk_combine = Capture(type("K", (), {"name": "_combine"})())
    os.environ["TRITON_INTERPRET"] = "1"  # lets the JIT run its launches on the CPU (captured)
    try:
        c.raw_call(**ins)
    finally:
        os.environ["TRITON_INTERPRET"] = "0"
    out = os.environ.get("OUT", "/tmp")
    for kernel, args, kwargs, nw in launches:
        if kernel.name.startswith("_"):
            continue
        src = generate(kernel, graph_hash(c.graph), pipeline_name(c.passes), J.versions())
        fn = jit_function(src, kernel.name)
        k = compile_sm90(fn, args, kwargs, nw)
        line, sass = report(k)
        print(f"{kernel.name} {cfg}: {line}", flush=True)
        open(os.path.join(out, f"{kernel.name}.sass"), "w").write(sass)


if __name__ == "__main__":
    main()
