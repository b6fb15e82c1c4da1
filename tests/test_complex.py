"""Complex recurrences (a dim of size 2 holding real and imaginary parts, torch.view_as_real's
layout): LRU and a selective reverse complex scan, in the interpreter against complex loops
written here, their autodiff against finite differences, every compiled form (sequential,
chunked, the backward split in time or not, deterministic, packed batches) against the
interpreter, gradients against torch autograd through a complex loop, and the errors."""

import numpy as np
import pytest
import torch
from conftest import DEVICE
from hypothesis import given, note
from hypothesis import strategies as st
from lru import lru
from test_backward import assert_matches_finite_differences

import ssmc
from ssmc import In, Param
from ssmc.backends.triton.backward import CompiledBackward
from ssmc.testing.check import check_compiled
from ssmc.testing.programs import complex_programs


@ssmc.layer(sizes={"RI": 2})
def selective_reverse(
    x: In["B L D RI"],
    k: In["B L D"],
    w: Param["D"],
    h0: In["B D RI"] = None,
):
    """h[t] = a[t] * h[t+1] + x[t] with a input-dependent complex decay sigmoid(k) e^(i w k),
    read out as |h|^2 and the real part of h times the decay (stack / part in the epilogue)."""
    r, phase = ssmc.sigmoid(k), w * k
    a = ssmc.stack(r * ssmc.cos(phase), r * ssmc.sin(phase), dim="RI")
    h = ssmc.scan(a, x, axis="L", reverse=True, h0=h0, complex="RI")
    re, im = ssmc.part(h, "RI", 0), ssmc.part(h, "RI", 1)
    return {"power": re * re + im * im, "mixed": ssmc.part(a, "RI", 1) * re, "h_final": h.final}


LAYERS = {"lru": lru, "selective_reverse": selective_reverse}


def _complex(x):
    return x[..., 0] + 1j * x[..., 1]


def lru_loop(bu, nu_log, theta_log, h0):
    lam = np.exp(-np.exp(nu_log) + 1j * np.exp(theta_log))
    gamma = np.sqrt(1 - np.abs(lam) ** 2)
    h = np.zeros(bu.shape[::2][:1] + bu.shape[2:3], complex) if h0 is None else _complex(h0)
    ys = []
    for t in range(bu.shape[1]):
        h = lam * h + gamma * _complex(bu[:, t])
        ys.append(h)
    y = np.stack(ys, 1) if ys else np.zeros((bu.shape[0], 0, bu.shape[2]), complex)
    return np.stack([y.real, y.imag], -1), np.stack([h.real, h.imag], -1)


def selective_reverse_loop(x, k, w, h0):
    a = 1 / (1 + np.exp(-k)) * np.exp(1j * w * k)
    h = np.zeros((x.shape[0], x.shape[2]), complex) if h0 is None else _complex(h0)
    hs = [None] * x.shape[1]
    for t in reversed(range(x.shape[1])):
        h = a[:, t] * h + _complex(x[:, t])
        hs[t] = h
    hs = np.stack(hs, 1)
    return {"power": np.abs(hs) ** 2, "mixed": a.imag * hs.real, "h_final": np.stack([h.real, h.imag], -1)}


