"""HGRN's forward+backward (B8 L4096 D2048 bf16, issue 6) with its backward's main kernel split
into 1, 2, 4, 8, 16 and 32 chunks of the sequence, against fla's chunk_hgrn in the same run.
Why: `schedule.chunking` splits a backward's main kernel where its last wave of programs would
leave the GPU idle, with a wave taken as 8 warps an SM (Mamba-1's kernel, ~240 registers);
HGRN's kernel (one state element a channel, 1024 programs of one warp) holds far fewer
registers, so a wave is larger and the rule's 0.97 of a wave (1 chunk) may be a quarter of one.
Session 11 measured its backward at 1.42 ms unsplit and 1.33 at 16 chunks. Each variant is
checked by run_case (ssmc against the interpreter at a small size, fla against ssmc), then
timed, and its kernels listed (torch.profiler).

    sh bench/hgrn_chunks_gpu.sh          (results: $OUT/hgrn_chunks.json)
"""

from __future__ import annotations

import json
import os
import sys

import torch

sys.path[:0] = ["bench"]
from profile_cases import _peer  # noqa: E402

from ssmc.benchmark import peers  # noqa: E402
from ssmc.benchmark import workloads as w  # noqa: E402
from ssmc.benchmark.measure import Ceilings, kernel_times  # noqa: E402


def main() -> None:
    c = Ceilings.measure()
    print(f"{torch.cuda.get_device_name()}  copy {c.copy / 1e9:.0f} GB/s", flush=True)
    out = dict(device=torch.cuda.get_device_name(), copy_gbs=c.copy / 1e9, rows=[], kernels={})
    path = os.path.join(os.environ.get("OUT", "."), "hgrn_chunks.json")
    fla = {"chunk_hgrn": _peer(lambda: peers.fla_op("fla.ops.hgrn", "chunk_hgrn"))}
    layer = w._compiled("hgrn")
    for i, chunks in enumerate((None, 1, 2, 4, 8, 16, 32)):
        bwd = layer.backward_compiled()
        bwd.chunks = chunks  # None: schedule.chunking's choice
        bwd._recipes.clear()  # recorded launches of the last variant's chunks
        case = w.hgrn_case(8, 4096, 2048, True, fla)
        if i:  # the peer once
            case.candidates[:] = [x for x in case.candidates if x.impl == "ssmc"]
        for r in w.run_case(case):
            out["rows"].append(dict(r, chunks=chunks))
        cand = case.candidates[0]

        def call(cand=cand):
            for g in cand.grads:
                g.grad = None
            cand.run()
        out["kernels"][str(chunks)] = [(k, t) for k, t, _ in kernel_times(call)[:6]]
        print(f"  chunks {chunks}: " + ", ".join(f"{k[:32]} {t:.0f}" for k, t in out["kernels"][str(chunks)]), flush=True)
        json.dump(out, open(path, "w"), indent=1)


if __name__ == "__main__":
    main()
