"""Generated kernels against the NumPy interpreter, hypothesis drawing layers, strategies,
sizes, dtypes and values. Runs in Triton's interpreter on the CPU, and (same tests, marked
``gpu``) on a GPU."""

import numpy as np
import pytest
import torch
from conftest import DEVICE, HAS_GPU
from gla import gla
from hgrn import hgrn
from hypothesis import given
from hypothesis import strategies as st
from mamba1 import mamba1
from mamba2 import mamba2
from mingru import mingru
from rglru import rglru
from s4d import s4d_bilinear, s4d_zoh
from test_passes import chained

import ssmc
from ssmc import In, Param
from ssmc.testing.check import check_compiled

LAYERS = {"mamba1": mamba1, "mingru": mingru, "s4d_zoh": s4d_zoh, "s4d_bilinear": s4d_bilinear, "chained": chained,
          "hgrn": hgrn, "rglru": rglru, "mamba2": mamba2, "gla": gla}
_COMPILED: dict = {}


def compiled(name, strategy, unroll=4, block_t=None, chunks=None, held=None):
    key = (name, strategy, unroll, block_t, chunks, held)
    if key not in _COMPILED:
        _COMPILED[key] = ssmc.compile(
            LAYERS[name], strategy=strategy, unroll=unroll, block_t=block_t, chunks=chunks, verify=True, held=held
        )
    return _COMPILED[key]


def assert_ok(results):
    bad = [str(r) for r in results if not r.ok]
    assert not bad, "\n".join(bad)


max_len = 300 if HAS_GPU else 40


@given(
    name=st.sampled_from(sorted(LAYERS)),
    strategy=st.sampled_from(["sequential", "tiled", "chunked"]),
    chunks=st.integers(1, 4),
    dtype=st.sampled_from(["f32", "bf16", "f16"]),
    B=st.integers(1, 3),
    L=st.integers(1, max_len),
    D=st.integers(1, 21),
    N=st.integers(1, 19),
    with_h0=st.booleans(),
    noncontiguous=st.booleans(),
    seed=st.integers(0, 2**16),
    held=st.sampled_from([None, "tensor", "registers"]),  # None: registers up to 16 elements
)
def test_kernel_matches_interpreter(name, strategy, chunks, dtype, B, L, D, N, with_h0, noncontiguous, seed, held):
    layer = LAYERS[name]
    sizes = {"B": B, "L": L, "D": D, "H": D, "N": N, "G": 1 + D % 3, "R": 1 + D % 2, "P": 1 + D // 4,
             "K": N, "V": D}
    sizes = {d: sizes[d] for d in layer.dim_order}
    c = compiled(name, strategy, chunks=chunks if strategy == "chunked" else None, held=held)
    results = check_compiled(layer, c, sizes, dtype, seed, DEVICE, with_h0, noncontiguous)
    assert_ok(results)


@pytest.mark.parametrize("strategy", ["sequential", "tiled"])
@pytest.mark.parametrize("L", [1, 3, 4, 5, 8, 9, 17])
def test_lengths_around_the_tile(strategy, L):
    """Shorter than, equal to and longer than one tile (unroll 4 / block_t 4)."""
    c = compiled("mamba1", strategy, unroll=4, block_t=4)
    assert_ok(check_compiled(mamba1, c, dict(B=2, L=L, D=5, N=3), "f32", L, DEVICE))


@pytest.mark.parametrize("N", [1, 7, 16, 33])
def test_state_sizes_not_powers_of_two(N):
    c = compiled("mamba1", "tiled")
    assert_ok(check_compiled(mamba1, c, dict(B=1, L=6, D=3, N=N), "f32", N, DEVICE))


def test_large_state_size():
    c = compiled("mamba1", "sequential")
    assert_ok(check_compiled(mamba1, c, dict(B=1, L=3, D=2, N=200), "f32", 0, DEVICE))


@ssmc.layer
def reverse_gated(x: In["B L D"], k: In["B L D"], h0: In["B D"] = None):
    h = ssmc.scan(ssmc.sigmoid(k), x, axis="L", reverse=True, h0=h0)
    return {"y": ssmc.gate(h, k, "gelu"), "h_first": h.final}


@pytest.mark.parametrize("strategy", ["sequential", "tiled"])
@pytest.mark.parametrize("L", [1, 6, 11])
def test_reverse_scan(strategy, L):
    c = ssmc.compile(reverse_gated, strategy=strategy, unroll=4, block_t=4, verify=True)
    assert_ok(check_compiled(reverse_gated, c, dict(B=2, L=L, D=3), "f32", L, DEVICE))


@pytest.mark.parametrize("layer", [mamba1, reverse_gated], ids=lambda x: x.name)
@pytest.mark.parametrize("chunks", [2, 3, 5, 7, 10])  # chunk_combine takes 4 chunks at a time
@pytest.mark.parametrize("with_h0", [False, True])
def test_chunked_matches_interpreter(layer, chunks, with_h0):
    """The sequence split in chunks scanned in parallel, states passed between them."""
    c = ssmc.compile(layer, strategy="chunked", unroll=4, chunks=chunks, verify=True)
    sizes = {d: {"B": 2, "L": 29, "D": 5, "N": 3}[d] for d in layer.dim_order}
    assert_ok(check_compiled(layer, c, sizes, "f32", chunks, DEVICE, with_h0))
    assert c.stats["launches"] >= 3  # states, combine, full: really chunked


