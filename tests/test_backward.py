"""Backward: the autodiff graph against finite differences of the interpreter, the generated
backward kernels against the interpreter, and gradients through the kernels against torch
autograd through straightforward PyTorch loops."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
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
from ssmc.autodiff import backward_layer
from ssmc.backends.triton.backward import CompiledBackward, MultiBackward, backward_for
from ssmc.backends.triton.kernel_ir import ScanStep
from ssmc.errors import LoweringError
from ssmc.ops.interpret import to_canonical
from ssmc.testing.check import check_compiled, make_inputs


@ssmc.layer
def reverse_tanh(x: In["B L D"], k: In["B L D"], w: Param["N D", "normal"], h0: In["B D N"] = None):
    """A reverse scan with a readout nonlinear in h: the cotangent scan reads the forward's states."""
    h = ssmc.scan(ssmc.sigmoid(k), x * w, axis="L", reverse=True, h0=h0)
    return {"y": ssmc.tanh(h).sum("N"), "h_final": h.final}


@ssmc.layer
def final_only(x: In["B L D"], k: In["B L D"], b: Param["D", "zeros"]):
    """Only the final state leaves: the cotangent scan starts from its cotangent, with no input."""
    return {"h": ssmc.scan(ssmc.sigmoid(k + b), x, axis="L").final}


@ssmc.layer
def bidirectional(x: In["B L D"], k: In["B L D"]):
    a = ssmc.sigmoid(k)
    return {"y": ssmc.scan(a, x, axis="L") + ssmc.scan(a, x, axis="L", reverse=True)}


LAYERS = {
    "mamba1": mamba1, "s4d_zoh": s4d_zoh, "s4d_bilinear": s4d_bilinear, "mingru": mingru,
    "reverse_tanh": reverse_tanh, "final_only": final_only, "hgrn": hgrn, "rglru": rglru, "mamba2": mamba2, "gla": gla,
}


def sizes_for(layer, B=2, L=7, D=3, N=4):
    s = {"B": B, "L": L, "D": D, "H": D, "N": N, "G": 1 + D % 3, "R": 1 + D % 2, "P": 1 + D // 4,
         "K": N, "V": D}
    return {d: s[d] for d in layer.dim_order}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_autodiff_matches_finite_differences(name):
    assert_matches_finite_differences(LAYERS[name], sizes_for(LAYERS[name]))


def assert_matches_finite_differences(layer, sizes):
    """The backward layer's gradients (the registry's rules) against float64 central
    differences of the interpreter along a random direction, for every argument."""
    rng = np.random.default_rng(0)
    inp = layer.random_inputs(sizes, 0, optional=True)
    outs = layer(**inp)
    cots = {k: rng.standard_normal(v.shape) for k, v in outs.items()}
    grads = backward_layer(layer)(**inp, **{"grad_" + k: v for k, v in cots.items()})

    def f(values):
        return sum(float((layer(**values)[k] * cots[k]).sum()) for k in cots)

    eps = 1e-6
    for arg, value in inp.items():
        v = rng.standard_normal(value.shape)
        numeric = (f({**inp, arg: value + eps * v}) - f({**inp, arg: value - eps * v})) / (2 * eps)
        spec = layer.specs[arg]
        g = grads["grad_" + arg]
        analytic = float((g * to_canonical(v, spec.layout, tuple(d for d in layer.dim_order if d in spec.layout))).sum())
        assert abs(numeric - analytic) <= 1e-6 * max(1.0, abs(numeric)), (arg, numeric, analytic)


_COMPILED: dict = {}


def compiled_backward(name, unroll=4, block=None, sub=None, prefetch=False, chunks=None):
    key = (name, unroll, block, sub, prefetch, chunks)
    if key not in _COMPILED:
        _COMPILED[key] = CompiledBackward(LAYERS[name], unroll=unroll, block=block, sub=sub, verify=True,
                                          prefetch=prefetch, chunks=chunks)
    return _COMPILED[key]


max_len = 300 if HAS_GPU else 40


@given(
    name=st.sampled_from(sorted(LAYERS)),
    dtype=st.sampled_from(["f32", "bf16", "f16"]),
    B=st.integers(1, 3),
    L=st.integers(1, max_len),
    D=st.integers(1, 21),
    N=st.integers(1, 19),
    with_optional=st.booleans(),
    noncontiguous=st.booleans(),
    # (steps per chunk, channels per program, chunks between checkpoints, loads a chunk ahead)
    tiles=st.sampled_from([(4, None, None, False), (1, 2, 3, True), (3, 4, 2, False), (2, None, 1, True)]),
    chunks=st.sampled_from([None, 3]),  # the sequence split among programs (on the CPU: only if asked)
    seed=st.integers(0, 2**16),
)
def test_backward_kernels_match_interpreter(name, dtype, B, L, D, N, with_optional, noncontiguous, tiles, chunks, seed):
    c = compiled_backward(name, *tiles, chunks=chunks)
    results = check_compiled(c.layer, c, sizes_for(LAYERS[name], B, L, D, N), dtype, seed, DEVICE, with_optional, noncontiguous)
    bad = [str(r) for r in results if not r.ok]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("L", [1, 2, 3, 4, 5, 8, 9])
