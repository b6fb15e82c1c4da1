"""Bad inputs get a clear error or a defined behaviour; numerics under stress."""

import numpy as np
import pytest
import torch
from conftest import DEVICE
from mamba1 import mamba1

import ssmc
from ssmc import ArgumentError, DefinitionError, In, LoweringError, Param
from ssmc.ops.interpret import run
from ssmc.ops.registry import get
from ssmc.testing.check import make_inputs
from ssmc.testing.compare import compare


def tensors(values, dtype=torch.float32):
    return {k: torch.tensor(v, dtype=dtype, device=DEVICE) for k, v in values.items()}


def test_tensors_on_different_devices():
    a = tensors(make_inputs(mamba1, dict(B=1, L=3, D=2, N=2), "f32"))
    a["z"] = a["z"].to("meta")
    with pytest.raises(ArgumentError, match=r"mamba1: argument `z` is on meta but `\w+` is on"):
        ssmc.compile(mamba1)(**a)


def test_unknown_op_is_named():
    with pytest.raises(DefinitionError, match=r"unknown op `frobnicate`"):
        get("frobnicate")


def test_unused_argument_is_a_warning():
    with pytest.warns(UserWarning, match=r"u: argument `w` is not used by any output"):

        @ssmc.layer
        def u(x: In["B L D"], w: In["B L D"]):
            return x * 2.0


def test_state_too_large_is_refused_before_launch():
    big = dict(B=1, L=2, D=1, N=20000)
    a = tensors(make_inputs(mamba1, big, "f32"))
    c = ssmc.compile(mamba1)
    with pytest.raises(LoweringError, match=r"held whole in one program \(N=20000\).*limit is 16384"):
        c(**a)
    assert c.stats["launches"] == 0


@pytest.mark.parametrize("poison", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("strategy", ["sequential", "tiled", "chunked"])
def test_nan_and_inf_inputs_propagate_like_the_interpreter(poison, strategy):
    sizes = dict(B=2, L=9, D=3, N=2)
    a = make_inputs(mamba1, sizes, "f32", 3)
    a["x"][1, 4, 2] = poison
    a["dt"][0, 6, 0] = poison
    out = ssmc.compile(mamba1, strategy=strategy, chunks=3, unroll=2, block_t=4)(**tensors(a))
    ref = run(mamba1.graph, a, mamba1.bind(a))
    for k in ref:
        got = out[k].double().cpu().numpy()
        assert np.array_equal(np.isnan(got), np.isnan(ref[k])), k
        assert np.array_equal(np.isposinf(got), np.isposinf(ref[k])), k
        assert np.array_equal(np.isneginf(got), np.isneginf(ref[k])), k
        fin = np.isfinite(ref[k])
        np.testing.assert_allclose(got[fin], ref[k][fin], rtol=1e-4, atol=1e-5)


@ssmc.layer
def slow_decay(k: In["B L D"], x: In["B L D"], rate: Param["D", "ones"]):
    """Decays within 1e-4 of 1: the state integrates ~10^4 steps of input."""
    a = ssmc.exp(-1e-4 * rate * ssmc.sigmoid(k))
    return {"y": ssmc.scan(a, x, axis="L")}


def test_long_sequence_with_decays_near_one_in_bf16():
    L = 65536
    sizes = dict(B=1, L=L, D=4)
    a = make_inputs(slow_decay, sizes, "bf16", 0)
    c = ssmc.compile(slow_decay, strategy="tiled", block_t=1024, block=4)
    t = {k: torch.tensor(v, dtype=torch.bfloat16 if k != "rate" else torch.float32, device=DEVICE) for k, v in a.items()}
    out = c(**t)["y"].double().cpu().numpy()
    bound = slow_decay.bind(a)
    ref64 = run(slow_decay.graph, a, bound)["y"]
    ref32 = run(c.graph, a, bound, precision="f32")["y"]
    rounding = "rn" if DEVICE == "cuda" else "rz"
    r = compare("y", out, ref64, [ref32], "bf16", rounding=rounding)
    assert r.ok, str(r)
    assert np.isfinite(out).all()


def test_exact_zoh_with_A_near_zero_is_finite_and_accurate():
    @ssmc.layer
    def zoh(u: In["B L D"], A_log: Param["D", "zeros"], log_dt: Param["D", "zeros"]):
        Ab, Bb = ssmc.discretize(-ssmc.exp(A_log), 1.0, ssmc.exp(log_dt), "zoh")
        return {"y": ssmc.scan(Ab, Bb * u, axis="L"), "Bbar": Bb * 1.0}

    D = 6
    A_log = np.array([-80.0, -60.0, -30.0, -10.0, -1.0, 0.0])  # A from -2e-35 to -1
    a = {"u": np.random.default_rng(0).standard_normal((1, 5, D)), "A_log": A_log, "log_dt": np.full(D, np.log(0.5))}
    out = ssmc.compile(zoh)(**tensors(a))
    ref = zoh(**a)
    for k in ref:
        got = out[k].double().cpu().numpy()
        assert np.isfinite(got).all(), (k, got)
        np.testing.assert_allclose(got, ref[k], rtol=2e-6, atol=1e-7, err_msg=k)
