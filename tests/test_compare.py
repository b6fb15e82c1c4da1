"""The tolerance rule itself: what passes, what fails, NaN and Inf positions, rounding modes."""

import numpy as np

from ssmc.testing.compare import compare

REF = np.linspace(-2.0, 3.0, 101)


def noisy(x, rel, seed=0):
    return x * (1 + np.random.default_rng(seed).uniform(-rel, rel, x.shape))


def test_exact_output_passes_and_a_wrong_one_fails():
    ref32 = noisy(REF, 1e-7)
    assert compare("y", REF.copy(), REF, [ref32], "f32").ok
    assert not compare("y", REF * 1.001, REF, [ref32], "f32").ok


def test_bound_is_twice_the_worst_float32_reference():
    from ssmc.ops.numerics import round_to

    ref32s = [noisy(REF, 1e-7, s) for s in range(3)]
    worst = max(np.abs(round_to(r, "f32") - REF).max() for r in ref32s)
    c = compare("y", REF + 1.9 * worst, REF, ref32s, "f32")
    assert c.ok and c.ref_err == worst
    assert not compare("y", REF + 2.0 * worst + 1e-5, REF, ref32s, "f32").ok


def test_nan_and_inf_positions_must_match():
    ref = REF.copy()
    ref[3], ref[7] = np.nan, np.inf
    out = ref.copy()
    assert compare("y", out, ref, [ref], "f32").ok
    out[3] = 0.0
    assert not compare("y", out, ref, [ref], "f32").ok
    out = ref.copy()
    out[7] = -np.inf
    assert not compare("y", out, ref, [ref], "f32").ok


def test_bf16_reference_rounds_like_the_platform():
    x = np.full(64, 1.0 + 2**-8 + 2**-10)  # between two bf16 values, nearer the upper
    rn = compare("y", np.full(64, 1.0078125), x, [x], "bf16", rounding="rn")
    rz = compare("y", np.full(64, 1.0), x, [x], "bf16", rounding="rz")
    assert rn.ok and rz.ok
    assert rn.ref_err == 2**-10 * 3 and rz.ref_err == 2**-8 + 2**-10