def test_backward_lengths_around_the_tile(L):
    for name in ("mamba1", "reverse_tanh"):
        for prefetch in (False, True):
            c = compiled_backward(name, 2, 2, 2, prefetch)
            results = check_compiled(c.layer, c, sizes_for(LAYERS[name], 2, L, 3, 2), "f32", L, DEVICE)
            assert all(r.ok for r in results), [str(r) for r in results]


@pytest.mark.parametrize("D", [8, 7])
def test_sums_across_channels_where_blocks_tile_the_dim_or_not(D):
    """The main kernel's sums over its block of channels (Mamba-1's dB and dC each step) drop
    their mask where the blocks tile D exactly (``EVEN_D``, ``Kernel.sum_even_dims``) and keep it
    where the last block is cut: both against the interpreter."""
    from ssmc.backends.triton.schedule import choose

    c = compiled_backward("mamba1", 2, 4, 2, True)
    main = c.plans("bidir")[0].kernels[-1]
    assert main.sum_even_dims == ("D",)
    sizes = sizes_for(LAYERS["mamba1"], 2, 9, D, 3)
    assert dict(choose(main, sizes, False, "bidir", block_tiled=4).even)["D"] == (D % 4 == 0)
    results = check_compiled(c.layer, c, sizes, "f32", D, DEVICE, True)
    assert all(r.ok for r in results), [str(r) for r in results if not r.ok]


@pytest.mark.parametrize("name", ["mamba1", "reverse_tanh", "s4d_zoh"])
def test_phase_a0_loads_a_chunk_ahead(name):
    """``prefetch_a0``: the main kernel's recomputed forward scan over a checkpoint span (phase
    A0) takes each chunk's loads from the chunk before it (a reverse forward scan's from the
    chunk after): every gradient against the interpreter at lengths that end mid-chunk,
    mid-span and past several spans, split in time or not, in the tensor form and held as
    registers."""
    for chunks, held in ((None, False), (3, False), (None, True)):
        c = CompiledBackward(LAYERS[name], unroll=2, sub=2, verify=True, prefetch=True, chunks=chunks,
                             held_bidir=held, prefetch_a0=True)
        for L in (1, 2, 5, 9, 17):
            results = check_compiled(c.layer, c, sizes_for(LAYERS[name], 2, L, 3, 2), "f32", L, DEVICE, True)
            assert all(r.ok for r in results), (chunks, held, L, [str(r) for r in results if not r.ok])
        assert any("_zf0 = tl.load(" in src for src in c.sources("bidir", sizes_for(LAYERS[name], 2, 9, 3, 2))), name


@pytest.mark.parametrize("name", ["mamba1", "s4d_zoh", "hgrn"])
def test_backward_split_in_time(name):
    """The main kernel's sequence split among programs (chunks of whole spans of checkpoints,
    aligned at step 0, each starting its carried scan from the carried chunk-states pass):
    lengths shorter than a span, between spans, and past several chunks; every gradient,
    the initial state's (the last chunk's to store) and sums over time (added by every chunk)
    included."""
    for chunks in (2, 3, 5):
        c = compiled_backward(name, 2, 2, 2, True, chunks)
        assert c.plans("bidir")[0].kernels[-1].chunked
        for L in (1, 3, 4, 9, 17, 26):
            results = check_compiled(c.layer, c, sizes_for(LAYERS[name], 2, L, 3, 2), "f32", L + chunks, DEVICE, True)
            assert all(r.ok for r in results), (chunks, L, [str(r) for r in results if not r.ok])


def test_scanless_kernels_in_time_tiles():
    """``time_tiles``: a backward's kernels with no scan (Mamba-2's recurrent backward sums
    per step over P after its main kernel) take their steps a tile at a time; every gradient
    against the interpreter, one step, tiles cut at the end, the sequence split or not."""
    for chunks in (None, 3):
        c = CompiledBackward(mamba2, unroll=2, sub=2, verify=True, chunks=chunks, time_tiles=True)
        assert [k.time_tile for p in c.plans("bidir") for k in p.kernels if k.strategy == "bidir"] == [False, True]
        for L in (1, 6, 13):
            results = check_compiled(c.layer, c, sizes_for(mamba2, 2, L, 5, 3), "f32", L, DEVICE, True)
            assert all(r.ok for r in results), (chunks, L, [str(r) for r in results if not r.ok])


