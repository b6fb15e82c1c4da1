"""``ssmc bench``: ssmc and the libraries people would otherwise use, side by side in one run on
one GPU, each result as a fraction of its floor and as a speed ratio to each peer.

    ssmc bench --out DIR            # JSON, markdown table and PNG plot in DIR
    ssmc bench --quick              # one shape per workload (a smoke run)

Peers are used where they can be imported (see ``peers``); mamba-ssm's CUDA scan is built when
``SSMC_MAMBA_CSRC`` names its sources. The whole run fits in one 10-minute call on an H100."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAMBA1_SHAPES = [(8, 2048, 2048, 16), (8, 4096, 5120, 16), (2, 8192, 2048, 16)]
MAMBA1_LENGTHS = [512, 1024, 2048, 4096, 8192]  # the plot: B8 D2048 N16
MAMBA2_SHAPES = [(8, 2048, 32, 64, 128), (4, 8192, 80, 64, 128)]
DECODE_SHAPES = [(64, 5120, 16), (256, 2048, 16)]
HGRN_SHAPES = [(8, 4096, 2048)]
GLA_SHAPES = [(8, 2048, 16, 128, 128)]

_COMPILE_SCRIPT = """
import sys, time
t0 = time.perf_counter()
import torch, ssmc
sys.path.insert(0, {examples!r})
from mamba1 import mamba1
t1 = time.perf_counter()
f = ssmc.compile(mamba1)
ins = {{k: torch.randn(*s, device="cuda", dtype=torch.bfloat16) for k, s in
       dict(x=(2, 256, 64), dt=(2, 256, 64), B=(2, 256, 16), C=(2, 256, 16), z=(2, 256, 64)).items()}}
ins.update(A_log=torch.zeros(64, 16, device="cuda"), D=torch.ones(64, device="cuda"), dt_bias=torch.zeros(64, device="cuda"))
f.raw_call(**ins); torch.cuda.synchronize()
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def compile_times(examples: Path) -> list[dict]:
    """Mamba-1's first call (generate, Triton-compile, run) in a new process with empty caches
    (cold), then in another new process on the caches the first filled (warm)."""
    rows = []
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, SSMC_CACHE_DIR=os.path.join(d, "ssmc"), TRITON_CACHE_DIR=os.path.join(d, "triton"))
        for how in ("cold (empty caches)", "warm (cache hit, new process)"):
            r = subprocess.run([sys.executable, "-c", _COMPILE_SCRIPT.format(examples=str(examples))], env=env,
                               capture_output=True, text=True, timeout=600)
            if r.returncode != 0:
                rows.append(dict(workload="compile time", shape="mamba1, first call", impl=f"ssmc {how}", ms=None,
                                 status="error: " + r.stderr.strip().splitlines()[-1][:300]))
                continue
            imports, first = (float(v) for v in r.stdout.split())
            rows.append(dict(workload="compile time", shape="mamba1, first call", impl=f"ssmc {how}", ms=first * 1e3,
                             status="ok", import_s=imports))
            print(f"  compile time {how}: first call {first:.2f} s (imports {imports:.2f} s)", flush=True)
    return rows


def _peer(get):
    from ssmc.benchmark.peers import Unavailable

    try:
        return get()
    except Unavailable as e:
        return str(e)