@pytest.mark.parametrize("sizes", [dict(B=1, L=1, D=3), dict(B=2, L=7, D=5), dict(B=3, L=19, D=4)], ids=str)
@pytest.mark.parametrize("with_h0", [False, True])
def test_interpreter_matches_complex_loops(sizes, with_h0):
    args = lru.random_inputs(sizes, seed=2, optional=with_h0)
    out = lru(**args)
    y, h = lru_loop(args["bu"], args["nu_log"], args["theta_log"], args.get("h0"))
    np.testing.assert_allclose(out["y"], y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out["h_final"], h, rtol=1e-12, atol=1e-12)
    args = selective_reverse.random_inputs(sizes, seed=3, optional=with_h0)
    out = selective_reverse(**args)
    ref = selective_reverse_loop(args["x"], args["k"], args["w"], args.get("h0"))
    for name, v in ref.items():
        np.testing.assert_allclose(out[name], v, rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("L", [1, 9])
def test_autodiff_matches_finite_differences(name, L):
    """The complex scan's rule (the cotangent back through conj(a); the decay's, G conj(h[t-1]))."""
    assert_matches_finite_differences(LAYERS[name], dict(B=2, L=L, D=3, RI=2))


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("strategy", ["sequential", "chunked", "tiled"])
def test_compiled_forward_matches_interpreter(name, strategy):
    """Every strategy (tiled runs the sequential loop for a complex scan, its header says why)."""
    c = ssmc.compile(LAYERS[name], strategy=strategy, chunks=3, verify=True)
    for dtype, L, nc in (("f32", 1, False), ("f32", 13, True), ("bf16", 10, False)):
        sizes = dict(B=2, L=L, D=5, RI=2)
        bad = [str(r) for r in check_compiled(c.layer, c, sizes, dtype, L, DEVICE, True, noncontiguous=nc) if not r.ok]
        assert not bad, (dtype, L, bad)


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("options", [{}, {"chunks": 3}, {"split_time": False}, {"deterministic": True, "chunks": 2}],
                         ids=["default", "split", "unsplit", "deterministic"])
def test_compiled_backward_matches_interpreter(name, options):
    options = dict(options)
    det = options.pop("deterministic", False)
    c = CompiledBackward(LAYERS[name], unroll=2, sub=2, verify=True, **options)
    c.deterministic = det
    for L in (1, 6, 13):
        sizes = dict(B=2, L=L, D=5, RI=2)
        bad = [str(r) for r in check_compiled(c.layer, c, sizes, "f32", L, DEVICE, True) if not r.ok]
        assert not bad, (L, bad)


def lru_torch(bu, nu_log, theta_log, h0):
    lam = torch.polar(torch.exp(-torch.exp(nu_log)), torch.exp(theta_log))
    gamma = torch.sqrt(1 - lam.abs() ** 2)
    h, ys = torch.view_as_complex(h0), []
    for t in range(bu.shape[1]):
        h = lam * h + gamma * torch.view_as_complex(bu[:, t].contiguous())
        ys.append(h)
    return {"y": torch.view_as_real(torch.stack(ys, 1)), "h_final": torch.view_as_real(h)}


def test_lru_gradients_match_torch_autograd():
    """Through the compiled layer's autograd (generated backward kernels) against torch autograd
    through a loop over complex tensors, float64."""
    values = lru.random_inputs(dict(B=2, L=11, D=5), seed=4, optional=True)
    ref_in = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in values.items()}
    got_in = {k: torch.tensor(v, dtype=torch.float32, device=DEVICE, requires_grad=True) for k, v in values.items()}
    got, ref = ssmc.compile(lru)(**got_in), lru_torch(**ref_in)
    rng = np.random.default_rng(5)
    cots = {k: rng.standard_normal(tuple(v.shape)) for k, v in ref.items()}
    loss_ref = sum((ref[k] * torch.tensor(w)).sum() for k, w in cots.items())
    loss_got = sum((got[k].double() * torch.tensor(w, device=DEVICE)).sum() for k, w in cots.items())
    g_ref = torch.autograd.grad(loss_ref, list(ref_in.values()))
    g_got = torch.autograd.grad(loss_got, list(got_in.values()))
    for name, a, b in zip(ref_in, g_got, g_ref):
        torch.testing.assert_close(a.cpu().double(), b, rtol=2e-4, atol=2e-5 * float(b.abs().max()) + 1e-6, msg=name)


