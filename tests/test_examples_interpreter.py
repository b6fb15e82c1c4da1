"""Each example's interpreter output against a straightforward float64 loop written here
(independent of the IR), on random inputs with sizes that are not powers of two, L = 1
included, with and without an initial state."""

import math

import numpy as np
import pytest
from hgrn import hgrn
from mamba1 import mamba1
from mingru import mingru
from rglru import rglru
from s4d import s4d_bilinear, s4d_zoh

SIZES = [dict(B=1, L=1, D=3, N=5), dict(B=2, L=7, D=5, N=3), dict(B=3, L=19, D=6, N=11)]


def softplus(x):
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def loop_mamba1(x, dt, B, C, z, A_log, D, dt_bias, h0):
    Bn, L, Dn = x.shape
    N = A_log.shape[1]
    y = np.zeros((Bn, L, Dn))
    h = np.zeros((Bn, Dn, N)) if h0 is None else h0.copy()
    for b in range(Bn):
        for t in range(L):
            for d in range(Dn):
                delta = softplus(dt[b, t, d] + dt_bias[d])
                acc = 0.0
                for n in range(N):
                    A = -math.exp(A_log[d, n])
                    h[b, d, n] = math.exp(delta * A) * h[b, d, n] + delta * B[b, t, n] * x[b, t, d]
                    acc += h[b, d, n] * C[b, t, n]
                y[b, t, d] = (acc + D[d] * x[b, t, d]) * z[b, t, d] * sigmoid(z[b, t, d])
    return y, h


@pytest.mark.parametrize("sizes", SIZES, ids=str)
@pytest.mark.parametrize("with_h0", [False, True])
def test_mamba1(sizes, with_h0):
    args = mamba1.random_inputs(sizes, seed=3, optional=with_h0)
    out = mamba1(**args)
    y, h = loop_mamba1(*(args[k] for k in ("x", "dt", "B", "C", "z", "A_log", "D", "dt_bias")), args.get("h0"))
    np.testing.assert_allclose(out["y"], y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out["h_final"], h, rtol=1e-12, atol=1e-12)


def loop_s4d(u, log_dt, A_log, B, C, D, h0, method):
    Bn, L, H = u.shape
    N = A_log.shape[1]
    y = np.zeros((Bn, L, H))
    h = np.zeros((Bn, H, N)) if h0 is None else h0.copy()
    for hh in range(H):
        dt = math.exp(log_dt[hh])
        for n in range(N):
            A = -math.exp(A_log[hh, n])
            if method == "zoh":
                Ab, Bb = math.exp(dt * A), (math.exp(dt * A) - 1) / A * B[hh, n]
            else:
                Ab = (1 + dt * A / 2) / (1 - dt * A / 2)
                Bb = dt / (1 - dt * A / 2) * B[hh, n]
            for b in range(Bn):
                for t in range(L):
                    h[b, hh, n] = Ab * h[b, hh, n] + Bb * u[b, t, hh]
                    y[b, t, hh] += C[hh, n] * h[b, hh, n]
    y += D * u
    return y, h


