"""The NumPy rules against Python's math module, value by value (an independent check of the
definitions themselves)."""

import math

import numpy as np
import pytest

from ssmc.ops.numerics import round_to
from ssmc.ops.registry import REGISTRY

X = [-30.0, -3.5, -1.0, -1e-9, 0.0, 1e-9, 0.5, 2.0, 25.0]
POS = [1e-9, 0.25, 1.0, 7.5, 1e6]


def sig(x):
    return 1 / (1 + math.exp(-x)) if x > -700 else 0.0


MATH = {
    "neg": (lambda x: -x, X),
    "exp": (math.exp, X),
    "log": (math.log, POS),
    "log1p": (math.log1p, X[3:]),
    "expm1": (math.expm1, X),
    "exprel": (lambda x: 1.0 if x == 0 else math.expm1(x) / x, X),
    "softplus": (lambda x: math.log1p(math.exp(x)) if x < 30 else x + math.log1p(math.exp(-x)), X),
    "sigmoid": (sig, X),
    "silu": (lambda x: x * sig(x), X),
    "tanh": (math.tanh, X),
    "relu": (lambda x: max(x, 0.0), X),
    "gelu": (lambda x: 0.5 * x * (1 + math.erf(x / math.sqrt(2))), X),
    "square": (lambda x: x * x, X),
    "sqrt": (math.sqrt, POS),
    "rsqrt": (lambda x: 1 / math.sqrt(x), POS),
    "abs": (abs, X),
}


@pytest.mark.parametrize("name", sorted(MATH))
def test_unary_rule_matches_math(name):
    fn, xs = MATH[name]
    got = REGISTRY[name].numpy(np.array(xs))
    want = np.array([fn(x) for x in xs])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)


def test_pow_and_binaries():
    x = np.array(POS)
    np.testing.assert_allclose(REGISTRY["pow"].numpy(x, exponent=1.5), [v**1.5 for v in POS])
    a, b = np.array([1.0, -2.0, np.nan]), np.array([3.0, -5.0, 0.0])
    assert np.isnan(REGISTRY["maximum"].numpy(a, b)[2])
    np.testing.assert_array_equal(REGISTRY["minimum"].numpy(a, b)[:2], [1.0, -5.0])


def test_bf16_rounding_is_round_to_nearest_even():
    import torch

    x = np.random.default_rng(0).standard_normal(10000) * 100
    want = torch.tensor(x, dtype=torch.float32).to(torch.bfloat16).double().numpy()
    np.testing.assert_array_equal(round_to(x, "bf16"), want)
    np.testing.assert_array_equal(round_to(x, "f16"), x.astype(np.float16).astype(np.float64))


def test_discretize_zoh_is_exact_and_finite_at_zero():
    A = np.array([-1.0, -1e-12, 0.0])
    B = np.ones(3)
    d = np.full(3, 0.5)
    Bbar = REGISTRY["discretize"].numpy(A, B, d, method="zoh", part="B")
    np.testing.assert_allclose(Bbar, [math.expm1(-0.5) / -1.0, 0.5, 0.5], rtol=1e-9)