@pytest.mark.parametrize("name", ["mamba1", "s4d_zoh", "mamba2", "gla"])
def test_register_held_main_kernel(name):
    """The backward's main kernel with its whole dims held as registers (``held_bidir``; one
    variable per index, as the forward's register-held kernels): every gradient against the
    interpreter, split in time or not, with loads a chunk ahead or not, in deterministic mode
    too (its sums across programs then in per-program slots)."""
    for chunks, prefetch, det in ((None, True, False), (3, True, False), (3, False, True)):
        c = CompiledBackward(LAYERS[name], unroll=2, sub=2, verify=True, prefetch=prefetch, chunks=chunks, held_bidir=True)
        c.deterministic = det
        for L in (1, 6, 13):
            sizes = sizes_for(LAYERS[name], 2, L, 5, 3)
            results = check_compiled(c.layer, c, sizes, "f32", L, DEVICE, True)
            assert all(r.ok for r in results), (chunks, prefetch, L, [str(r) for r in results if not r.ok])
        assert any(key[0] == "bidir" for key in c._held_plans), "the main kernel was not register-held"


# --- against torch autograd through straightforward loops -----------------------------------


def mamba1_torch(x, dt, B, C, z, A_log, D, dt_bias, h0):
    delta = F.softplus(dt + dt_bias)
    A = -torch.exp(A_log)
    h, ys = h0, []
    for t in range(x.shape[1]):
        a = torch.exp(delta[:, t, :, None] * A)
        h = a * h + (delta[:, t] * x[:, t])[:, :, None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1))
    y = torch.stack(ys, 1) + D * x
    return {"y": y * F.silu(z), "h_final": h}


def mamba2_torch(x, dt, B, C, z, A_log, D, dt_bias, h0):
    """[B, L, G, R, P] heads; h [B, G, R, P, N]."""
    delta = F.softplus(dt + dt_bias)
    decay = torch.exp(-torch.exp(A_log) * delta)  # [B, L, G, R]
    h, ys = h0, []
    for t in range(x.shape[1]):
        u = (delta[:, t, :, :, None] * x[:, t])[..., None] * B[:, t, :, None, None, :]
        h = decay[:, t, :, :, None, None] * h + u
        ys.append((h * C[:, t, :, None, None, :]).sum(-1))
    y = torch.stack(ys, 1) + D[:, :, None] * x
    return {"y": y * F.silu(z), "h_final": h}


def gla_torch(q, k, v, g, h0):
    S, os_ = h0, []
    for t in range(q.shape[1]):
        S = torch.exp(g[:, t])[..., None] * S + k[:, t, :, :, None] * v[:, t, :, None, :]
        os_.append((S * q[:, t, :, :, None]).sum(-2))
    return {"o": torch.stack(os_, 1), "h_final": S}


def s4d_zoh_torch(u, log_dt, A_log, B, C, D, h0):
    dt, A = torch.exp(log_dt)[:, None], -torch.exp(A_log)
    Abar = torch.exp(dt * A)
    Bbar = (Abar - 1) / A * B
    h, ys = h0, []
    for t in range(u.shape[1]):
        h = Abar * h + Bbar * u[:, t, :, None]
        ys.append((h * C).sum(-1))
    return {"y": torch.stack(ys, 1) + D * u, "h_final": h}


def mingru_torch(k, x_tilde, b, h0):
    a = torch.sigmoid(k + b)
    h, hs = h0, []
    for t in range(k.shape[1]):
        h = (1 - a[:, t]) * h + a[:, t] * x_tilde[:, t]
        hs.append(h)
    return {"y": torch.stack(hs, 1), "h_final": h}


def hgrn_torch(x, g, h0):
    h, hs = h0, []
    for t in range(x.shape[1]):
        h = torch.exp(g[:, t]) * h + x[:, t]
        hs.append(h)
    return {"y": torch.stack(hs, 1), "h_final": h}


def rglru_torch(x, gate_a, gate_x, Lambda, h0):
    h, hs = h0, []
    a = torch.sigmoid(Lambda) ** (8 * torch.sigmoid(gate_a))
    for t in range(x.shape[1]):
        h = a[:, t] * h + torch.sqrt(1 - a[:, t] ** 2) * (torch.sigmoid(gate_x[:, t]) * x[:, t])
        hs.append(h)
    return {"y": torch.stack(hs, 1), "h_final": h}


