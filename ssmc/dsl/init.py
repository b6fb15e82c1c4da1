"""Parameter initializers, by name. Each takes ``(shape, rng)`` (shape in the parameter's declared
layout, a ``numpy.random.Generator``) and returns a float64 array of that shape."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Initializer = Callable[[tuple[int, ...], np.random.Generator], np.ndarray]
INITIALIZERS: dict[str, Initializer] = {}


def initializer(name: str):
    def deco(fn: Initializer) -> Initializer:
        INITIALIZERS[name] = fn
        return fn

    return deco


@initializer("zeros")
def zeros(shape, rng):
    return np.zeros(shape)


@initializer("ones")
def ones(shape, rng):
    return np.ones(shape)


@initializer("normal")
def normal(shape, rng):
    """N(0, 1)."""
    return rng.standard_normal(shape)


@initializer("small_normal")
def small_normal(shape, rng):
    """N(0, 0.1^2)."""
    return 0.1 * rng.standard_normal(shape)


@initializer("log_sigmoid")
def log_sigmoid(shape, rng):
    """log(sigmoid(N(0, 1))): a log forget gate (HGRN, GLA), always <= 0."""
    x = rng.standard_normal(shape)
    return -np.logaddexp(0.0, -x)


@initializer("s4d_real")
def s4d_real(shape, rng):
    """S4D-real (Mamba's A_log): log(n + 1) along the last (state) dim."""
    n = np.arange(1, shape[-1] + 1, dtype=np.float64)
    return np.broadcast_to(np.log(n), shape).copy()


@initializer("s4d_lin_re")
def s4d_lin_re(shape, rng):
    """S4D-lin real part of A: -1/2 everywhere (the decay), before any log parameterisation."""
    return np.full(shape, -0.5)


def _log_uniform_dt(shape, rng, dt_min=1e-3, dt_max=1e-1):
    u = rng.random(shape)
    return np.exp(u * (np.log(dt_max) - np.log(dt_min)) + np.log(dt_min))


@initializer("dt_bias")
def dt_bias(shape, rng):
    """Mamba's dt_bias: the inverse softplus of a step drawn log-uniformly in [1e-3, 1e-1]."""
    dt = np.maximum(_log_uniform_dt(shape, rng), 1e-4)
    return dt + np.log(-np.expm1(-dt))


@initializer("rglru_lambda")
def rglru_lambda(shape, rng):
    """Griffin's RG-LRU: a = sigmoid(Lambda) with a^8 drawn uniformly in [0.9, 0.999]."""
    a = rng.uniform(0.9, 0.999, shape) ** (1 / 8)
    return np.log(a) - np.log1p(-a)


@initializer("mamba2_a_log")
def mamba2_a_log(shape, rng):
    """Mamba-2's A_log: log of A drawn uniformly in [1, 16], one per head."""
    return np.log(rng.uniform(1.0, 16.0, shape))


@initializer("log_dt")
def log_dt(shape, rng):
    """S4D's log step: log of a step drawn log-uniformly in [1e-3, 1e-1]."""
    return np.log(_log_uniform_dt(shape, rng))


@initializer("conv")
def conv(shape, rng):
    """A depthwise conv's taps (the last dim, K of them): uniform in +-1/sqrt(K), PyTorch's
    Conv1d default for one input channel per group (and so Mamba's ``conv1d``)."""
    bound = 1.0 / np.sqrt(shape[-1])
    return rng.uniform(-bound, bound, shape)


@initializer("lru_nu_log")
def lru_nu_log(shape, rng, r_min=0.9, r_max=0.999):
    """LRU's (Orvieto et al. 2023) |lambda| = exp(-exp(nu_log)): |lambda| drawn so that it is
    uniform over the ring of radii [r_min, r_max] in the complex plane (|lambda|^2 uniform)."""
    r2 = rng.uniform(r_min**2, r_max**2, shape)
    return np.log(-0.5 * np.log(r2))


@initializer("lru_theta_log")
def lru_theta_log(shape, rng, max_phase=2 * np.pi):
    """LRU's arg lambda = exp(theta_log): the phase drawn uniformly in (0, max_phase)."""
    return np.log(max_phase * rng.uniform(1e-3, 1.0, shape))


def resolve(init: str | Initializer | None) -> Initializer:
    if init is None:
        return INITIALIZERS["normal"]
    if callable(init):
        return init
    try:
        return INITIALIZERS[init]
    except KeyError:
        raise ValueError(f"unknown initializer {init!r}; known: {sorted(INITIALIZERS)}") from None
