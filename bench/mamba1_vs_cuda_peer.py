"""Mamba-1's forward (and forward+backward with --backward) at the three benchmark shapes,
against mamba-ssm's CUDA selective scan built from its sources in the same run, with the
device's copy rate: `ssmc bench`'s Mamba-1 rows alone. Run through bench/run_gpu.sh's set-up:

    SSMC_MAMBA_CSRC=$PWD/.peers/selective_scan python3 bench/mamba1_vs_cuda_peer.py [--backward]"""

import sys

import torch

from ssmc.benchmark import MAMBA1_SHAPES, peers
from ssmc.benchmark import workloads as w
from ssmc.benchmark.measure import Ceilings

backward = "--backward" in sys.argv
build = peers.start_selective_scan_build()
ceil = Ceilings.measure()
print(f"device {torch.cuda.get_device_name()}; copy {ceil.copy / 1e9:.0f} GB/s (read+write)", flush=True)
scan = peers.selective_scan_fn(build)
for s in MAMBA1_SHAPES:
    for b in ((False, True) if backward else (False,)):
        case = w.mamba1_case(*s, backward=b, scan_fn=scan, loop=False)
        rows = w.run_case(case)
        got = {r["impl"]: r["ms"] for r in rows if r["ms"] is not None}
        mine = got.get("ssmc")
        peer = next((v for k, v in got.items() if "CUDA" in k), None)
        B, L, D, N = s
        moved = (4 * B * L * D + 2 * B * L * N) * 2 + B * D * N * 4 + 3 * D * N * 4  # sweep_mamba1.bytes_moved
        if mine and not b:
            print(f"B{B} L{L} D{D}: ssmc {mine:.3f} ms = {moved / (mine * 1e-3) / ceil.copy:.3f} of copy; "
                  f"mamba-ssm CUDA {peer:.3f} ms = {moved / (peer * 1e-3) / ceil.copy:.3f}; peer / ssmc {peer / mine:.2f}", flush=True)
        elif mine and peer:
            print(f"B{B} L{L} D{D} fwd+bwd: ssmc {mine:.3f} ms, mamba-ssm CUDA {peer:.3f} ms, peer / ssmc {peer / mine:.2f}", flush=True)