@pytest.mark.parametrize(
    "layer,reference",
    [(mamba1, mamba1_torch), (s4d_zoh, s4d_zoh_torch), (mingru, mingru_torch), (hgrn, hgrn_torch), (rglru, rglru_torch),
     (mamba2, mamba2_torch), (gla, gla_torch)],
    ids=["mamba1", "s4d_zoh", "mingru", "hgrn", "rglru", "mamba2", "gla"],
)
def test_gradients_match_torch_autograd(layer, reference):
    sizes = sizes_for(layer, B=2, L=11, D=5, N=3)
    values = make_inputs(layer, sizes, "f32", seed=4)
    ref_in = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in values.items()}
    got_in = {k: torch.tensor(v, dtype=torch.float32, device=DEVICE, requires_grad=True) for k, v in values.items()}
    c = ssmc.compile(layer)
    got, ref = c(**got_in), reference(**ref_in)
    rng = np.random.default_rng(5)
    cots = {k: rng.standard_normal(tuple(v.shape)) for k, v in ref.items()}
    loss_ref = sum((ref[k] * torch.tensor(w)).sum() for k, w in cots.items())
    loss_got = sum((got[k].double() * torch.tensor(w, device=DEVICE)).sum() for k, w in cots.items())
    g_ref = torch.autograd.grad(loss_ref, list(ref_in.values()))
    g_got = torch.autograd.grad(loss_got, list(got_in.values()))
    for name, a, b in zip(ref_in, g_got, g_ref):
        assert a.shape == b.shape, name
        torch.testing.assert_close(a.cpu().double(), b, rtol=2e-4, atol=2e-5 * float(b.abs().max()) + 1e-6, msg=name)