def test_packed_batch_equals_each_sequence_alone():
    lengths = [4, 1, 9]
    values = lru.random_inputs(dict(B=3, L=9, D=4), seed=6, optional=True)
    c = ssmc.compile(lru, chunks=2)
    t = {k: torch.tensor(v, dtype=torch.float32, device=DEVICE) for k, v in values.items()}
    packed = dict(t, bu=torch.cat([t["bu"][i, :n] for i, n in enumerate(lengths)])[None])
    cu = torch.tensor(np.cumsum([0] + lengths), dtype=torch.int32, device=DEVICE)
    out = c(**packed, cu_seqlens=cu)
    for i, n in enumerate(lengths):
        one = c(**dict(t, bu=t["bu"][i : i + 1, :n], h0=t["h0"][i : i + 1]))
        start = int(cu[i])
        torch.testing.assert_close(out["y"][0, start : start + n], one["y"][0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out["h_final"][i], one["h_final"][0], rtol=1e-5, atol=1e-6)


def test_stepping_equals_the_full_forward():
    m = ssmc.to_module(lru, sizes=dict(D=4)).to(DEVICE)
    bu = torch.randn(2, 6, 4, 2, device=DEVICE)
    full = m(bu=bu)
    state, ys = None, []
    for t in range(6):
        y, state = m.step(state, bu=bu[:, t])
        ys.append(y["y"])
    torch.testing.assert_close(torch.stack(ys, 1), full["y"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state["h_final"], full["h_final"], rtol=1e-5, atol=1e-6)


class LRUBlock(torch.nn.Module):
    """in_proj -> B u (complex, as view_as_real) -> the LRU recurrence (generated kernels) ->
    Re(C h) -> out_proj: the LRU paper's layer around ssmc's recurrence."""

    def __init__(self, d_model: int = 6, d: int = 5) -> None:
        super().__init__()
        self.B = torch.nn.Linear(d_model, 2 * d, bias=False)
        self.lru = ssmc.to_module(lru, dict(D=d))
        self.C = torch.nn.Linear(2 * d, d_model)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        bu = self.B(u).unflatten(-1, (-1, 2))
        h = self.lru(bu=bu)["y"]
        return self.C(h.flatten(-2))


def test_block_under_torch_compile_fullgraph():
    torch.manual_seed(0)
    m, u = LRUBlock().to(DEVICE), torch.randn(2, 7, 6, device=DEVICE)
    ref = m(u)
    ref.square().sum().backward()
    grads = {k: p.grad.clone() for k, p in m.named_parameters()}
    m.zero_grad()
    out = torch.compile(m, fullgraph=True, backend="aot_eager")(u)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    out.square().sum().backward()
    for k, p in m.named_parameters():
        torch.testing.assert_close(p.grad, grads[k], rtol=1e-4, atol=1e-5, msg=k)


def test_decode_from_a_bf16_cache_equals_the_full_forward():
    """k tokens, then single tokens, from a cache stored in bfloat16 (float32 compute)."""
    m = ssmc.to_module(lru, sizes=dict(D=4)).to(DEVICE)
    bu = torch.randn(3, 7, 4, 2, device=DEVICE)
    full = m(bu=bu)
    cache = m.new_cache(3, dtype=torch.bfloat16, device=DEVICE)
    first = m.decode(cache, bu=bu[:, :4])
    ys = [first["y"]] + [m.decode(cache, bu=bu[:, t])["y"][:, None] for t in range(4, 7)]
    # the cache rounds the state to bfloat16 after each call: bf16's rounding, not more
    torch.testing.assert_close(torch.cat(ys, 1), full["y"], rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(first["y"], full["y"][:, :4], rtol=1e-5, atol=1e-6)


def test_errors_name_the_rule():
    with pytest.raises(ssmc.DefinitionError, match=r"declare its size, @ssmc.layer\(sizes=\{'RI': 2\}\)"):
        @ssmc.layer
        def undeclared(x: In["B L D RI"], a: In["B L D RI"]):
            return {"y": ssmc.scan(a, x, axis="L", complex="RI")}
    with pytest.raises(ssmc.DefinitionError, match="a \\['B', 'L', 'D'\\] lacks it"):
        @ssmc.layer(sizes={"RI": 2})
        def real_decay(x: In["B L D RI"], a: In["B L D"]):
            return {"y": ssmc.scan(a, x, axis="L", complex="RI")}
    with pytest.raises(ssmc.DefinitionError, match="index 2"):
        @ssmc.layer(sizes={"RI": 2})
        def bad_part(x: In["B L D RI"]):
            return {"y": ssmc.part(x, "RI", 2)}
    with pytest.raises(ssmc.ArgumentError, match="RI"):
        lru(bu=np.zeros((1, 3, 2, 3)), nu_log=np.zeros(2), theta_log=np.zeros(2))


# --- random complex programs (hypothesis; `make fuzz` draws many more) ----------------------


@given(p=complex_programs(), seed=st.integers(0, 1000))
def test_autodiff_of_random_complex_programs_matches_finite_differences(p, seed):
    note(p.source)
    from ssmc.autodiff import backward_layer
    from ssmc.ops.interpret import align, to_canonical

    layer, rng = p.layer, np.random.default_rng(seed)
    bl = backward_layer(layer)
    inp = layer.random_inputs(p.sizes, seed, optional=True)
    cots = {k: rng.standard_normal(v.shape) for k, v in layer(**inp).items()}
    grads = bl(**inp, **{"grad_" + k: v for k, v in cots.items()})

    def f(values):
        out = layer(**values)
        return sum(float((out[k] * cots[k]).sum()) for k in cots)

    eps = 1e-6
    for arg, value in inp.items():
        if "grad_" + arg not in grads:  # an argument no output depends on (h0 of a scan unused)
            continue
        v = rng.standard_normal(value.shape)
        numeric = (f({**inp, arg: value + eps * v}) - f({**inp, arg: value - eps * v})) / (2 * eps)
        spec = layer.specs[arg]
        cdims = tuple(d for d in layer.dim_order if d in spec.layout)
        got = align(grads["grad_" + arg], bl.graph.output("grad_" + arg).dims, cdims)
        analytic = float((got * to_canonical(v, spec.layout, cdims)).sum())
        assert abs(numeric - analytic) <= 1e-5 * max(1.0, abs(numeric)), (arg, numeric, analytic)


@given(p=complex_programs(), strategy=st.sampled_from(["sequential", "chunked", "tiled"]), chunks=st.integers(2, 3),
       dtype=st.sampled_from(["f32", "bf16"]), seed=st.integers(0, 1000))
def test_random_complex_programs_kernels_match_interpreter(p, strategy, chunks, dtype, seed):
    note(p.source)
    c = ssmc.compile(p.layer, strategy=strategy, chunks=chunks, unroll=2, block_t=4, verify=True)
    bad = [str(r) for r in check_compiled(p.layer, c, p.sizes, dtype, seed, DEVICE) if not r.ok]
    assert not bad, "\n".join(bad) + "\n" + p.source


@given(p=complex_programs(), dtype=st.sampled_from(["f32", "bf16"]), seed=st.integers(0, 1000),
       chunks=st.sampled_from([None, 2, 3]), split_time=st.booleans())
def test_random_complex_programs_backward_kernels_match_interpreter(p, dtype, seed, chunks, split_time):
    note(p.source)
    c = CompiledBackward(p.layer, unroll=2, block=4, sub=2, verify=True, chunks=chunks, split_time=split_time)
    bad = [str(r) for r in check_compiled(c.layer, c, p.sizes, dtype, seed, DEVICE) if not r.ok]
    assert not bad, "\n".join(bad) + "\n" + p.source


@ssmc.layer(sizes={"RI": 2})
def bidirectional_lru(bu: In["B L D RI"], nu_log: Param["D", "lru_nu_log"], theta_log: Param["D", "lru_theta_log"]):
    mag, phase = ssmc.exp(-ssmc.exp(nu_log)), ssmc.exp(theta_log)
    lam = ssmc.stack(mag * ssmc.cos(phase), mag * ssmc.sin(phase), dim="RI")
    return {"y": ssmc.scan(lam, bu, axis="L", complex="RI") + ssmc.scan(lam, bu, axis="L", reverse=True, complex="RI")}


def test_bidirectional_complex_layer():
    """Complex scans both ways: finite differences, the forward in two kernels and in one
    (strategy="bidir"), the backward of the two recurrences (MultiBackward)."""
    from ssmc.backends.triton.backward import MultiBackward, backward_for

    sizes = dict(B=2, L=9, D=4, RI=2)
    assert_matches_finite_differences(bidirectional_lru, dict(sizes, L=6))
    for strategy in (None, "bidir"):
        c = ssmc.compile(bidirectional_lru, strategy=strategy, verify=True)
        bad = [str(r) for r in check_compiled(bidirectional_lru, c, sizes, "f32", 1, DEVICE, True) if not r.ok]
        assert not bad, (strategy, bad)
    b = backward_for(bidirectional_lru, unroll=2, sub=2, verify=True)
    assert isinstance(b, MultiBackward)
    bad = [str(r) for r in check_compiled(b.layer, b, sizes, "f32", 1, DEVICE, True) if not r.ok]
    assert not bad, bad