@pytest.mark.parametrize("layer,method", [(s4d_zoh, "zoh"), (s4d_bilinear, "bilinear")])
@pytest.mark.parametrize("sizes", [dict(B=1, L=1, H=2, N=3), dict(B=2, L=9, H=3, N=7)], ids=str)
@pytest.mark.parametrize("with_h0", [False, True])
def test_s4d(layer, method, sizes, with_h0):
    args = layer.random_inputs(sizes, seed=5, optional=with_h0)
    out = layer(**args)
    y, h = loop_s4d(*(args[k] for k in ("u", "log_dt", "A_log", "B", "C", "D")), args.get("h0"), method)
    np.testing.assert_allclose(out["y"], y, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out["h_final"], h, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("sizes", [dict(B=1, L=1, D=1), dict(B=3, L=11, D=5)], ids=str)
@pytest.mark.parametrize("with_h0", [False, True])
def test_mingru(sizes, with_h0):
    args = mingru.random_inputs(sizes, seed=7, optional=with_h0)
    out = mingru(**args)
    k, xt, b = args["k"], args["x_tilde"], args["b"]
    h = np.zeros((sizes["B"], sizes["D"])) if not with_h0 else args["h0"].copy()
    ys = []
    for t in range(sizes["L"]):
        a = sigmoid(k[:, t] + b)
        h = (1 - a) * h + a * xt[:, t]
        ys.append(h.copy())
    np.testing.assert_allclose(out["y"], np.stack(ys, 1), rtol=1e-12)
    np.testing.assert_allclose(out["h_final"], h, rtol=1e-12)


def test_empty_sequence_gives_empty_output_and_initial_state():
    args = mamba1.random_inputs(dict(B=2, L=0, D=3, N=4), optional=True)
    out = mamba1(**args)
    assert out["y"].shape == (2, 0, 3)
    np.testing.assert_array_equal(out["h_final"], args["h0"])


def test_layout_is_by_name():
    """An input declared [B, D, L] means the same as its transpose declared [B, L, D]."""
    import ssmc

    @ssmc.layer
    def a(x: ssmc.In["B L D"], w: ssmc.Param["D"]):
        return (x * w).sum("D")

    @ssmc.layer
    def b(x: ssmc.In["B D L"], w: ssmc.Param["D"]):
        return (x * w).sum("D")

    x = np.random.default_rng(0).standard_normal((2, 5, 3))
    w = np.arange(3.0)
    np.testing.assert_allclose(a(x, w)["y"], b(x.transpose(0, 2, 1), w)["y"])


@pytest.mark.parametrize("sizes", [dict(B=1, L=1, D=1), dict(B=2, L=13, D=6)], ids=str)
@pytest.mark.parametrize("with_h0", [False, True])
def test_hgrn(sizes, with_h0):
    args = hgrn.random_inputs(sizes, seed=8, optional=with_h0)
    assert (args["g"] <= 0).all()  # drawn as a log gate
    x, g = args["x"], args["g"]
    h = np.zeros((sizes["B"], sizes["D"])) if not with_h0 else args["h0"].copy()
    ys = []
    for t in range(sizes["L"]):
        h = np.exp(g[:, t]) * h + x[:, t]
        ys.append(h.copy())
    np.testing.assert_allclose(out := hgrn(**args)["y"], np.stack(ys, 1), rtol=1e-12)
    assert out.shape == (sizes["B"], sizes["L"], sizes["D"])
    np.testing.assert_allclose(hgrn(**args)["h_final"], h, rtol=1e-12)


@pytest.mark.parametrize("sizes", [dict(B=1, L=1, D=1), dict(B=2, L=12, D=5)], ids=str)
@pytest.mark.parametrize("with_h0", [False, True])
def test_rglru(sizes, with_h0):
    """Against Griffin's equations as written: a = sigmoid(Lambda)^(8 r), sqrt(1 - a^2)."""
    args = rglru.random_inputs(sizes, seed=9, optional=with_h0)
    x, ga, gx, lam = args["x"], args["gate_a"], args["gate_x"], args["Lambda"]
    assert np.all((sigmoid(lam) ** 8 >= 0.9 - 1e-12) & (sigmoid(lam) ** 8 <= 0.999 + 1e-12))
    h = np.zeros((sizes["B"], sizes["D"])) if not with_h0 else args["h0"].copy()
    ys = []
    for t in range(sizes["L"]):
        a = sigmoid(lam) ** (8 * sigmoid(ga[:, t]))
        h = a * h + np.sqrt(1 - a * a) * (sigmoid(gx[:, t]) * x[:, t])
        ys.append(h.copy())
    out = rglru(**args)
    np.testing.assert_allclose(out["y"], np.stack(ys, 1), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out["h_final"], h, rtol=1e-10, atol=1e-12)


def loop_mamba2(x, dt, B, C, z, A_log, D, dt_bias, h0):
    """Mamba-2 in the [B, L, H, P] layout mamba-ssm uses, head h in group h // (H / G)."""
    Bn, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    h = np.zeros((Bn, H, P, N)) if h0 is None else h0.copy()
    y = np.zeros((Bn, L, H, P))
    for b in range(Bn):
        for t in range(L):
            for hh in range(H):
                g = hh // (H // G)
                delta = softplus(dt[b, t, hh] + dt_bias[hh])
                decay = math.exp(-math.exp(A_log[hh]) * delta)
                for p in range(P):
                    h[b, hh, p] = decay * h[b, hh, p] + delta * x[b, t, hh, p] * B[b, t, g]
                    yy = float(h[b, hh, p] @ C[b, t, g]) + D[hh] * x[b, t, hh, p]
                    y[b, t, hh, p] = yy * z[b, t, hh, p] * sigmoid(z[b, t, hh, p])
    return y, h


@pytest.mark.parametrize("sizes", [dict(B=1, L=1, G=1, R=1, P=1, N=1), dict(B=2, L=9, G=2, R=3, P=4, N=5)], ids=str)
@pytest.mark.parametrize("with_h0", [False, True])
def test_mamba2(sizes, with_h0):
    """Heads and groups as mamba-ssm lays them out: x [B, L, H, P] is the layer's [B, L, G, R, P]."""
    from mamba2 import mamba2

    args = mamba2.random_inputs(sizes, seed=10, optional=with_h0)
    Bn, L, G, R, P, N = (sizes[d] for d in "B L G R P N".split())
    H = G * R
    flat = {k: args[k].reshape(Bn, L, H, P) for k in ("x", "z")}
    flat.update(dt=args["dt"].reshape(Bn, L, H), B=args["B"], C=args["C"])
    flat.update({k: args[k].reshape(H) for k in ("A_log", "D", "dt_bias")})
    h0 = args["h0"].reshape(Bn, H, P, N) if with_h0 else None
    y, h = loop_mamba2(*(flat[k] for k in ("x", "dt", "B", "C", "z", "A_log", "D", "dt_bias")), h0)
    out = mamba2(**args)
    np.testing.assert_allclose(out["y"].reshape(Bn, L, H, P), y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out["h_final"].reshape(Bn, H, P, N), h, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sizes", [dict(B=1, L=1, H=1, K=1, V=1), dict(B=2, L=10, H=3, K=4, V=5)], ids=str)
@pytest.mark.parametrize("with_h0", [False, True])
def test_gla(sizes, with_h0):
    """Against the recurrence as written: S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T, o_t = S_t^T q_t."""
    from gla import gla

    args = gla.random_inputs(sizes, seed=11, optional=with_h0)
    q, k, v, g = args["q"], args["k"], args["v"], args["g"]
    Bn, L, H, K, V = (sizes[d] for d in "B L H K V".split())
    S = np.zeros((Bn, H, K, V)) if not with_h0 else args["h0"].copy()
    o = np.zeros((Bn, L, H, V))
    for b in range(Bn):
        for h in range(H):
            for t in range(L):
                S[b, h] = np.diag(np.exp(g[b, t, h])) @ S[b, h] + np.outer(k[b, t, h], v[b, t, h])
                o[b, t, h] = S[b, h].T @ q[b, t, h]
    out = gla(**args)
    np.testing.assert_allclose(out["o"], o, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out["h_final"], S, rtol=1e-12, atol=1e-12)


def test_simple_gla_is_gla_with_one_decay_per_head():
    from gla import gla, simple_gla

    sizes = dict(B=2, L=7, H=3, K=4, V=2)
    args = simple_gla.random_inputs(sizes, seed=12, optional=True)
    per_key = dict(args, g=np.repeat(args["g"][..., None], sizes["K"], axis=-1))
    want, got = gla(**per_key), simple_gla(**args)
    for k in ("o", "h_final"):
        np.testing.assert_allclose(got[k], want[k], rtol=1e-13, atol=1e-13)
