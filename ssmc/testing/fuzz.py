"""``ssmc.fuzz(layer)``: the differential test on a user's own layer.

Hypothesis draws sizes (lengths shorter and longer than a tile, sizes that are not powers of
two), dtypes, strategies, chunk counts, initial states, strided inputs and values; each case is
compiled, run (on the GPU if there is one, else in Triton's interpreter) and compared with the
NumPy interpreter under the tolerance rule. A failure is shrunk towards a minimal case, for at
most ``shrink_seconds`` (each candidate compiles and runs kernels: in Triton's interpreter an
unbounded shrink can take minutes), and the smallest failing case found is reported with a
snippet that reproduces it."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from ssmc.dsl.layer import Layer


@dataclass
class FuzzReport:
    layer: str
    examples: int = 0
    failure: str | None = None  # the shrunk failing case and how to reproduce it
    shrink_stopped: bool = False  # shrinking ran out of its time budget before a minimal case
    cases: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failure is None

    def __str__(self) -> str:
        head = f"fuzz {self.layer}: {self.examples} cases"
        if self.ok:
            return head + ", all match the interpreter"
        note = " (shrinking stopped at its time budget: the smallest failing case found so far)" if self.shrink_stopped else ""
        return head + f", FAILED{note}\n{self.failure}"


class _ShrinkBudgetSpent(BaseException):
    """Raised inside the property once shrinking has run past its budget. A BaseException, so
    hypothesis does not take it for one more failing case but stops and lets it through."""


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    os.environ.setdefault("TRITON_INTERPRET", "1")
    return "cpu"


def fuzz(
    layer: Layer,
    examples: int = 100,
    seed: int = 0,
    max_len: int = 40,
    target: str | None = None,
    tol_scale: float = 1.0,
    shrink_seconds: float = 120.0,
) -> FuzzReport:
    """Run ``examples`` random cases of ``layer``'s compiled kernels against the interpreter.
    ``target`` ("FILE.py:LAYER") is used in the reproduction snippet; ``tol_scale`` multiplies
    the tolerance (0: demand exact equality, which shows what a failure report looks like).
    ``shrink_seconds`` bounds the time spent shrinking after the first failure."""
    if shrink_seconds < 0:
        raise ValueError(f"fuzz: shrink_seconds must be >= 0, got {shrink_seconds}")
    device = _device()
    import hypothesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    import ssmc
    from ssmc.testing.check import check_compiled

    report = FuzzReport(layer.name)
    compiled: dict[tuple, Any] = {}
    fixed = layer.fixed_sizes
    dims = [d for d in layer.dim_order if d not in fixed]
    seq = {"L"} & set(dims)
    strategies = ["sequential", "tiled", "chunked"] + (["matrix"] if ssmc.compile(layer).has_matrix_form else [])
    sizes_st = st.fixed_dictionaries(
        {d: st.integers(1 if d not in seq else 1, max_len if d in seq else (3 if d == "B" else 19)) for d in dims}
    )
    case_st = st.fixed_dictionaries(
        {
            "sizes": sizes_st,
            "dtype": st.sampled_from(["f32", "bf16", "f16"]),
            "strategy": st.sampled_from(strategies),
            "chunks": st.integers(2, 4),
            "with_optional": st.booleans(),
            "noncontiguous": st.booleans(),
            "seed": st.integers(0, 2**16),
        }
    )
    failing: list[str] = []
    first_failure: list[float] = []  # when the first failure was seen

    @settings(max_examples=examples, deadline=None, database=None, print_blob=False, suppress_health_check=list(HealthCheck))
    @hypothesis.seed(seed)
    @given(case=case_st)
    def one(case: dict[str, Any]) -> None:
        if first_failure and time.monotonic() - first_failure[0] > shrink_seconds:
            raise _ShrinkBudgetSpent
        report.examples += 1
        key = (case["strategy"], case["chunks"])
        if key not in compiled:
            compiled[key] = ssmc.compile(layer, strategy=case["strategy"], chunks=case["chunks"], unroll=2, block_t=4)
        sizes = {**case["sizes"], **fixed}
        results = check_compiled(
            layer, compiled[key], sizes, case["dtype"], case["seed"], device,
            case["with_optional"], case["noncontiguous"], tol_scale,
        )
        bad = [str(r) for r in results if not r.ok]
        if bad:
            failing.append(_repro(layer, target, case, sizes, device, bad, tol_scale))
            if not first_failure:
                first_failure.append(time.monotonic())
            raise AssertionError(bad[0])

    try:
        one()
    except AssertionError:
        report.failure = failing[-1] if failing else "a case failed (no details)"
    except _ShrinkBudgetSpent:
        report.failure, report.shrink_stopped = failing[-1], True
    return report


def _repro(layer: Layer, target: str | None, case, sizes, device, bad, tol_scale) -> str:
    path, _, name = (target or f"YOUR_FILE.py:{layer.name}").partition(":")
    return "\n".join(
        ["  " + b for b in bad]
        + [
            "reproduce with:",
            "  import importlib.util, ssmc",
            "  from ssmc.testing.check import check_compiled",
            f"  spec = importlib.util.spec_from_file_location('m', {path!r}); m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)",
            f"  c = ssmc.compile(m.{name}, strategy={case['strategy']!r}, chunks={case['chunks']}, unroll=2, block_t=4)",
            f"  for r in check_compiled(m.{name}, c, {sizes!r}, {case['dtype']!r}, {case['seed']}, {device!r}, {case['with_optional']}, {case['noncontiguous']}, {tol_scale}): print(r)",
        ]
    )
