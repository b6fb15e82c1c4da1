"""Packed batches (issue 9) in one run: 64 sequences of 64..4096 steps, Mamba-1 and Mamba-2,
forward and forward+backward; ssmc packed (sequences longest first, and in the caller's order),
padded to the longest, and mamba-ssm's mamba_chunk_scan_combined (seq_idx) for Mamba-2. Then
per-kernel times of the packed forward+backward (torch.profiler), and, with --also, HGRN and
Mamba-2 forward and forward+backward against their peers (issue 6; Mamba-2 at DESIGN.md's two
shapes); --no-packed: those alone; ALSO_PASS=fwd or fwd+bwd: that pass alone. Results: $OUT/packed.json.
Run with bench/packed_gpu.sh (installs the peers' wheels)."""

import json
import os
import sys

import torch

import ssmc.backends.triton.binding as binding
from ssmc.benchmark import peers
from ssmc.benchmark import workloads as w
from ssmc.benchmark.measure import Ceilings, kernel_times


def in_callers_order(c: w.Candidate) -> w.Candidate:
    """``c`` with the sequences taken in the caller's order (binding.LONGEST_FIRST off)."""

    def off(fn):
        def call():
            binding.LONGEST_FIRST = False
            try:
                return fn()
            finally:
                binding.LONGEST_FIRST = True

        return call

    return w.Candidate("ssmc, sequences in the caller's order", run=off(c.run), outputs=off(c.outputs), grads=c.grads)


def profile(name: str) -> list[tuple[str, float, int]]:
    """Per-kernel GPU time (us per call, mean of 5) of ssmc's packed forward+backward."""
    case = w.packed_case(name, True)
    step = case.candidates[0]
    rows = kernel_times(step.outputs)
    print(f"{name} packed fwd+bwd: {sum(t for _, t, _ in rows):.0f} us of kernels per call")
    for k, t, n in rows[:14]:
        print(f"   {k[:60]:60s} {t:9.1f} us  ({n} launches)")
    return rows


def main() -> None:
    c = Ceilings.measure()
    lens = w.packed_lengths()
    print(f"copy {c.copy / 1e9:.0f} GB/s; {len(lens)} sequences, {sum(lens)} tokens, longest {max(lens)}: "
          f"padded holds {len(lens) * max(lens) / sum(lens):.2f}x the tokens", flush=True)
    ssd = _peer(lambda: peers.mamba_triton("mamba_chunk_scan_combined"))
    out = dict(copy_gbs=c.copy / 1e9, tokens=sum(lens), longest=max(lens), rows=[], profile={})
    packed = ("mamba1", "mamba2") if "--no-packed" not in sys.argv else ()
    for name in packed:
        for backward in (False, True):
            case = w.packed_case(name, backward, ssd=ssd)
            case.candidates.insert(1, in_callers_order(case.candidates[0]))
            out["rows"] += w.run_case(case)
            torch.cuda.empty_cache()
    for name in packed:
        out["profile"][name] = profile(name)
        torch.cuda.empty_cache()
    if "--also" in sys.argv:
        fla = {n: _peer(lambda n=n: peers.fla_op("fla.ops.hgrn", n)) for n in ("chunk_hgrn",)}
        passes = {"fwd": (False,), "fwd+bwd": (True,)}.get(os.environ.get("ALSO_PASS", ""), (False, True))  # (one call's time)
        for backward in passes:
            out["rows"] += w.run_case(w.hgrn_case(8, 4096, 2048, backward, fla))
            out["rows"] += w.run_case(w.mamba2_case(8, 2048, 32, 64, 128, backward, ssd))
            out["rows"] += w.run_case(w.mamba2_case(4, 8192, 80, 64, 128, backward, ssd))  # DESIGN.md's second shape
    json.dump(out, open(os.path.join(os.environ.get("OUT", "."), "packed.json"), "w"), indent=1)


def _peer(load):
    try:
        return load()
    except Exception as e:  # noqa: BLE001  (a missing peer is reported as skipped)
        return f"{type(e).__name__}: {e}"


if __name__ == "__main__":
    main()
