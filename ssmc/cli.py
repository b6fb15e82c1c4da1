"""The ``ssmc`` command line.

  ssmc show FILE.py:LAYER [--stage ir|passes|kernel] [--strategy S]
  ssmc run  FILE.py:LAYER [--sizes B=2,L=37] [--check] [--dtype f32|bf16|f16] [--seed N]
  ssmc fuzz FILE.py:LAYER [--examples N] [--seed S] [--shrink-seconds T]
  ssmc warmup FILE.py:LAYER [--dtype bf16 ...] [--sizes B=8,L=2048 ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from ssmc.errors import SsmcError

DEFAULT_SIZES = {"B": 2, "L": 37}
OTHER_SIZE = 13  # any dim not named above: small, and not a power of two


def load_layer(target: str):
    from ssmc.dsl.layer import Layer

    path, _, name = target.partition(":")
    p = Path(path)
    if not p.exists():
        raise SsmcError(f"no such file: {path}")
    spec = importlib.util.spec_from_file_location(f"ssmc_user_{p.stem}", p)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(p.parent.resolve()))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.pop(0)
    layers = {k: v for k, v in vars(module).items() if isinstance(v, Layer)}
    if not name:
        if len(layers) == 1:
            return next(iter(layers.values()))
        raise SsmcError(f"{path} defines layers {sorted(layers)}: name one as {path}:NAME")
    if name not in layers:
        raise SsmcError(f"{path} has no layer {name!r}; it defines {sorted(layers) or 'none'}")
    return layers[name]


def parse_sizes(layer, text: str | None) -> dict[str, int]:
    sizes = {d: DEFAULT_SIZES.get(d, OTHER_SIZE) for d in layer.dim_order}
    sizes.update(layer.fixed_sizes)
    if text:
        for item in text.split(","):
            k, _, v = item.partition("=")
            if k.strip() not in sizes:
                raise SsmcError(f"{layer.name} has no dim {k.strip()!r}; its dims are {list(layer.dim_order)}")
            sizes[k.strip()] = int(v)
    return sizes


def _gpu_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def cmd_show(args) -> int:
    layer = load_layer(args.target)
    if args.stage == "ir":
        print(layer.show(), end="")
        return 0
    if args.stage == "passes":
        from ssmc.passes import run_passes

        trace: list = []
        run_passes(layer.graph, verify_each=True, trace=trace)
        for step in trace:
            print(f"=== after {step.name} ===")
            print(step.after, end="")
        return 0
    _prepare_triton()
    import ssmc

    compiled = ssmc.compile(layer)
    for src in compiled.sources(args.strategy):
        print(src)
    return 0


def _prepare_triton() -> None:
    if not _gpu_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")


def cmd_run(args) -> int:
    import numpy as np

    layer = load_layer(args.target)
    sizes = parse_sizes(layer, args.sizes)
    print(f"{layer.name}: sizes " + ", ".join(f"{d}={sizes[d]}" for d in layer.dim_order))
    if not args.check:
        inputs = layer.random_inputs(sizes, args.seed)
        outs = layer(**inputs)
        for k, v in outs.items():
            dims = layer.output_dims()[k]
            print(
                f"  {k} [{', '.join(dims)}] shape {tuple(v.shape)}: mean {np.mean(v):+.5f} "
                f"std {np.std(v):.5f} min {np.min(v):+.5f} max {np.max(v):+.5f}"
            )
        return 0
    _prepare_triton()
    import ssmc
    from ssmc.testing.check import check_compiled

    device = "cuda" if _gpu_available() else "cpu"
    where = "GPU" if device == "cuda" else "CPU, Triton interpreter"
    compiled = ssmc.compile(layer, strategy=args.strategy)
    fused = compiled.bidir_forward() if args.strategy == "bidir" else compiled
    groups = len(fused.graph.groups or ())
    print(f"  compiled into {groups} fused group(s); running on {where}, {args.dtype} inputs")
    results = check_compiled(layer, compiled, sizes, args.dtype, args.seed, device, tol_scale=args.tol_scale)
    for r in results:
        print("  " + str(r))
    bad = [r for r in results if not r.ok]
    print("check: " + ("FAILED" if bad else "passed") + f" ({len(results) - len(bad)} of {len(results)} outputs match the interpreter)")
    return 1 if bad else 0


def cmd_fuzz(args) -> int:
    from ssmc.testing.fuzz import fuzz

    layer = load_layer(args.target)
    report = fuzz(layer, examples=args.examples, seed=args.seed, target=args.target, tol_scale=args.tol_scale,
                  shrink_seconds=args.shrink_seconds)
    print(report)
    return 0 if report.ok else 1


def cmd_warmup(args) -> int:
    _prepare_triton()
    from ssmc.backends.triton.warmup import warmup

    layer = load_layer(args.target)
    cases = [parse_sizes(layer, text) for text in (args.sizes or [None])]
    totals = warmup(layer, args.dtype or ["bf16"], cases, backward=args.backward)
    print(f"warmed: {totals['cases']} case(s), {totals['disk_writes']} source(s) cached, {totals['launches']} launch(es)")
    return 0


def cmd_bench(args) -> int:
    from pathlib import Path

    from ssmc.benchmark import run

    run(Path(args.out), quick=args.quick)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ssmc", description="a compiler for selective state-space models")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("show", help="print a layer's IR, its passes, or its generated kernels")
    s.add_argument("target", help="FILE.py:LAYER")
    s.add_argument("--stage", choices=("ir", "passes", "kernel"), default="ir")
    s.add_argument("--strategy", choices=("sequential", "tiled", "chunked", "matrix", "bidir"), default="sequential")
    s.set_defaults(fn=cmd_show)
    r = sub.add_parser("run", help="run a layer on random inputs (and check its kernels)")
    r.add_argument("target", help="FILE.py:LAYER")
    r.add_argument("--sizes", help="e.g. B=2,L=37,D=24")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--check", action="store_true", help="compile, run, compare with the interpreter")
    r.add_argument("--dtype", choices=("f32", "bf16", "f16"), default="f32")
    r.add_argument("--strategy", choices=("sequential", "tiled", "chunked", "matrix", "bidir"), default=None)
    r.add_argument("--tol-scale", type=float, default=1.0, help="multiply the tolerance (0: exact)")
    r.set_defaults(fn=cmd_run)
    f = sub.add_parser("fuzz", help="differential-test a layer's kernels against the interpreter on random cases")
    f.add_argument("target", help="FILE.py:LAYER")
    f.add_argument("--examples", type=int, default=100)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--tol-scale", type=float, default=1.0, help="multiply the tolerance (0: exact)")
    f.add_argument("--shrink-seconds", type=float, default=120.0, help="time budget for shrinking a failure")
    f.set_defaults(fn=cmd_fuzz)
    w = sub.add_parser("warmup", help="compile ahead of time into the cache")
    w.add_argument("target", help="FILE.py:LAYER")
    w.add_argument("--dtype", action="append", choices=("f32", "bf16", "f16"), help="repeatable")
    w.add_argument("--sizes", action="append", help="e.g. B=8,L=2048,D=2048,N=16 (repeatable)")
    w.add_argument("--backward", action="store_true", help="the backward's kernels too (training)")
    w.set_defaults(fn=cmd_warmup)
    b = sub.add_parser("bench", help="on a GPU: ssmc against the peers that can be imported, with floors (bench/README)")
    b.add_argument("--out", default="bench/results/latest", help="folder for bench.json, bench.md, bench.png")
    b.add_argument("--quick", action="store_true", help="one shape per workload")
    b.set_defaults(fn=cmd_bench)
    args = ap.parse_args(argv)
    try:
        return args.fn(args)
    except SsmcError as e:
        print(f"ssmc: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
