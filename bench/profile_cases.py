"""Per-kernel GPU time of every candidate of some `ssmc bench` cases (torch.profiler, mean
of 5 calls after 3 warm-up calls), beside each case's do_bench medians (run_case, checked
against ssmc first). Usage: python3 bench/profile_cases.py hgrn mamba2-packed ...
(cases: hgrn, mamba2, mamba2-packed, mamba1-packed; each fwd+bwd). Results: $OUT/profile.json.
Run with bench/profile_cases.sh (installs the peers' wheels)."""

import json
import os
import sys

import torch

from ssmc.benchmark import peers
from ssmc.benchmark import workloads as w
from ssmc.benchmark.measure import Ceilings, kernel_times


def _peer(load):
    try:
        return load()
    except Exception as e:  # noqa: BLE001  (a missing peer is reported as skipped)
        return f"{type(e).__name__}: {e}"


def cases(name: str) -> list[w.Case]:
    if name == "hgrn":
        fla = {"chunk_hgrn": _peer(lambda: peers.fla_op("fla.ops.hgrn", "chunk_hgrn"))}
        return [w.hgrn_case(8, 4096, 2048, True, fla)]
    ssd = _peer(lambda: peers.mamba_triton("mamba_chunk_scan_combined"))
    if name == "mamba2":
        return [w.mamba2_case(8, 2048, 32, 64, 128, True, ssd)]
    if name == "mamba2-packed":
        return [w.packed_case("mamba2", True, ssd=ssd)]
    if name == "mamba1-packed":
        return [w.packed_case("mamba1", True)]
    raise SystemExit(f"unknown case {name}")


def profile(c: w.Candidate, top: int = 16) -> list[tuple[str, float, int]]:
    def call():
        for g in c.grads:  # as do_bench does (grad_to_none): no accumulation into old gradients
            g.grad = None
        c.run()

    rows = kernel_times(call)
    print(f"  {c.impl}: {sum(t for _, t, _ in rows):.0f} us of kernels per call")
    for k, t, n in rows[:top]:
        print(f"     {k[:70]:70s} {t:9.1f} us  ({n} launches)")
    return rows


def main() -> None:
    c = Ceilings.measure()
    print(f"copy {c.copy / 1e9:.0f} GB/s", flush=True)
    out = dict(copy_gbs=c.copy / 1e9, rows=[], profile={})
    for name in sys.argv[1:]:
        for case in cases(name):
            out["rows"] += w.run_case(case)
            for cand in case.candidates:
                if cand.run is not None and not cand.skip:
                    out["profile"][f"{case.workload} {case.shape} {cand.impl}"] = profile(cand)
            torch.cuda.empty_cache()
    json.dump(out, open(os.path.join(os.environ.get("OUT", "."), "profile.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
