"""Golden files: the generated Triton source of every example layer, checked into
``examples/golden/`` so that a change to code generation shows up as a readable diff.

    python -m ssmc.testing.golden --update     # rewrite them after an intended change
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
GOLDEN = EXAMPLES / "golden"
STRATEGIES = ("sequential", "tiled")


def example_layers():
    from ssmc.cli import load_layer
    from ssmc.dsl.layer import Layer

    out = []
    for path in sorted(EXAMPLES.glob("*.py")):
        import importlib.util

        spec = importlib.util.spec_from_file_location(f"ssmc_example_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for name, v in sorted(vars(module).items()):
            if isinstance(v, Layer) and not name.startswith("_"):
                out.append(v)
    del load_layer
    return out


def sources() -> dict[str, str]:
    import ssmc

    out = {}
    for layer in example_layers():
        compiled = ssmc.compile(layer)
        for strategy in STRATEGIES:
            for i, src in enumerate(compiled.sources(strategy)):
                suffix = f".k{i}" if i else ""
                out[f"{layer.name}{suffix}.{strategy}.py"] = src
        # the matrix (tensor-core) form, where a layer has it: the states and outputs kernels
        if compiled.has_matrix_form:
            for i, src in enumerate(compiled.sources("matrix")):
                out[f"{layer.name}.matrix.k{i}.py"] = src
        # the form that runs at small state sizes: dims held whole as registers (every dim 16,
        # 16-bit contiguous inputs: rows loaded in pairs)
        sizes = {**{d: 16 for d in layer.dim_order}, **layer.fixed_sizes}
        pairable = frozenset((f"a_{k}", spec.layout[-1]) for k, spec in layer.specs.items() if spec.layout)
        kernels = compiled.kernels("sequential", sizes, pairable)
        if any(k.held for k in kernels):
            for i, src in enumerate(compiled.sources("sequential", sizes, pairable)):
                suffix = f".k{i}" if i else ""
                out[f"{layer.name}{suffix}.registers.py"] = src
        # the backward: checkpoint states, the carried scan's chunk states, the bidir kernel, the
        # epilogue after sums across programs
        from ssmc.backends.triton.backward import backward_for

        for i, src in enumerate(backward_for(layer, forward=compiled).sources("bidir")):
            out[f"{layer.name}.backward.k{i}.py"] = src
        # where the matrix form is: its backward's matrix scans (kernel pairs), then the rest
        if compiled.has_matrix_form:
            for i, src in enumerate(compiled.backward_compiled().sources()):
                out[f"{layer.name}.backward.matrix.k{i}.py"] = src
    return out


def main(argv: list[str]) -> int:
    srcs = sources()
    if "--update" in argv:
        GOLDEN.mkdir(exist_ok=True)
        for f in GOLDEN.glob("*.py"):
            f.unlink()
        for name, src in srcs.items():
            (GOLDEN / name).write_text(src)
        print(f"wrote {len(srcs)} golden files to {GOLDEN}")
        return 0
    stale = [n for n, s in srcs.items() if not (GOLDEN / n).exists() or (GOLDEN / n).read_text() != s]
    print("golden files " + ("differ: " + ", ".join(stale) if stale else "match"))
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
