"""The one table of per-dtype tolerances, and the rule they are used in.

Rule (flash-attention's tests, TorchInductor's accuracy checks): compare the kernel with the
float64 interpreter, and compare a straightforward low-precision computation (the interpreter
rounding every value to float32, outputs rounded to the kernel's output dtype) with it too.
The kernel's max error may be at most ``ratio`` times the low-precision reference's, plus
``atol`` times the output's scale (its largest magnitude). NaN and Inf positions must match.
The reference rounds its outputs the way the platform does: to nearest on a GPU, toward zero
for bfloat16 under Triton's interpreter (seen with triton 3.6.0)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tol:
    ratio: float  # kernel error / low-precision reference error
    atol: float  # absolute slack, relative to max |reference|


# Keyed by the dtype an output is stored in.
TOLERANCES: dict[str, Tol] = {
    "f32": Tol(ratio=2.0, atol=2e-6),
    "bf16": Tol(ratio=2.0, atol=4e-3),  # half a bf16 ulp at the largest value
    "f16": Tol(ratio=2.0, atol=5e-4),  # half an f16 ulp
}