@pytest.mark.parametrize("limit", [None, 64])
def test_chunk_states_step_offsets_in_32_or_64_bits(monkeypatch, limit):
    """The chunk-states kernel takes 32-bit step offsets where every one fits (OFFS32), else
    64-bit ones; both give the interpreter's result (a limit of 64 elements takes the 64-bit
    path on small inputs)."""
    from ssmc.backends.triton import replay, run

    if limit is not None:
        monkeypatch.setattr(run, "OFFS32_LIMIT", limit)
    seen = []
    launch = replay.Recorder.launch
    monkeypatch.setattr(replay.Recorder, "launch", lambda self, fn, grid, args, kw: seen.append(kw) or launch(self, fn, grid, args, kw))
    c = ssmc.compile(mamba1, strategy="chunked", unroll=4, chunks=3, held="registers", verify=True)
    sizes = dict(B=2, L=29, D=5, N=4)
    assert_ok(check_compiled(mamba1, c, sizes, "f32", 3, DEVICE, True))
    flags = [kw["OFFS32"] for kw in seen if "OFFS32" in kw]
    assert flags and all(f == (limit is None) for f in flags)


def test_chunked_falls_back_where_it_cannot_split():
    @ssmc.layer
    def uses_final(x: In["B L D"]):
        h = ssmc.scan(0.9, x, axis="L")
        return {"y": h, "norm": h.final * h.final}

    c = ssmc.compile(uses_final, strategy="chunked", chunks=3)
    assert_ok(check_compiled(uses_final, c, dict(B=1, L=10, D=3), "f32", 0, DEVICE))
    assert c.stats["launches"] == 1


def test_zero_length_returns_initial_state():
    c = compiled("mamba1", "sequential")
    a = mamba1.random_inputs(dict(B=2, L=0, D=3, N=4), optional=True)
    t = {k: torch.tensor(v, dtype=torch.float32, device=DEVICE) for k, v in a.items()}
    out = c(**t)
    assert out["y"].shape == (2, 0, 3)
    np.testing.assert_allclose(out["h_final"].cpu().numpy(), a["h0"], rtol=1e-6)


