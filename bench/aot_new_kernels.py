"""Session 12's kernels compiled for an H100 (sm_90) on a machine without a GPU
(bench/aot_sm90.py's method: the call runs under Triton's interpreter with launches captured,
then each kernel is compiled with ``triton.compile`` and its cubin read with the cuobjdump that
ships with Triton): whether Triton 3.6.0 compiles them, and their registers and spills. The
schedules are the CPU's (the call runs on the CPU), so block sizes may differ from a GPU's.

    python bench/aot_new_kernels.py [case ...]   (cases: held_bidir, held_bidir_u1, tensor_bidir,
    lru, lru_backward, bimamba_bidir, bimamba_backward, mamba2_backward, mamba2_backward_exact,
    mamba2_backward_sums, mamba2_backward_rest_u2, mamba2_backward_rest_u1, mamba2_rest_tiles, ...;
    TIME_TILE, REST_WARPS for mamba2_rest_tiles)
"""

from __future__ import annotations

import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "examples"))

from aot_sm90 import compile_sm90, jit_function, report  # noqa: E402

import ssmc  # noqa: E402
from ssmc.backends.triton import jit as J  # noqa: E402
from ssmc.backends.triton import runtime  # noqa: E402
from ssmc.backends.triton.codegen import generate  # noqa: E402
from ssmc.ir.printer import graph_hash  # noqa: E402
from ssmc.passes import pipeline_name  # noqa: E402


def mamba1_inputs(B, L, D, N, grad: bool):
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g).to(torch.bfloat16)  # noqa: E731
    ins = {"x": r(B, L, D), "dt": r(B, L, D), "B": r(B, L, N), "C": r(B, L, N), "z": r(B, L, D),
           "A_log": torch.log(torch.arange(1, N + 1).float()).repeat(D, 1), "D": torch.ones(D),
           "dt_bias": torch.rand(D, generator=g) * 4 - 6}
    if grad:
        ins["grad_y"] = r(B, L, D)
    return ins


