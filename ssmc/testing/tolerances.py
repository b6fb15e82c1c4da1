"""The one table of per-dtype tolerances, and the rule they are used in.

Rule (flash-attention's tests, TorchInductor's accuracy checks): compare the kernel with the
float64 interpreter of the layer, and compare a straightforward low-precision computation with
it too: the interpreter of the layer after the passes (compound ops such as discretize expanded
into elementwise ones), rounding every value to float32, outputs rounded to the kernel's output
dtype. (Interpreting the layer itself in float32 rounds a whole discretize once: more accurate
than any float32 code; seen: S4D bilinear's Abar = (1+x)/(1-x) raised to the L-th power.)
The kernel's max error may be at most ``ratio`` times the low-precision reference's, plus
``atol`` times the output's scale (its largest magnitude). NaN and Inf positions must match.
The reference rounds its outputs the way the platform does: to nearest on a GPU, toward zero
for bfloat16 under Triton's interpreter (seen with triton 3.6.0).

The low-precision reference's error is the largest over a few equally valid float32
computations: the unperturbed one and ones whose float inputs moved by one float32 ulp (the
size of the rounding the kernel itself does). One run alone is luck on small or ill-conditioned
outputs: seen on an H100, S4D bilinear with one state element, its final state 3e-5 summed from
terms near 6e-4: the float32 reference erred 4e-11 unperturbed and up to 2.2e-10 perturbed; the
kernel 3.5e-10.

On a GPU two more float32 references model the platform's exponential: the time loop's exp2
(the decays) is the hardware's ex2.approx, within 2 ulps of 2^x but not correctly rounded
(measured on an H100: 2.05 ulps at most, 2^-22.7 relative; mean -0.40 ulps over [-1, 0]), and
its error keeps one sign over the arguments of a run of decays near 1, so it compounds through
the recurrence. Seen on an H100 (bench/NOTES.md): Mamba-1 in float32 with D = N = 1, L 130 and
257, gradients up to 2.4x the bound against a correctly rounded reference in 7 of 16 cases; with
an exp2 accurate to 1.15 ulps in the loop (prelude's _ssmc_exp2_fma) none. The references use
every per-step exp / exp2 off by +2^-22 and by -2^-22 relative (check.GPU_EXP2_ERROR): a float32
computation on that platform, as the rounding rule above is the platform's. So are the per-step
ops the kernels compute from the hardware exponential (sigmoid, softplus, silu:
interpret.EXP_BUILT): seen on an H100, Mamba-2's float32 dt_bias gradient, a sum over 600
steps of terms built from them, erred 2.5e-6 of its max where the same kernels in Triton's
interpreter erred 2.3e-7 (bench/NOTES.md, session 18)."""

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