def run(out: Path, quick: bool = False) -> dict:
    import torch
    import triton

    from ssmc.benchmark import peers, report
    from ssmc.benchmark import workloads as w
    from ssmc.benchmark.measure import Ceilings
    from ssmc.export.blocks import EXAMPLES

    if not torch.cuda.is_available():
        raise SystemExit("ssmc bench: no CUDA GPU here; it measures kernels on a GPU")
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    build = peers.start_selective_scan_build()  # overlaps the set-up below
    print(f"device {torch.cuda.get_device_name()}; torch {torch.__version__}; triton {triton.__version__}", flush=True)
    torch.manual_seed(0)
    ceil = Ceilings.measure()
    print(f"ceilings: copy {ceil.copy / 1e9:.0f} GB/s (read+write), exp2 {ceil.exp2 / 1e12:.2f} T/s, "
          f"bf16 matmul {ceil.matmul / 1e12:.0f} TFLOP/s", flush=True)
    checks = {name: w.check_ssmc_small(name) for name in ("mamba1", "hgrn", "mamba2")}
    for name, bad in checks.items():
        print(f"ssmc {name} against the interpreter (B2 L77, bf16): " + ("ok" if not bad else "MISMATCH " + bad), flush=True)
    ssu = _peer(lambda: peers.mamba_triton("selective_state_update"))
    ssd = _peer(lambda: peers.mamba_triton("mamba_chunk_scan_combined"))
    fla = {n: _peer(lambda n=n: peers.fla_op("fla.ops.hgrn", n)) for n in ("chunk_hgrn", "fused_recurrent_hgrn")}
    gla = _peer(lambda: peers.fla_op("fla.ops.simple_gla", "chunk_simple_gla"))
    # the Triton peers first, while mamba-ssm's CUDA scan builds (on 4 fewer cores than the
    # machine has); the host-bound and CUDA-peer workloads after the build
    during = [lambda s=s, b=b: w.hgrn_case(*s, backward=b, fla=fla) for s in HGRN_SHAPES for b in (False, True)]
    during += [lambda s=s, b=b: w.mamba2_case(*s, backward=b, ssd=ssd)
               for s in (MAMBA2_SHAPES[:1] if quick else MAMBA2_SHAPES) for b in (False, True)]
    during += [lambda s=s: w.gla_case(*s, gla=gla) for s in GLA_SHAPES]
    # packed batches of 64 sequences, 64..4096 steps (issue 9): against padding and mamba-ssm's seq_idx
    during += [lambda n=n, b=b: w.packed_case(n, b, ssd=ssd) for n in ("mamba2", "mamba1") for b in (False, True)]
    m1 = MAMBA1_SHAPES[:1] if quick else MAMBA1_SHAPES
    after = [lambda s=s: w.mamba1_case(*s, backward=False, scan_fn=scan, loop=(s == MAMBA1_SHAPES[0])) for s in m1]
    after += [lambda s=s: w.mamba1_case(*s, backward=True, scan_fn=scan, loop=False) for s in m1]
    if not quick:
        after += [lambda n=n: w.mamba1_case(8, n, 2048, 16, backward=False, scan_fn=scan, loop=False)
                  for n in MAMBA1_LENGTHS if n != 2048]
    after += [lambda s=s: w.decode_case(*s, update_fn=ssu) for s in (DECODE_SHAPES[:1] if quick else DECODE_SHAPES)]
    result = dict(
        device=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
        python=platform.python_version(), date=datetime.date.today().isoformat(),
        ceilings=dict(copy_gbs=ceil.copy / 1e9, exp2_per_s=ceil.exp2, matmul_tflops=ceil.matmul / 1e12),
        ssmc_checks=checks, rows=[], seconds=0.0,
    )
    rows = result["rows"]

    def save() -> None:  # after every case: a run cut short still leaves what it measured
        result["seconds"] = time.time() - t_start
        (out / "bench.json").write_text(json.dumps(result, indent=1))

    def measure(makers, note: str = "") -> None:
        for make in makers:
            t0 = time.time()
            case = make()
            for r in w.run_case(case):
                r.update(case_s=round(time.time() - t0, 1), floor_ms=case.floor.ms(ceil),
                         floor_terms_ms=case.floor.terms_ms(ceil), floor_note=case.floor.note, during=note)
                rows.append(r)
            print(f"  ({time.time() - t0:.0f} s)", flush=True)
            del case
            torch.cuda.empty_cache()
            save()

    measure(during, "while the CUDA peer built" if build is not None else "")
    if build is None:
        scan = _peer(lambda: peers.selective_scan_fn(None))
    else:
        print("waiting for mamba-ssm's CUDA selective scan to build ...", flush=True)
        t0 = time.time()
        scan = _peer(lambda: peers.selective_scan_fn(build))
        print(f"  built/loaded after {time.time() - t0:.0f} s more" + (f": {scan}" if isinstance(scan, str) else ""), flush=True)
    measure(after)
    rows += compile_times(EXAMPLES)
    save()
    table = report.markdown(result)
    (out / "bench.md").write_text(table)
    plot = report.plot(result, out / "bench.png")
    print("\n" + table, flush=True)
    print(f"wrote {out / 'bench.json'}, {out / 'bench.md'}" + (f", {plot}" if plot else "") + f" in {result['seconds']:.0f} s")
    return result