def cases():
    from bimamba import bimamba
    from hgrn import hgrn
    from lru import lru
    from mamba1 import mamba1
    from mamba2 import mamba2

    from ssmc.backends.triton.backward import CompiledBackward, MatrixBackward, backward_for

    def bimamba_ins(B=1, L=64, D=256, N=16):
        g = torch.Generator().manual_seed(1)
        r = lambda *s: torch.randn(*s, generator=g).to(torch.bfloat16)  # noqa: E731
        ins = {"x": r(B, L, D), "dt": r(B, L, D), "B": r(B, L, N), "C": r(B, L, N), "z": r(B, L, D)}
        ins.update({k: torch.tensor(v, dtype=torch.float32) for k, v in bimamba.init_params(dict(D=D, N=N), 0).items()})
        return ins

    def lru_ins(grad: bool, B=1, L=64, D=256):
        g = torch.Generator().manual_seed(2)
        ins = {"bu": torch.randn(B, L, D, 2, generator=g).to(torch.bfloat16)}
        ins.update({k: torch.tensor(v, dtype=torch.float32) for k, v in lru.init_params(dict(D=D), 0).items()})
        if grad:
            ins["grad_y"] = torch.randn(B, L, D, 2, generator=g).to(torch.bfloat16)
        return ins

    return {
        "held_bidir": lambda: (CompiledBackward(mamba1, held_bidir=True), mamba1_inputs(1, 256, 512, 16, True)),
        "held_bidir_u1": lambda: (CompiledBackward(mamba1, held_bidir=True, unroll=1), mamba1_inputs(1, 256, 512, 16, True)),
        "tensor_bidir": lambda: (CompiledBackward(mamba1), mamba1_inputs(1, 256, 512, 16, True)),
        # session 23: Mamba-1's backward at the GPU's schedules (its main kernel's registers say
        # how many warps an SM holds)
        # (MAMBA1_BWD: a JSON dict of CompiledBackward options, e.g. '{"block": 8}')
        "mamba1_backward": lambda: (CompiledBackward(mamba1, **json.loads(os.environ.get("MAMBA1_BWD", "{}"))),
                                    mamba1_inputs(1, 256, 512, 16, True)),
        "lru": lambda: (ssmc.compile(lru), lru_ins(False)),
        "lru_backward": lambda: (CompiledBackward(lru), lru_ins(True)),
        "bimamba_bidir": lambda: (ssmc.compile(bimamba, strategy="bidir").bidir_forward(), bimamba_ins()),
        "bimamba_backward": lambda: (backward_for(bimamba), {**bimamba_ins(), "grad_y": torch.randn(1, 64, 256).to(torch.bfloat16)}),
        # session 15: Mamba-2's matrix backward with the decay gradient's kernel, the GPU's
        # schedules (GPU_SCHEDULES below)
        "mamba2_backward": lambda: (MatrixBackward(mamba2), mamba2_ins()),
        # session 18: float32-accurate products everywhere (low_precision=False), which ran out
        # of shared memory on the H100 at P 64 N 128
        "mamba2_backward_exact": lambda: (MatrixBackward(mamba2, low_precision=False), mamba2_ins()),
        # session 19: the decay gradient with two sums per step from the dq and dk kernels
        "mamba2_backward_sums": lambda: (MatrixBackward(mamba2, dl_from_sums=True), mamba2_ins()),
        # the rest's steps per unrolled iteration (its spills at 4: 144 bytes of stack)
        "mamba2_backward_rest_u2": lambda: (_rest_unroll(MatrixBackward(mamba2), 2), mamba2_ins()),
        "mamba2_backward_rest_u1": lambda: (_rest_unroll(MatrixBackward(mamba2), 1), mamba2_ins()),
        # session 20: the forward's states kernel with float32-accurate products (three bf16
        # products a tile, the default) and with one bf16 product (no float32 result asked)
        "mamba2_forward": lambda: (ssmc.compile(mamba2), _no_grad(mamba2_ins())),
        "mamba2_forward_low": lambda: (_low_states(ssmc.compile(mamba2)), _no_grad(mamba2_ins())),
        # session 20: HGRN's backward (one state element a channel) at the GPU's schedules: its
        # registers say how many programs an SM holds (schedule.chunking assumes 8 warps)
        "hgrn_backward": lambda: (CompiledBackward(hgrn), _hgrn_ins()),
        # session 21: the rest in time tiles (Kernel.time_tile): [BLOCK_T, P, 2 heads] values,
        # BLOCK_T from the environment (TIME_TILE, default schedule.TIME_TILE), 4 warps
        "mamba2_rest_tiles": lambda: (_rest_tiles(MatrixBackward(mamba2, rest_time_tiles=True)), mamba2_ins()),
        # y alone asked for: the states kernel's two bf16 products a tile (the default then)
        "mamba2_forward_y": lambda: (ssmc.compile(mamba2), {**_no_grad(mamba2_ins()), "outputs": ["y"]}),
    }


def _hgrn_ins(B=1, L=256, D=2048):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(B, L, D, generator=g).to(torch.bfloat16)
    gate = torch.nn.functional.logsigmoid(torch.randn(B, L, D, generator=g)).to(torch.bfloat16)
    return {"x": x, "g": gate, "grad_y": torch.randn(B, L, D, generator=g).to(torch.bfloat16)}


def _no_grad(ins):
    ins.pop("grad_y")
    return ins


def _low_states(c):
    c.matrix_exact = lambda group, shape=None: False  # 16-bit products in the states kernel too
    return c


def _rest_unroll(c, unroll: int):
    c.rest.bidir_unroll = unroll  # before the first call: its kernels are lowered then
    return c


def _rest_tiles(c):
    from ssmc.backends.triton import schedule

    schedule.TIME_TILE = int(os.environ.get("TIME_TILE", schedule.TIME_TILE))
    if os.environ.get("REST_WARPS"):
        c.rest.options["num_warps"] = int(os.environ["REST_WARPS"])
    return c