def test_module_trains():
    """Gradients reach the parameters of an exported module, and a few steps lower a loss."""
    sizes = dict(B=2, L=12, D=4, N=3)
    torch.manual_seed(0)
    m = ssmc.to_module(mamba1, sizes).to(DEVICE)
    x = {k: torch.tensor(v, dtype=torch.float32, device=DEVICE) for k, v in make_inputs(mamba1, sizes, "f32", 1, False).items() if k in mamba1.inputs}
    target = torch.randn(2, 12, 4, device=DEVICE)
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    losses = []
    for _ in range(15):
        loss = ((m(**x)["y"] - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], losses


@pytest.mark.parametrize("chunks", [None, 3])
def test_packed_batch_gradients_equal_per_sequence_gradients(chunks):
    # chunks: the backward's sequence split among programs, chunked by the longest sequence
    # (shorter ones end early; programs past their start hold their final state)
    sizes = dict(B=3, L=9, D=4, N=3)
    lengths = [4, 9, 2]
    values = make_inputs(mamba1, sizes, "f32", seed=6)
    c = ssmc.compile(mamba1, chunks=chunks)
    seq = [k for k, s in mamba1.specs.items() if "L" in s.layout]
    packed = {k: torch.tensor(np.concatenate([values[k][i, :n] for i, n in enumerate(lengths)])[None], dtype=torch.float32, device=DEVICE, requires_grad=True) if k in seq
              else torch.tensor(values[k], dtype=torch.float32, device=DEVICE, requires_grad=True) for k in values}
    cu = torch.tensor(np.cumsum([0] + lengths), dtype=torch.int32, device=DEVICE)
    out = c(**packed, cu_seqlens=cu)
    (out["y"].square().sum() + out["h_final"].sum()).backward()
    param_grads = {k: torch.zeros_like(packed[k]) for k in values if k not in seq}
    for i, n in enumerate(lengths):
        one = {k: torch.tensor(values[k][i : i + 1, :n] if k in seq else (values[k][i : i + 1] if k == "h0" else values[k]),
                               dtype=torch.float32, device=DEVICE, requires_grad=True) for k in values}
        o = c(**one)
        (o["y"].square().sum() + o["h_final"].sum()).backward()
        start = int(cu[i])
        for k in seq:
            torch.testing.assert_close(packed[k].grad[0, start : start + n], one[k].grad[0], rtol=1e-4, atol=1e-5, msg=k)
        torch.testing.assert_close(packed["h0"].grad[i], one["h0"].grad[0], rtol=1e-4, atol=1e-5)
        for k in param_grads:
            if k != "h0":
                param_grads[k] += one[k].grad
    for k, g in param_grads.items():
        if k != "h0":
            torch.testing.assert_close(packed[k].grad, g, rtol=1e-4, atol=1e-5, msg=k)


def test_split_backward_of_a_packed_batch_with_an_empty_sequence():
    """The split backward on a packed batch whose sequences are shorter than the chunking's
    (an empty one too): the gradients equal the unsplit backward's, and the empty sequence's
    initial-state gradient is its final state's."""
    lengths = [5, 0, 9, 1]
    values = make_inputs(mamba1, dict(B=4, L=9, D=3, N=2), "f32", seed=3)
    seq = [k for k, s in mamba1.specs.items() if "L" in s.layout]
    cu = torch.tensor(np.cumsum([0] + lengths), dtype=torch.int32, device=DEVICE)
    grads = {}
    for chunks in (None, 3):
        c = ssmc.compile(mamba1, chunks=chunks)
        packed = {k: torch.tensor(np.concatenate([values[k][i, :n] for i, n in enumerate(lengths)])[None] if k in seq else values[k],
                                  dtype=torch.float32, device=DEVICE, requires_grad=True) for k in values}
        out = c(**packed, cu_seqlens=cu)
        weight = torch.arange(out["h_final"].numel(), dtype=torch.float32, device=DEVICE).reshape(out["h_final"].shape)
        (out["y"].square().sum() + (out["h_final"] * weight).sum()).backward()
        grads[chunks] = {k: v.grad for k, v in packed.items()}
    for k in values:
        torch.testing.assert_close(grads[3][k], grads[None][k], rtol=1e-5, atol=1e-5, msg=k)
    torch.testing.assert_close(grads[3]["h0"][1], weight[1])


def test_backward_of_chained_recurrences_is_refused_by_name():
    with pytest.raises(LoweringError, match=r"chained: the backward of a layer with 2 recurrences, one reading another's states"):
        backward_layer(chained)


# --- several recurrences side by side (bidirectional layers) ---------------------------------


@ssmc.layer
def bidirectional_gated(x: In["B L D"], k: In["B L D"], z: In["B L D"], kr: In["B L D"], h0: In["B D"] = None):
    """The gate's dz needs both scans' sum: a forward pass saves it for each direction's part."""
    f = ssmc.scan(ssmc.sigmoid(k), x, axis="L", h0=h0)
    r = ssmc.scan(ssmc.sigmoid(kr), x * z, axis="L", reverse=True)
    return {"y": ssmc.gate(f + r, z), "h_final": f.final}


@ssmc.layer
def states_product(x: In["B L D"], k: In["B L D"], w: Param["D N", "normal"]):
    """Each direction's cotangent needs the other's [B, L, D, N] states: refused."""
    a = ssmc.sigmoid(k)
    return {"y": (ssmc.scan(a, x * w, axis="L") * ssmc.scan(a, x * w, axis="L", reverse=True)).sum("N")}


MULTI = {"bidirectional": bidirectional, "bidirectional_gated": bidirectional_gated}


@pytest.mark.parametrize("name", sorted(MULTI))
def test_backward_of_recurrences_side_by_side_matches_finite_differences(name):
    """The sum of the per-recurrence parts (autodiff.backward_parts) is the gradient."""
    assert_matches_finite_differences(MULTI[name], dict(B=2, L=7, D=3))
    assert_matches_finite_differences(states_product, dict(B=2, L=5, D=2, N=2))


@pytest.mark.parametrize("name", sorted(MULTI))
@pytest.mark.parametrize("options", [{}, {"chunks": 3}, {"split_time": False}, {"deterministic": True}],
                         ids=["default", "split", "unsplit", "deterministic"])
def test_multi_backward_matches_interpreter(name, options):
    options = dict(options)
    det = options.pop("deterministic", False)
    c = backward_for(MULTI[name], unroll=2, sub=2, verify=True, **options)
    assert isinstance(c, MultiBackward) and len(c.parts) == 2
    c.deterministic = det
    for L in (1, 9):
        for dtype in ("f32", "bf16"):
            bad = [str(r) for r in check_compiled(c.layer, c, dict(B=2, L=L, D=5), dtype, L, DEVICE, True) if not r.ok]
            assert not bad, (L, dtype, bad)


def bidirectional_gated_torch(x, k, z, kr, h0):
    f, r, fs, rs = h0, torch.zeros_like(h0), [], [None] * x.shape[1]
    for t in range(x.shape[1]):
        f = torch.sigmoid(k[:, t]) * f + x[:, t]
        fs.append(f)
    for t in reversed(range(x.shape[1])):
        r = torch.sigmoid(kr[:, t]) * r + x[:, t] * z[:, t]
        rs[t] = r
    y = torch.stack(fs, 1) + torch.stack(rs, 1)
    return {"y": y * z * torch.sigmoid(z), "h_final": f}


def test_bidirectional_gradients_match_torch_autograd():
    """Through the compiled layer's autograd (MultiBackward) against torch autograd, float64."""
    values = make_inputs(bidirectional_gated, dict(B=2, L=10, D=4), "f32", seed=4)
    ref_in = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in values.items()}
    got_in = {k: torch.tensor(v, dtype=torch.float32, device=DEVICE, requires_grad=True) for k, v in values.items()}
    got, ref = ssmc.compile(bidirectional_gated)(**got_in), bidirectional_gated_torch(**ref_in)
    cots = {k: torch.randn(v.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) for k, v in ref.items()}
    g_ref = torch.autograd.grad(sum((ref[k] * c).sum() for k, c in cots.items()), list(ref_in.values()))
    g_got = torch.autograd.grad(sum((got[k].double() * c.to(DEVICE)).sum() for k, c in cots.items()), list(got_in.values()))
    for name, a, b in zip(ref_in, g_got, g_ref):
        torch.testing.assert_close(a.cpu().double(), b, rtol=2e-4, atol=2e-5 * float(b.abs().max()) + 1e-6, msg=name)


