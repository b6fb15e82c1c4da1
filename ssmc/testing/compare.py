"""Comparing a kernel's outputs with the interpreter under the tolerance rule."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ssmc.ops.numerics import round_to
from ssmc.testing.tolerances import TOLERANCES


@dataclass(frozen=True)
class Comparison:
    name: str
    dtype: str
    err: float  # max |kernel - f64 reference|
    ref_err: float  # max |low-precision reference - f64 reference|
    bound: float  # what err may be
    scale: float  # max |f64 reference|
    rel: float  # err / scale
    nonfinite_ok: bool

    @property
    def ok(self) -> bool:
        return self.nonfinite_ok and self.err <= self.bound

    def __str__(self) -> str:
        status = "ok" if self.ok else "MISMATCH"
        nf = "" if self.nonfinite_ok else " (NaN/Inf positions differ)"
        return (
            f"{self.name} [{self.dtype}]: max rel error {self.rel:.2e} (abs {self.err:.2e}, "
            f"bound {self.bound:.2e}, f32 reference {self.ref_err:.2e}) {status}{nf}"
        )


def compare(
    name: str,
    out: np.ndarray,
    ref64: np.ndarray,
    ref32s: list[np.ndarray],
    dtype: str,
    tol_scale: float = 1.0,
    rounding: str = "rn",
) -> Comparison:
    """``out``: the kernel's output (as float64); ``ref64``: the interpreter; ``ref32s``: the
    interpreter in float32, unperturbed and on inputs moved by one ulp (tolerances.py);
    ``dtype``: the dtype ``out`` was stored in; ``rounding``: how the platform converts float32
    to it (see ``round_to``)."""
    tol = TOLERANCES[dtype]
    out = np.asarray(out, dtype=np.float64)
    lps = [round_to(r, dtype, rounding) for r in ref32s]
    fin = np.isfinite(ref64)
    same_nonfinite = bool(
        np.array_equal(np.isnan(out), np.isnan(ref64))
        and np.array_equal(np.where(np.isinf(ref64), ref64, 0), np.where(np.isinf(out), out, 0))
    )
    if not fin.any():
        return Comparison(name, dtype, 0.0, 0.0, 0.0, 0.0, 0.0, same_nonfinite)
    scale = float(np.max(np.abs(ref64[fin])))
    diff = np.abs(out[fin] - ref64[fin])
    err = float(np.max(diff)) if diff.size else 0.0
    if np.isnan(err):
        err = float("inf")
    ref_err = max(float(np.nanmax(np.abs(lp[fin] - ref64[fin]))) for lp in lps) if diff.size else 0.0
    bound = tol_scale * (tol.ratio * ref_err + tol.atol * scale)
    rel = err / scale if scale > 0 else err
    return Comparison(name, dtype, err, ref_err, bound, scale, rel, same_nonfinite)


def compare_outputs(
    outs: Mapping[str, np.ndarray],
    ref64: Mapping[str, np.ndarray],
    ref32s: list[Mapping[str, np.ndarray]],
    dtypes: Mapping[str, str],
    tol_scale: float = 1.0,
    rounding: str = "rn",
) -> list[Comparison]:
    return [
        compare(k, outs[k], ref64[k], [r[k] for r in ref32s], dtypes[k], tol_scale, rounding)
        for k in ref64
    ]