def mamba2_ins(B=1, L=128, G=1):
    R, P, N = (int(os.environ.get(k, v)) for k, v in (("R", 4), ("P", 64), ("N", 128)))  # sizes from the environment
    from mamba2 import mamba2

    g = torch.Generator().manual_seed(3)
    r = lambda *s: torch.randn(*s, generator=g).to(torch.bfloat16)  # noqa: E731
    ins = {"x": r(B, L, G, R, P), "dt": r(B, L, G, R), "B": r(B, L, G, N), "C": r(B, L, G, N), "z": r(B, L, G, R, P),
           "grad_y": r(B, L, G, R, P)}
    ins.update({k: torch.tensor(v, dtype=torch.float32) for k, v in mamba2.init_params(dict(G=G, R=R), 0).items()})
    return ins


GPU_SCHEDULES = ("mamba2_backward", "mamba2_backward_exact", "mamba2_backward_sums", "mamba2_backward_rest_u2",
                 "mamba2_backward_rest_u1", "mamba2_forward", "mamba2_forward_low",
                 "mamba2_forward_y", "hgrn_backward", "mamba2_rest_tiles", "mamba1_backward")  # cases whose launches take the GPU's schedules (block sizes, PREC)


def main() -> None:
    table = cases()
    names = sys.argv[1:] or list(table)
    launches = []

    class Capture:
        def __init__(self, kernel, owner=None):
            self.kernel, self.owner = kernel, owner

        def __getitem__(self, grid):
            def launch(*args, num_warps=1, **kwargs):
                launches.append((self.owner, self.kernel, args, kwargs, num_warps))
            return launch

    def fn_of(self, kernel):
        return Capture(kernel, self)

    J.CompiledLayer._fn = fn_of
    for name in ("chunk_combine", "chunk_combine_complex"):
        setattr(runtime, name, Capture(type("K", (), {"name": "_" + name})()))
    from ssmc.backends.triton import run as R

    plain_init = R.Run.__init__
    for name in names:
        compiled, ins = table[name]()
        launches.clear()
        gpu = name in GPU_SCHEDULES

        def init(self, *a, gpu=gpu, **kw):  # (c, sizes, tensors, in_dtype, out_dtype, device, on_gpu, varlen)
            plain_init(self, *a, **kw)
            self.on_gpu = self.on_gpu or gpu

        R.Run.__init__ = init
        os.environ["TRITON_INTERPRET"] = "1"  # lets the JIT run its launches on the CPU (captured)
        try:
            compiled.raw_call(**ins)
        finally:
            os.environ["TRITON_INTERPRET"] = "0"
        seen = set()
        for owner, kernel, args, kwargs, nw in launches:
            if kernel.name.startswith("_") or kernel.name in seen:
                continue
            seen.add(kernel.name)
            src = generate(kernel, graph_hash(owner.graph), pipeline_name(owner.passes), J.versions())
            try:
                k = compile_sm90(jit_function(src, kernel.name), args, kwargs, nw)
                summary, sass = report(k)
                line = f"shared {k.metadata.shared} B; " + summary
                if os.environ.get("SASS_DIR"):  # the whole SASS, a file per case and kernel
                    with open(os.path.join(os.environ["SASS_DIR"], f"{name}.{kernel.name}.sass"), "w") as f:
                        f.write(sass)
                    with open(os.path.join(os.environ["SASS_DIR"], f"{name}.{kernel.name}.ttgir"), "w") as f:
                        f.write(k.asm["ttgir"])  # its layouts (which values a thread holds)
            except Exception as e:  # noqa: BLE001  (a kernel Triton refuses: reported)
                line = f"FAILED to compile: {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
            print(f"{name}: {kernel.name} (num_warps {nw}): {line}", flush=True)


if __name__ == "__main__":
    main()
