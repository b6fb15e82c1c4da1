"""The tile-alignment hint (``Kernel.aligned_bases``, session 22) on and off in one run, on a GPU:
each case's ssmc candidate timed with every ALIGNED bit clear (``run.ALIGN_BASES = False``: the
kernels as before, the default for now) and with the hint, a fresh compiled layer each (no
replayed launch keeps the other's flag); the two outputs compared (vector loads change no
arithmetic; a backward's atomics add in any order). Mamba-1 forward at
issue 3's shapes, Mamba-1 / HGRN / Mamba-2 forward+backward at the issues' shapes. Results:
$OUT/aligned_ab.json. Usage: python3 bench/aligned_ab_gpu.py [case ...]"""

import json
import os
import sys

import torch

from ssmc.backends.triton import run as R
from ssmc.benchmark import workloads as w
from ssmc.benchmark.measure import Ceilings

CASES = {
    "mamba1 fwd B8 L2048": lambda: w.mamba1_case(8, 2048, 2048, 16, False, "-", False),
    "mamba1 fwd B8 L4096 D5120": lambda: w.mamba1_case(8, 4096, 5120, 16, False, "-", False),
    "mamba1 fwd B2 L8192": lambda: w.mamba1_case(2, 8192, 2048, 16, False, "-", False),
    "mamba1 fwd+bwd B8 L2048": lambda: w.mamba1_case(8, 2048, 2048, 16, True, "-", False),
    "hgrn fwd+bwd B8 L4096": lambda: w.hgrn_case(8, 4096, 2048, True, {}),
    "mamba2 fwd+bwd B8 L2048": lambda: w.mamba2_case(8, 2048, 32, 64, 128, True, "-"),
}


def main() -> None:
    c = Ceilings.measure()
    print(f"{torch.cuda.get_device_name()}  copy {c.copy / 1e9:.0f} GB/s", flush=True)
    out = dict(device=torch.cuda.get_device_name(), copy_gbs=c.copy / 1e9, rows=[])
    default = R.ALIGN_BASES
    for name in sys.argv[1:] or list(CASES):
        got = {}
        for align in (False, True):
            R.ALIGN_BASES = align
            w._COMPILED.clear()
            torch.manual_seed(0)
            case = CASES[name]()
            case.candidates[:] = [x for x in case.candidates if x.impl == "ssmc"]
            rows = w.run_case(case)
            cand = case.candidates[0]
            got[align] = [t.detach().float().clone() for t in cand.outputs()] if cand.outputs else []
            out["rows"].append(dict(rows[0], case=name, aligned=align))
            torch.cuda.empty_cache()
        diff = max(((a - b).abs().max().item() for a, b in zip(got[False], got[True])), default=float("nan"))
        ms = [r["ms"] for r in out["rows"][-2:]]
        ratio = ms[0] / ms[1] if all(ms) else float("nan")
        print(f"{name:28s} off {ms[0]} ms  on {ms[1]} ms  off/on {ratio:.3f}  outputs differ by {diff:.1e}", flush=True)
        out["rows"][-1]["off_over_on"], out["rows"][-1]["max_diff"] = ratio, diff
        json.dump(out, open(os.path.join(os.environ.get("OUT", "."), "aligned_ab.json"), "w"), indent=1)
    R.ALIGN_BASES = default


if __name__ == "__main__":
    main()