def test_strategies_agree():
    sizes = dict(B=2, L=13, D=7, N=5)
    a = mamba1.random_inputs(sizes, seed=2, optional=True)
    t = {k: torch.tensor(v, dtype=torch.float32, device=DEVICE) for k, v in a.items()}
    outs = [compiled("mamba1", s)(**t) for s in ("sequential", "tiled")]
    for k in outs[0]:
        torch.testing.assert_close(outs[0][k], outs[1][k], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", ["log1p", "expm1", "tanh", "softplus", "sigmoid", "gelu", "relu", "abs", "square", "exp", "neg"])
def test_each_unary_lowering_matches_its_numpy_rule(op):
    fn = getattr(ssmc, op) if op != "log1p" else (lambda x: ssmc.log1p(ssmc.abs(x)))

    @ssmc.layer(name=f"unary_{op}")
    def f(x: In["B L D"], w: Param["D", "ones"]):
        return fn(x) * w

    c = ssmc.compile(f, verify=True)
    assert_ok(check_compiled(f, c, dict(B=1, L=3, D=17), "f32", 0, DEVICE, scale=3.0))


def test_ops_on_their_domains_and_edges():
    @ssmc.layer
    def edges(x: In["B L D"]):
        ax = ssmc.abs(x) + 1e-3
        return {
            "log": ssmc.log(ax), "sqrt": ssmc.sqrt(ax), "rsqrt": ssmc.rsqrt(ax),
            "pow": ax ** 1.7, "pow3": x ** 3, "powm2": ax ** -2,
            "div": x / ax, "max": ssmc.maximum(x, 0.1), "min": ssmc.minimum(x, 0.1),
            "where": ssmc.where(x > 0.0, x, 2.0 * x), "cast": ssmc.cast(x, "bf16"),
            "mean": x.mean("D"), "exprel_zoh": ssmc.discretize(-ax, x, ax, "zoh")[1],
        }

    c = ssmc.compile(edges, verify=True)
    assert_ok(check_compiled(edges, c, dict(B=1, L=4, D=9), "f32", 0, DEVICE, scale=4.0))


def test_exponentials_at_infinities_and_nan():
    """exp and exp2, in the time loop and before it (two lowerings), at +-inf, NaN, extremes."""
    xs = np.array([-np.inf, -200.0, -87.0, -1e-6, 0.0, 0.5, 88.0, 200.0, np.inf, np.nan])

    @ssmc.layer
    def exps(x: In["B L D"], w: Param["D", "ones"]):
        return {"e_loop": ssmc.exp(x), "e2_loop": ssmc.exp2(x), "e_inv": ssmc.exp(w), "e2_inv": ssmc.exp2(w)}

    c = ssmc.compile(exps)
    t = torch.tensor(xs, dtype=torch.float32, device=DEVICE)
    out = c(x=t.view(1, 1, -1), w=t)
    with np.errstate(all="ignore"):
        want = {"e_loop": np.exp(xs), "e2_loop": np.exp2(xs)}
    want["e_inv"], want["e2_inv"] = want["e_loop"], want["e2_loop"]
    for k, v in want.items():
        got = out[k].double().cpu().numpy().ravel()
        v32 = v.astype(np.float32).astype(np.float64)  # what float32 can hold (exp(200) = inf)
        fin = np.isfinite(v32)
        assert np.array_equal(np.isnan(got), np.isnan(v32)), (k, got, v32)
        assert np.array_equal(got[np.isinf(v32)], v32[np.isinf(v32)]), (k, got, v32)
        # exp's argument rounding: |x| * eps relative (accurate lowering: far less)
        assert np.allclose(got[fin], v32[fin], rtol=4e-7 * 88, atol=1e-37), (k, got, v32)


def test_extreme_values_stay_accurate():
    """softplus, log1p, expm1, tanh at large and tiny magnitudes, against float64."""
    xs = np.array([-100.0, -30.0, -1e-6, -1e-30, 0.0, 1e-30, 1e-6, 0.3, 15.0, 30.0, 80.0])

    @ssmc.layer
    def ext(x: In["B L D"]):
        return {"sp": ssmc.softplus(x), "l1p": ssmc.log1p(ssmc.abs(x)), "em1": ssmc.expm1(ssmc.minimum(x, 60.0)), "th": ssmc.tanh(x)}

    c = ssmc.compile(ext)
    out = c(x=torch.tensor(xs, dtype=torch.float32, device=DEVICE).view(1, 1, -1))
    ref = ext(x=xs.astype(np.float32).reshape(1, 1, -1))
    # exp in float32 is exp2(x * log2 e): rounding the argument costs |x| * eps relative error
    # (seen on an H100: 2.4e-6 at x = 60); beyond that, no cancellation anywhere
    bound = 4e-7 * np.maximum(1.0, np.abs(xs))
    for k in ref:
        got = out[k].double().cpu().numpy().ravel()
        want = ref[k].ravel()
        rel = np.abs(got - want) / np.maximum(np.abs(want), 1e-37)
        assert (rel <= bound).all(), (k, rel, bound)


@pytest.mark.gpu
def test_no_state_sized_buffer_on_gpu():
    """Peak memory during the call stays within outputs + the chunked strategy's chunk states
    (3 buffers of chunks x [B, D, N]) + 1 MiB: h, of size [B, L, D, N], is never allocated."""
    B, L, D, N = 4, 1024, 512, 16
    c = ssmc.compile(mamba1)
    a = mamba1.random_inputs(dict(B=B, L=L, D=D, N=N))
    t = {k: torch.tensor(v, dtype=torch.bfloat16 if v.ndim == 3 else torch.float32, device="cuda") for k, v in a.items()}
    c(**t)  # compile outside the measurement
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out = c(**t)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    out_bytes = sum(v.numel() * v.element_size() for v in out.values())
    state_bytes = B * L * D * N * 4
    chunk_states = 3 * (L // 256) * B * D * N * 4
    assert peak <= out_bytes + chunk_states + (1 << 20), (peak, out_bytes, chunk_states, state_bytes)
    assert peak < state_bytes / 10


@pytest.mark.gpu
@pytest.mark.parametrize("held", ["registers", "tensor"])
def test_offsets_past_two_to_the_31(held):
    """One batch row of x holds more than 2^31 elements (L x D), so step offsets times the
    L stride pass int32: the last channels, computed in the big call, equal a call on those
    channels alone (the recurrence is per channel; same kernel arithmetic)."""
    L, D, N = 131075, 16400, 16
    assert L * D > 2**31
    g = torch.Generator(device="cuda").manual_seed(0)

    def r(*s):
        return torch.randn(*s, device="cuda", generator=g, dtype=torch.bfloat16)

    big = {"x": r(1, L, D), "dt": r(1, L, D), "z": r(1, L, D), "B": r(1, L, N), "C": r(1, L, N),
           "A_log": torch.log(torch.arange(1, N + 1, device="cuda").float()).repeat(D, 1),
           "D": torch.ones(D, device="cuda"), "dt_bias": torch.full((D,), -3.0, device="cuda")}
    c = ssmc.compile(mamba1, strategy="sequential", held=held)
    out = c(**big)
    tail = {k: (v[..., -32:].contiguous() if k in ("x", "dt", "z") else v[-32:] if k in ("A_log", "D", "dt_bias") else v)
            for k, v in big.items()}
    ref = c(**tail)
    assert torch.equal(out["y"][..., -32:], ref["y"])
    assert torch.equal(out["h_final"][:, -32:], ref["h_final"])