def test_multi_backward_needing_another_recurrences_states_is_refused():
    with pytest.raises(LoweringError, match=r"needs another's states \(\['B', 'L', 'D', 'N'\]\)"):
        backward_for(states_product)


def test_checkpoint_pass_holds_the_state_as_registers():
    """The backward's states passes (the recomputed forward scan's checkpoints; the carried
    scan's chunk states of a split sequence) hold a small state as registers, like the
    forward's kernels; the gradients equal the tensor forms'."""
    a = mamba1.random_inputs(dict(B=2, L=40, D=5, N=4), seed=4, optional=True)
    grads = {}
    for held in (None, "tensor"):
        c = ssmc.compile(mamba1, held=held, chunks=3)
        x = {k: torch.tensor(v, dtype=torch.float32, device=DEVICE, requires_grad=True) for k, v in a.items()}
        c(**x)["y"].sum().backward()
        grads[held] = {k: v.grad for k, v in x.items()}
        passes = {key[0] for key in c.backward_compiled()._held_plans}
        assert passes == ({"checkpoints", "carried"} if held is None else set()), passes
    for k in a:
        torch.testing.assert_close(grads[None][k], grads["tensor"][k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["bimamba", "bidirectional_gated"])
def test_bidirectional_forward_in_one_kernel(name):
    """strategy="bidir": both directions in one main kernel (the forward direction recomputed
    from checkpoints, as the backward's kernel does), against the interpreter."""
    from bimamba import bimamba

    layer = {"bimamba": bimamba, "bidirectional_gated": bidirectional_gated}[name]
    for chunks in (None, 3):
        c = ssmc.compile(layer, strategy="bidir", chunks=chunks, verify=True)
        for L, dtype in ((1, "f32"), (9, "f32"), (14, "bf16")):
            sizes = {d: {"B": 2, "L": L, "D": 5, "N": 3}[d] for d in layer.dim_order}
            bad = [str(r) for r in check_compiled(layer, c, sizes, dtype, L, DEVICE, True) if not r.ok]
            assert not bad, (chunks, L, dtype, bad)
    main = [k for k in c.bidir_forward().kernels("bidir") if k.strategy == "bidir"]
    assert len(main) == 1 and sum(isinstance(s, ScanStep) for s in main[0].loop) == 2  # both scans, one kernel


def test_bidir_strategy_needs_two_opposite_recurrences():
    with pytest.raises(LoweringError, match=r"mamba1: strategy 'bidir' runs two recurrences in opposite directions in one kernel; this layer has 1 \(forward\)"):
        ssmc.compile(mamba1, strategy="bidir").bidir_forward()


@pytest.mark.parametrize("strategy", [None, "bidir"])
def test_bidirectional_packed_batch_equals_each_sequence_alone(strategy):
    """A packed batch through both directions (the reverse one starts at each sequence's end),
    forward and gradients, in the default two kernels and in one (strategy="bidir")."""
    from bimamba import bimamba

    lengths = [5, 1, 8]
    values = make_inputs(bimamba, dict(B=3, L=8, D=4, N=3), "f32", seed=7)
    c = ssmc.compile(bimamba, strategy=strategy)
    seq = [k for k, s in bimamba.specs.items() if "L" in s.layout]
    packed = {k: torch.tensor(np.concatenate([values[k][i, :n] for i, n in enumerate(lengths)])[None] if k in seq else values[k],
                              dtype=torch.float32, device=DEVICE, requires_grad=True) for k in values}
    cu = torch.tensor(np.cumsum([0] + lengths), dtype=torch.int32, device=DEVICE)
    out = c(**packed, cu_seqlens=cu)["y"]
    out.square().sum().backward()
    param_grads = {k: 0 for k in values if k not in seq}
    for i, n in enumerate(lengths):
        one = {k: torch.tensor(values[k][i : i + 1, :n] if k in seq else values[k], dtype=torch.float32, device=DEVICE,
                               requires_grad=True) for k in values}
        o = c(**one)["y"]
        o.square().sum().backward()
        start = int(cu[i])
        torch.testing.assert_close(out[0, start : start + n], o[0], rtol=1e-5, atol=1e-6)
        for k in seq:
            torch.testing.assert_close(packed[k].grad[0, start : start + n], one[k].grad[0], rtol=1e-4, atol=1e-5, msg=k)
        for k in param_grads:
            param_grads[k] = param_grads[k] + one[k].grad
    for k, g in param_grads.items():
        torch.testing.assert_close(packed[k].grad, g, rtol=1e-4, atol=1e-5, msg=k)


def test_bidirectional_module_under_torch_compile_fullgraph():
    """The bidirectional layer's op (forward kernels, MultiBackward in its autograd formula)
    traces without a graph break; gradients equal eager ones."""
    from bimamba import bimamba

    torch.manual_seed(0)
    m = ssmc.to_module(bimamba, dict(D=4, N=3)).to(DEVICE)
    ins = {k: torch.randn(2, 6, 3 if k in ("B", "C") else 4, device=DEVICE) for k in ("x", "dt", "B", "C", "z")}
    ref = m(**ins)["y"]
    ref.square().sum().backward()
    grads = {k: p.grad.clone() for k, p in m.named_parameters()}
    m.zero_grad()
    out = torch.compile(m, fullgraph=True, backend="aot_eager")(**ins)["y"]
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    out.square().sum().backward()
    for k, p in m.named_parameters():
        torch.testing.assert_close(p.grad, grads[k], rtol=1e-4, atol=1e-5, msg=k)


@ssmc.layer
def bimamba2(x: In["B L G R P"], dt: In["B L G R"], B: In["B L G N"], C: In["B L G N"],
             A_log: Param["G R", "mamba2_a_log"]):
    """Mamba-2's scan both ways (scalar decay per head), each direction's output its own: the
    forward direction's kernel has the matrix form, yet the backward of two recurrences is
    MultiBackward's (recurrent parts), not the matrix form's backward (one recurrence)."""
    delta = ssmc.softplus(dt)
    a = ssmc.exp(-ssmc.exp(A_log) * delta)
    u = (delta * x) * B
    return {"yf": (ssmc.scan(a, u, axis="L") * C).sum("N"), "yr": (ssmc.scan(a, u, axis="L", reverse=True) * C).sum("N")}


def test_bidirectional_layer_with_a_matrix_form_direction_trains():
    c = ssmc.compile(bimamba2)
    assert c.has_matrix_form
    values = make_inputs(bimamba2, dict(B=2, L=9, G=1, R=2, P=3, N=4), "f32", seed=8)
    t = {k: torch.tensor(v, dtype=torch.float32, device=DEVICE, requires_grad=True) for k, v in values.items()}
    out = c(**t)
    (out["yf"].square().sum() + out["yr"].square().sum()).backward()
    assert isinstance(c.backward_compiled(), MultiBackward)
    ref = bimamba2(**values)
    want = backward_layer(bimamba2)(**values, grad_yf=2 * ref["yf"], grad_yr=2 * ref["yr"])
    for k, v in t.items():
        g = torch.tensor(want["grad_" + k], dtype=torch.float64)
        got = v.grad.double().cpu()
        torch.testing.assert_close(got.reshape(g.shape) if got.numel() == g.numel() else got, g, rtol=2e-4, atol=2e-5 * float(g.abs().max()) + 1e-6, msg=k)


@pytest.mark.parametrize("name,packed", [("hgrn", False), ("mamba1", False), ("mamba1", True), ("mamba2", False)])
def test_autograd_stores_16_bit_gradients_as_the_cast_of_float32_ones(name, packed):
    """Autograd's call of the backward stores a bf16 argument's gradient in bf16 where one
    program writes each element (Run.result_dtype): the same bits as the float32 gradient the
    plain call returns, cast; gradients summed across programs (parameters, B and C of
    Mamba-1) stay float32 inside and are cast after."""
    from ssmc.export.autograd import gradients

    layer = LAYERS[name]
    sizes = sizes_for(layer, B=2, L=13, D=6, N=4)
    values = {k: torch.tensor(v, device=DEVICE) for k, v in make_inputs(layer, sizes, "bf16", seed=2).items()}
    values = {k: v.to(torch.bfloat16) if layer.specs[k].kind == "input" else v.float() for k, v in values.items()}
    cu = None
    if packed:  # two sequences of 5 and 8 steps in one row
        seq = [k for k, s in layer.specs.items() if "L" in s.layout]
        values = {k: v[:1] if k in seq else v for k, v in values.items()}
        cu = torch.tensor([0, 5, 13], dtype=torch.int32, device=DEVICE)
    c = ssmc.compile(layer)
    outs = c.raw_call(cu_seqlens=cu, **values)
    gen = torch.Generator().manual_seed(3)
    cots = {f"grad_{k}": torch.randn(v.shape, generator=gen).to(DEVICE, v.dtype) for k, v in outs.items()}
    plain = c.backward_compiled().raw_call(cu_seqlens=cu, **values, **cots)
    assert all(g.dtype == torch.float32 for g in plain.values())
    direct = c.backward_compiled().raw_call(cu_seqlens=cu, grads_as_inputs=True, **values, **cots)
    stored = [k for k, g in direct.items() if g.dtype == torch.bfloat16]
    assert "grad_x" in stored, stored  # an input's elementwise gradient
    for k, g in direct.items():
        assert g.dtype in (torch.float32, torch.bfloat16), k
        assert torch.equal(g, rounded(plain[k], g.dtype)), k
    checked = []
    for k, got in zip(layer.specs, gradients(c, values, cots, cu)):  # autograd's: one per argument
        if f"grad_{k}" in stored:  # in the argument's layout: the kernels' result, as laid out
            assert got.dtype == torch.bfloat16 and got.shape == plain[f"grad_{k}"].shape, k
            assert torch.equal(got, rounded(plain[f"grad_{k}"], torch.bfloat16)), k
            checked.append(k)
    assert "x" in checked, checked


def rounded(g, dtype):
    """float32 ``g`` as a kernel stores it in ``dtype``: rounded to nearest on a GPU (as
    torch's cast), truncated in Triton 3.6.0's interpreter (its float32 -> bf16 cast drops
    the low bits)."""
    if dtype == torch.float32 or HAS_GPU:
        return g.to(dtype)
    return (g.cpu().view(torch.int32) & -65536).view(torch.float32).to(dtype).to(g.device)


def test_split_rule_counts_a_wave_from_the_kernels_registers():
    """``schedule.chunking`` splits a backward's main kernel where its last wave of programs
    would leave the GPU idle; the wave is the warps an SM holds of the kernel as compiled
    (``Run.main_registers``), 8 without a count. HGRN's main kernel at B8 L4096 D2048 (1024
    programs of one warp; 166 registers on sm_90): 0.97 of an 8-warp wave (not split), 0.65 of
    its own 12-warp one (split: 16 chunks of 256 steps); at Mamba-1's ~232, 8 warps as before."""
    from ssmc.backends.triton.schedule import choose, chunking, warps_an_sm

    assert [warps_an_sm(r, 1) for r in (32, 166, 168, 232, 255)] == [32, 12, 12, 8, 8]
    assert warps_an_sm(161, 4) == 12 and warps_an_sm(64, 4) == 32
    c = CompiledBackward(hgrn)
    plan = c.plans("bidir")[0]
    kernel = plan.kernels[-1]
    sizes = {"B": 8, "L": 4096, "D": 2048}
    sched = choose(kernel, sizes, True, "bidir")
    assert kernel.chunked and dict(sched.blocks)["D"] == 16 and sched.num_warps == 1
    assert chunking(kernel, sizes, sched, True, None)[0] == 1
    assert chunking(kernel, sizes, sched, True, None, regs=166) == (16, 256)
    assert chunking(kernel, sizes, sched, True, None, regs=232)[0] == 1
    assert chunking(kernel, sizes, sched, False, None, regs=166)[0] == 1  # the CPU: as asked only


def test_main_kernel_registers_are_read_before_chunks_are_counted(monkeypatch):
    """``Run.main_registers``: the main kernel compiled (here: a stand-in for the GPU's
    compile) with stand-ins for the buffers the chunk count sets (checkpoints, scratch states,
    chunk entry states), before that count is chosen; nothing of it stays (the call's results
    match the interpreter), and the count is kept per kernel and schedule."""
    import types

    from ssmc.backends.triton import run as R

    seen = []
    plain = R.Run.launch

    def launch(self, kernel, sched, extra, compile_only=False):
        if compile_only and kernel.name.endswith("_bidir"):
            seen.append({t.name for t in kernel.tensors if t.name in self.buffers})
            return types.SimpleNamespace(n_regs=166)
        return plain(self, kernel, sched, extra, compile_only)

    monkeypatch.setattr(R.Run, "launch", launch)
    monkeypatch.setattr(R.Run, "checks_fit", lambda self: True)
    c = CompiledBackward(hgrn, unroll=2, sub=2, verify=True)
    for L in (5, 9):
        results = check_compiled(c.layer, c, sizes_for(hgrn, 2, L, 3, 2), "f32", L, DEVICE, True)
        assert all(r.ok for r in results), [str(r) for r in results if not r.ok]
    assert list(c.registers.values()) == [166] and len(seen) == 1, (c.registers, seen)
    assert {"scr", "hin", "hin_carried"} <= seen[0]


@pytest.mark.gpu
def test_gpu_split_rule_reads_the_main_kernels_registers():
    """On a GPU the backward's main kernel is compiled before its chunks are counted, and its
    register count is kept per kernel and schedule (HGRN at B2 L1024 D2048: 256 programs)."""
    c = ssmc.compile(hgrn)
    x = torch.randn(2, 1024, 2048, device=DEVICE, dtype=torch.bfloat16, requires_grad=True)
    g = torch.nn.functional.logsigmoid(torch.randn(2, 1024, 2048, device=DEVICE)).to(torch.bfloat16).requires_grad_()
    c(x=x, g=g)["y"].float().sum().backward()
    counts = c.backward_compiled().registers
    assert counts and all(isinstance(r, int) and 0 < r <= 255 for r in counts.values()), counts
