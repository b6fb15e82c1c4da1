"""The matrix form's backward: the matrix scan op's derivative (forward and reverse) against
finite differences of the interpreter, the backward derived through ``form_matrix_scans``
against the one derived from the plain scan, and the compiled ``MatrixBackward`` (matrix-form
kernel pairs, reverse ones among them, then a backward for the rest) against the interpreter."""

import math

import numpy as np
import pytest
import torch
from conftest import DEVICE
from gla import simple_gla
from hypothesis import given, settings
from hypothesis import strategies as st
from mamba2 import mamba2
from test_matrix import SIZES, readout_scaled, retention

import ssmc
from ssmc.autodiff import backward_graph, backward_layer
from ssmc.backends.triton.backward import CompiledBackward, MatrixBackward
from ssmc.backends.triton.schedule import choose_matrix
from ssmc.errors import DefinitionError, LoweringError
from ssmc.ir import dtypes
from ssmc.ir.node import Graph, Node, topo_order
from ssmc.ops.interpret import run
from ssmc.passes.base import build
from ssmc.testing.check import check_compiled, make_inputs

LAYERS = {"mamba2": mamba2, "simple_gla": simple_gla, "retention": retention, "readout_scaled": readout_scaled}
ORDER = ("B", "L", "H", "P", "N")
OP_SIZES = {"B": 2, "L": 6, "H": 2, "P": 3, "N": 2}


def _arg(name, dims):
    attrs = {"name": name, "kind": "input", "dims": dims, "layout": dims, "optional": False, "init": None}
    return Node("arg", (), dims, dtypes.FLOAT, tuple(attrs.items()))


def _op_graph(reverse: bool) -> Graph:
    # k shared by the heads (broadcast), h0 given: every rule of the derivative is used
    args = (_arg("l", ("B", "L", "H")), _arg("v", ("B", "L", "H", "P")), _arg("k", ("B", "L", "N")),
            _arg("q", ("B", "L", "H", "N")), _arg("h0", ("B", "H", "P", "N")))
    attrs = dict(axis="L", kdim="N", vdim="P", reverse=reverse, full_dims=ORDER)
    y = build(ORDER, "matrix_scan", args, **attrs)
    f = build(ORDER, "matrix_scan_final", args, **attrs)
    return Graph("op", ORDER, args, (("y", y), ("f", f)), tuple(topo_order([y, f])))


def _values(seed):
    rng = np.random.default_rng(seed)
    s = OP_SIZES
    return {"l": -rng.uniform(0.05, 1.0, (s["B"], s["L"], s["H"])), "v": rng.standard_normal((s["B"], s["L"], s["H"], s["P"])),
            "k": rng.standard_normal((s["B"], s["L"], s["N"])), "q": rng.standard_normal((s["B"], s["L"], s["H"], s["N"])),
            "h0": rng.standard_normal((s["B"], s["H"], s["P"], s["N"]))}


@pytest.mark.parametrize("reverse", [False, True])
def test_matrix_scan_means_a_scan_read_out(reverse):
    """The op's NumPy meaning against the plain scan's: S = scan(exp(l), v k^T) (reverse: the
    decay of the step after, h0 entering the last step), y = sum over N of S q."""
    x = _values(0)
    out = run(_op_graph(reverse), x, OP_SIZES)
    a = np.exp(x["l"])[..., None, None]
    vk = x["v"][..., None] * x["k"][:, :, None, None, :]
    S, h = np.empty(vk.shape), x["h0"]
    steps = range(OP_SIZES["L"] - 1, -1, -1) if reverse else range(OP_SIZES["L"])
    for t in steps:
        if reverse:
            h = (a[:, t + 1] * h if t + 1 < OP_SIZES["L"] else h) + vk[:, t]
        else:
            h = a[:, t] * h + vk[:, t]
        S[:, t] = h
    final = a[:, 0] * h if reverse else h
    np.testing.assert_allclose(out["y"], (S * x["q"][:, :, :, None, :]).sum(-1), rtol=1e-12)
    np.testing.assert_allclose(out["f"], final, rtol=1e-12)


@pytest.mark.parametrize("reverse", [False, True])
def test_matrix_scan_summed_over_heads_is_the_sum_of_its_heads(reverse):
    """``sum_dims``: the result summed over those head dims (a gradient of an operand the heads
    share); only distinct head dims may be summed."""
    g = _op_graph(reverse)
    y = dict(g.outputs)["y"]
    ys = build(ORDER, "matrix_scan", y.inputs, **y.attr_dict, sum_dims=("H",))
    assert ys.dims == ("B", "L", "P")
    both = Graph("op", ORDER, g.args, (("y", y), ("ys", ys)), tuple(topo_order([y, ys])))
    out = run(both, _values(3), OP_SIZES)
    np.testing.assert_allclose(out["ys"], out["y"].sum(axis=2), rtol=1e-12)
    for bad in (("N",), ("L",), ("H", "H")):
        with pytest.raises(DefinitionError, match="sum_dims"):
            build(ORDER, "matrix_scan", y.inputs, **y.attr_dict, sum_dims=bad)


@pytest.mark.parametrize("final_only", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_matrix_scan_derivative_matches_finite_differences(reverse, final_only):
    g = _op_graph(reverse)
    if final_only:  # y unused: its cotangent is zero, no scan recomputes it
        f = dict(g.outputs)["f"]
        g = Graph("op", ORDER, g.args, (("f", f),), tuple(topo_order([f])))
    bwd = backward_graph(g)
    x = _values(1)
    rng = np.random.default_rng(2)
    out = run(g, x, OP_SIZES)
    cots = {k: rng.standard_normal(v.shape) for k, v in out.items()}
    grads = run(bwd, {**x, **{"grad_" + k: v for k, v in cots.items()}}, OP_SIZES)

    def f(values):
        o = run(g, values, OP_SIZES)
        return sum(float((o[k] * cots[k]).sum()) for k in cots)

    eps = 1e-6
    for name, value in x.items():
        d = rng.standard_normal(value.shape)
        numeric = (f({**x, name: value + eps * d}) - f({**x, name: value - eps * d})) / (2 * eps)
        analytic = float((np.broadcast_to(grads["grad_" + name], value.shape) * d).sum())
        assert abs(numeric - analytic) <= 1e-6 * max(1.0, abs(numeric)), (name, numeric, analytic)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_derived_through_matrix_scans_equals_the_plain_backward(name):
    lay = LAYERS[name]
    sizes = {d: 9 if d == "L" else SIZES[d] for d in lay.dim_order}
    inp = lay.random_inputs(sizes, 0, optional=True)
    rng = np.random.default_rng(0)
    cots = {"grad_" + k: rng.standard_normal(v.shape) for k, v in lay(**inp).items()}
    matrix = backward_layer(lay, matrix=True)
    assert any(n.op == "matrix_scan" for n in matrix.graph.nodes)
    plain, got = backward_layer(lay)(**inp, **cots), matrix(**inp, **cots)
    for k, v in plain.items():
        np.testing.assert_allclose(got[k], v, rtol=1e-10, atol=1e-12 * np.abs(v).max(), err_msg=k)


_COMPILED: dict = {}


def matrix_backward(name, block_t):
    if (name, block_t) not in _COMPILED:
        _COMPILED[name, block_t] = MatrixBackward(LAYERS[name], verify=True, block_t=block_t)
        _COMPILED[name, block_t].force = True  # float32 calls too (they run the recurrent one by default)
    return _COMPILED[name, block_t]


@given(
    name=st.sampled_from(sorted(LAYERS)),
    L=st.integers(1, 24),
    dtype=st.sampled_from(["f32", "bf16", "f16"]),
    block_t=st.sampled_from([4, 8]),  # few tiles: the interpreter runs every program of 8 kernels
    sub=st.integers(1, 3),
    chunks=st.sampled_from([None, 2, 3, 7]),  # the rest's sequence split among programs
    seed=st.integers(0, 1000),
    h0=st.booleans(),
)
def test_matrix_backward_matches_interpreter(name, L, dtype, block_t, sub, chunks, seed, h0):
    c = matrix_backward(name, block_t)
    c.part.options["sub"] = sub
    if c.rest is not None:  # (simple GLA's gradients all come from the matrix scans)
        c.rest.chunks = chunks
    lay = LAYERS[name]
    sizes = {d: L if d == "L" else SIZES[d] for d in lay.dim_order}
    bad = [str(r) for r in check_compiled(c.layer, c, sizes, dtype, seed, DEVICE, h0) if not r.ok]
    assert not bad, bad


def test_float32_and_very_long_calls_run_the_recurrent_backward():
    c = MatrixBackward(mamba2, block_t=8)
    sizes = {"B": 1, "L": 5, "G": 1, "R": 2, "P": 3, "N": 2}
    x = make_inputs(c.layer, sizes, "f32", 0, False)
    for dtype, recurrent in ((torch.float32, True), (torch.bfloat16, False)):
        t = {k: torch.tensor(v, dtype=dtype if v.ndim > 2 else torch.float32, device=DEVICE) for k, v in x.items()}
        assert c.recurrent_for(None, t) is recurrent
    t = {k: torch.tensor(v, dtype=torch.bfloat16, device=DEVICE) for k, v in x.items()}
    cu = torch.tensor([0, 2, 5], dtype=torch.int32, device=DEVICE)
    assert not c.recurrent_for(cu, t)
    c.MAX_STEPS = 2
    assert c.recurrent_for(cu, t) and c.recurrent_for(None, t)
    got = c(**t)
    assert c.recurrent is not None and set(got) == {k for k, _ in c.graph.outputs}


def test_the_backward_follows_the_strategy():
    assert isinstance(ssmc.compile(mamba2).backward_compiled(), MatrixBackward)
    assert isinstance(ssmc.compile(mamba2, strategy="chunked").backward_compiled(), CompiledBackward)
    c = MatrixBackward(mamba2)
    assert {k.strategy for k in c.part.kernels("matrix")} == {"matrix"}
    # two reverse matrix scans (dv with dh0, dk): dv's kernel pair; dk's outputs kernel reads
    # dv's chunk states (the same state, v and k trading places), as dq's reads y's; the
    # decay's gradient reads both states
    kernels = c.part.kernels("matrix")
    assert sum(k.matrix.reverse for k in kernels) == 3
    assert len(kernels) == 7 and [k.role for k in kernels].count("dl") == 1
    # dB and dC (B and C shared by a group's heads): summed over the heads R in their outputs
    # kernels, which loop over them; no [.., R, .., N] result is stored
    summed = [k for k in kernels if k.matrix.summed and k.role == "full"]
    assert len(summed) == 2 and all(k.matrix.summed == ("R",) and "R" not in k.grid_dims for k in summed)
    assert all("R" in k.grid_dims for k in kernels if k.role != "full")  # the states stay per head
    assert not any({"R", "N"} <= set(v.dims) for _, v in c.part.graph.outputs if v.op == "matrix_scan")
    assert {c.direct["grad_B"], c.direct["grad_C"]} == {k.matrix.stores[0][1][0] for k in summed}


@pytest.mark.parametrize("name", ["mamba2", "simple_gla"])
def test_scans_of_one_state_store_it_once(name):
    """dq's scan holds y's state, dk's dv's: their outputs kernels read the chunk states the
    other's states kernel stored, run first; the decay's gradient reads both, run last."""
    c = MatrixBackward(LAYERS[name])
    plans = c.part.plans("matrix")
    shared = {p.group.name: p.shares for p in plans if p.shares}
    # (simple GLA has no gate: no recomputed outputs; dq's scan stores the state)
    assert len(shared) == {"mamba2": 3, "simple_gla": 2}[name] and all(len(p.kernels) == 1 and p.kernels[0].role != "states" for p in plans if p.shares)
    names = [p.group.name for p in plans]
    assert sorted(names) == sorted(g.name for g in c.part.graph.groups)
    for g, keeper in shared.items():
        assert names.index(keeper) < names.index(g)
    dl = plans[-1].kernels[0]
    assert dl.role == "dl"
    stored = {t.name for p in plans for t in p.kernels[0].tensors if p.kernels[0].role == "states" and t.name.startswith("hin_")}
    assert len(stored) == 2 and {t.name for t in dl.tensors if t.name.startswith("hin_")} == stored


def value_dim(name: str) -> str:  # the forward's y: [.., L, heads, value_dim]
    return {"mamba2": "P", "simple_gla": "V"}[name]


@pytest.mark.parametrize("name", ["mamba2", "simple_gla"])
def test_no_matrix_scan_needs_float32_accurate_products(name):
    """The decay's gradient is its own kernel (pairs of states, nothing cancels): no matrix
    scan's result is added up in a running sum, so each may take 16-bit products on a GPU;
    by default only where measured clean of a Triton fault (the class's note): the result dim
    33 or more and the other state dim at most 64; never with ``low_precision=False``."""
    exact = MatrixBackward(LAYERS[name], low_precision=False)
    assert exact.exact == frozenset(k for k, _ in exact.part.graph.outputs) and exact.result_precision("bf16") == {}
    default = MatrixBackward(LAYERS[name])
    assert default.summed == frozenset() and default.exact == frozenset()
    assert not any(n.op == "scan" for n in default.graph.nodes)
    key = {"mamba2": "N", "simple_gla": "K"}[name]  # dk's and dq's result dim
    sizes = {"B": 1, "L": 64, "G": 1, "R": 2, "H": 2, "P": 64, "V": 64, key: 32}
    outs = dict(default.part.graph.outputs)
    along_v = {k for k, v in outs.items() if v.op == "matrix_scan" and v.attr("vdim") == value_dim(name)}
    # dv, and y recomputed where the gate needs it (Mamba-2's)
    assert {bool(outs[k].attr("reverse")) for k in along_v} == ({False, True} if name == "mamba2" else {True})
    groups = {k: next(g for g in default.part.graph.groups if v in g.stores) for k, v in outs.items() if v.op == "matrix_scan"}
    clean = {k for k, g in groups.items() if not default.part.matrix_exact(g, (sizes[outs[k].attr("vdim")], sizes[outs[k].attr("kdim")]))}
    assert clean == along_v  # results along V (64 wide) against K 32; dk, dq's 32 wide: not swept
    low = MatrixBackward(LAYERS[name], low_precision=True)
    assert low.exact == frozenset() and not any(low.part.matrix_exact(g, (8, 512)) for g in groups.values())
    if name == "mamba2":  # every gradient from 16-bit products: held to the inputs' dtype's tolerance
        want = {"grad_" + a: "bf16" for a in ("x", "dt", "B", "C", "z", "A_log", "dt_bias", "h0")}
        assert low.result_precision("bf16") == want  # D's: from y, dy and x alone
        assert low.result_precision("f32") == {}


def test_matrix_schedule_precision():
    m2 = MatrixBackward(mamba2).part
    states, full = m2.kernels("matrix")[:2]
    sizes = {"B": 2, "L": 256, "G": 1, "R": 4, "P": 64, "N": 128}
    prec = lambda k, *a, **kw: dict(choose_matrix(k, sizes, *a, **kw).flags)["PREC"]  # noqa: E731
    # (on_gpu, f32, k_bf16, low)
    assert prec(states, True, True, True, "bf16") == "bf16split"  # a forward's state: float32 accuracy
    assert prec(states, True, True, False, "bf16") == "tf32x3"
    assert prec(states, True, True, False, None) == "tf32x3"  # float32 inputs
    assert prec(states, True, False, True, "bf16") == "bf16"  # a result that needs no float32 accuracy
    assert prec(full, True, False, low="fp16") == "fp16"
    assert prec(full, True, True, low="bf16") == "tf32x3"
    assert prec(full, True, True, True, "bf16") == "bf16split"  # c and k bf16 arguments: c . k exact
    assert prec(full, True, False, True, "bf16") == "bf16"
    assert prec(states, False, False, True, "bf16") == prec(full, False, False, low="bf16") == "tf32x3"  # the interpreter


def test_register_caps_by_kind_of_matrix_kernel(monkeypatch):
    """``schedule.MAXNREG``: a cap on a states kernel's and a decay gradient's registers, each its
    own, passed to the launch (``maxnreg``) on a GPU only; outputs kernels and float32-accurate
    (tf32x3) ones are not capped."""
    from ssmc.backends.triton import schedule

    monkeypatch.setattr(schedule, "MAXNREG", {"states": 128, "dl": 168})
    kernels = {k.role: k for k in MatrixBackward(mamba2).part.kernels("matrix")}
    sizes = {"B": 2, "L": 256, "G": 1, "R": 4, "P": 64, "N": 128}
    caps = {role: choose_matrix(k, sizes, True, False, True, "bf16").launch_options().get("maxnreg")
            for role, k in kernels.items()}
    assert caps == {"states": 128, "full": None, "dl": 168}
    assert all(choose_matrix(k, sizes, False, False, True, "bf16").maxnreg == 0 for k in kernels.values())
    exact = choose_matrix(kernels["states"], sizes, True, True, False, "bf16")  # float32-accurate: not capped
    assert dict(exact.flags)["PREC"] == "tf32x3" and exact.maxnreg == 0


@settings(max_examples=3)  # each example: 4 forward and backward calls in the interpreter
@given(lens=st.lists(st.integers(1, 13), min_size=1, max_size=3), seed=st.integers(0, 1000))
def test_packed_batch_gradients_equal_per_sequence_gradients(lens, seed):
    _packed_equals_alone(lens, seed)


def _packed_equals_alone(lens, seed, dl_from_sums=True, rest_time_tiles=False):
    sizes = {"B": 1, "L": sum(lens), "G": 1, "R": 2, "P": 3, "N": 2}
    values = make_inputs(mamba2, sizes, "f32", seed=seed, with_optional=False)
    h0 = np.random.default_rng(seed).standard_normal((len(lens), 1, 2, 3, 2))
    c = ssmc.compile(mamba2, block_t=8)
    if rest_time_tiles:
        c._backward = MatrixBackward(mamba2, c, block_t=8, rest_time_tiles=True)
    c.backward_compiled().force = True
    c.backward_compiled().part.dl_from_sums = dl_from_sums
    c.backward_compiled().rest.chunks = 2  # the rest's sequence split: chunks by the longest sequence
    seq = [k for k, s in mamba2.specs.items() if "L" in s.layout]

    def tensors(d):
        return {k: torch.tensor(v, dtype=torch.float32, device=DEVICE, requires_grad=True) for k, v in d.items()}

    packed = tensors({**values, "h0": h0})
    cu = torch.tensor(np.cumsum([0] + lens), dtype=torch.int32, device=DEVICE)
    out = c(**packed, cu_seqlens=cu)
    (out["y"].square().sum() + out["h_final"].sum()).backward()
    params = {k: 0.0 for k in values if k not in seq}
    for i, n in enumerate(lens):
        s0 = int(cu[i])
        one = tensors({**{k: v[:, s0 : s0 + n] if k in seq else v for k, v in values.items()}, "h0": h0[i : i + 1]})
        o = c(**one)
        (o["y"].square().sum() + o["h_final"].sum()).backward()
        for k in seq:
            torch.testing.assert_close(packed[k].grad[:, s0 : s0 + n], one[k].grad, rtol=1e-4, atol=1e-5, msg=k)
        torch.testing.assert_close(packed["h0"].grad[i : i + 1], one["h0"].grad, rtol=1e-4, atol=1e-5)
        for k in params:
            params[k] = params[k] + one[k].grad
    for k, g in params.items():
        torch.testing.assert_close(packed[k].grad, g, rtol=1e-4, atol=1e-5, msg=k)
    sides = sum("tl.store(side_" in src for src in c.backward_compiled().part.sources("matrix"))
    assert sides == (2 if dl_from_sums else 0)


@pytest.mark.parametrize("name, L, block_t, sub, dtype", [
    ("mamba2", 13, 4, 2, "bf16"), ("mamba2", 1, 8, 1, "f16"), ("simple_gla", 11, 4, 2, "f32")])
def test_decay_gradient_with_sums_from_the_dq_and_dk_kernels(name, L, block_t, sub, dtype):
    """``dl_from_sums``: the decay gradient reads dy . (the entry state's part of y) and v . (the
    exit cotangent's part of dv) per step from the dq and dk kernels (lower_matrix.with_sides)
    instead of forming them from the chunk states: the same gradients, whole chunks or not,
    a step alone; and the kernels do it (two store the sums, the decay gradient reads them)."""
    c = MatrixBackward(LAYERS[name], verify=True, block_t=block_t, dl_from_sums=True)
    c.force = True
    c.part.options["sub"] = sub
    sizes = {d: L if d == "L" else SIZES[d] for d in LAYERS[name].dim_order}
    bad = [str(r) for r in check_compiled(c.layer, c, sizes, dtype, 0, DEVICE, True) if not r.ok]
    assert not bad, bad
    sources = c.part.sources("matrix")
    assert sum("tl.store(side_" in src for src in sources) == 2
    assert sum("for sb in range(0, size__SO)" in src and "y_in" not in src for src in sources) == 1


def test_decay_gradient_sums_from_several_blocks_of_n(monkeypatch):
    """``dl_from_sums`` where dq's and dk's kernels take N in blocks (their schedules shrunk by
    ``Run.fit``, launches refused by rule as in the test above; at N 128 a GPU's blocks of 64
    do so by default): each block stores its slot of the sums, and the decay gradient adds them."""
    gpu = str(DEVICE).startswith("cuda")
    limit, N, P = (512, 32, 32) if gpu else (16, 4, 7)
    _refuse_above(monkeypatch, limit, [])
    c = MatrixBackward(mamba2, block_t=4, dl_from_sums=True)
    sizes = {d: {**SIZES, "L": 9, "P": P, "N": N}[d] for d in mamba2.dim_order}
    bad = [str(r) for r in check_compiled(c.layer, c, sizes, "bf16", 0, DEVICE, True) if not r.ok]
    assert not bad, bad
    sides = [got for (name, *_), got in c.part.fitted.items() if name.endswith(("_m2_matrix", "_m3_matrix"))]
    assert len(sides) == 2 and all(dict(s.blocks)["N"] < N for s in sides)  # several slots each


@pytest.mark.parametrize("name, L, dtype, chunks, det", [
    ("mamba2", 13, "bf16", None, False), ("mamba2", 9, "f32", 2, True), ("mamba2", 1, "f16", 3, False),
    ("mamba2", 22, "f32", 7, False), ("retention", 10, "bf16", 3, True), ("readout_scaled", 6, "f32", None, False)])
def test_rest_in_time_tiles_matches_interpreter(name, L, dtype, chunks, det):
    """``rest_time_tiles``: the rest's kernel (no scan: the chain rule and sums) takes its
    steps a tile of BLOCK_T at a time (4 on the CPU), time an axis of every value: tiles cut by
    the sequence's end and by a chunk's, a sequence split among programs (its sums over time
    added across chunks), deterministic mode's per-program slots, one step."""
    c = MatrixBackward(LAYERS[name], verify=True, block_t=4, rest_time_tiles=True)
    c.force = True
    c.deterministic = det
    c.rest.chunks = chunks
    main = c.rest.plans("bidir")[0].kernels[-1]
    assert main.time_tile and "for t0 in tl.range(lo, hi, BLOCK_T" in c.rest.sources("bidir")[0]
    sizes = {d: L if d == "L" else SIZES[d] for d in LAYERS[name].dim_order}
    bad = [str(r) for r in check_compiled(c.layer, c, sizes, dtype, L, DEVICE, True) if not r.ok]
    assert not bad, bad


def test_packed_batch_with_the_rest_in_time_tiles():
    """A packed batch with the rest in time tiles: chunks by the longest sequence, a shorter
    one's programs past its start with no steps."""
    _packed_equals_alone([6, 1, 11], 5, rest_time_tiles=True)


def test_packed_batch_with_the_decay_gradient_from_its_own_products():
    """``dl_from_sums=False``: the decay gradient forms all four products per chunk itself."""
    _packed_equals_alone([5, 1, 9], 3, dl_from_sums=False)


def _refuse_above(monkeypatch, limit, seen):
    """Launches refused as a GPU refuses a kernel that asks too much shared memory (which grows
    with a program's block of the state): any schedule whose blocks' product is over ``limit``,
    or with more than one stage (``seen``: each compile's schedule)."""
    from triton.runtime.errors import OutOfResources

    from ssmc.backends.triton.run import Run

    def try_compile(self, kernel, sched):
        seen.append((kernel.name, sched))
        area = math.prod(b for _, b in sched.blocks) * sched.num_stages
        if area > limit:
            raise OutOfResources(area, limit, "shared memory")

    monkeypatch.setattr(Run, "checks_fit", lambda self: True)
    monkeypatch.setattr(Run, "try_compile", try_compile)


def test_a_schedule_the_gpu_refuses_is_shrunk_until_it_fits(monkeypatch):
    """Run.fit, its launches refused by rule: every matrix kernel refused above blocks of 16
    elements of the state (at N 4, P 7 on the CPU: 32 asked; on a GPU, whose blocks are at
    least 16, 512 at N 32, P 32) or two stages runs in the smaller schedule that fits, with the
    same results; the choice is kept (a later call compiles nothing), and where nothing fits (an
    outputs kernel holds one dim of the state whole) the error names the kernel and what each
    schedule asked."""
    gpu = str(DEVICE).startswith("cuda")
    limit, N, P = (512, 32, 32) if gpu else (16, 4, 7)
    seen: list = []
    _refuse_above(monkeypatch, limit, seen)
    c = MatrixBackward(mamba2, block_t=4)
    c.part.options["num_stages"] = 2  # as the GPU's summed kernels: refused, then one stage
    sizes = {d: {**SIZES, "L": 9, "P": P, "N": N}[d] for d in mamba2.dim_order}
    bad = [str(r) for r in check_compiled(c.layer, c, sizes, "bf16", 0, DEVICE, True) if not r.ok]
    assert not bad, bad
    fitted = c.part.fitted
    assert len(fitted) >= 4  # the decay gradient's, states and outputs kernels
    shrunk = 0
    for (_, asked, *_), got in fitted.items():
        assert asked.num_stages == 2 and got.num_stages == 1
        if math.prod(b for _, b in asked.blocks) > limit:  # blocks halved just far enough
            assert math.prod(b for _, b in got.blocks) == limit
            shrunk += 1
        else:  # (the decay gradient's P blocks of 16 on a GPU: its one stage alone fits)
            assert got.blocks == asked.blocks
    assert shrunk >= 3
    n = len(seen)
    check_compiled(c.layer, c, {**sizes, "L": 5}, "bf16", 1, DEVICE, True)
    assert len(seen) == n  # kept: no compile asked again

    _refuse_above(monkeypatch, limit // 4, seen)  # the outputs kernels hold 8 (32) of P or 4 (32) of N whole
    c = MatrixBackward(mamba2, block_t=4)
    with pytest.raises(LoweringError, match=r"no schedule of this kernel fits this GPU \(blocks"):
        check_compiled(c.layer, c, sizes, "bf16", 0, DEVICE, True)


@pytest.mark.gpu  # skipped where there is no GPU (conftest)
@pytest.mark.parametrize("P, n", [(64, 128), (128, 128)])
def test_gpu_float32_accurate_products_fit(P, n):
    """Float32-accurate products everywhere (``low_precision=False``) at the benchmark's state
    and a wider head: schedules a GPU refuses (session 18 on an H100: the decay gradient asked
    248 KB of shared memory at P 64 N 128; compiled for sm_90, the summed dB / dC kernels 240 KB
    at P 128) shrink until they fit, and match the interpreter."""
    c = MatrixBackward(mamba2, low_precision=False)
    sizes = {"B": 1, "L": 200, "G": 1, "R": 2, "P": P, "N": n, "H": 2}
    bad = [str(r) for r in check_compiled(c.layer, c, {d: sizes[d] for d in mamba2.dim_order}, "bf16", 2, DEVICE, True) if not r.ok]
    assert not bad, bad


@pytest.mark.gpu  # skipped where there is no GPU (conftest)
@pytest.mark.parametrize("name", ["mamba2", "simple_gla"])
@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_gpu_sizes_of_the_benchmark_kind(name, dtype):
    """Tensor-core tiles in every kernel pair of the backward, whole and partial blocks (bf16;
    float32 calls run the recurrent backward: the class's accuracy note)."""
    lay = LAYERS[name]
    c = MatrixBackward(lay)
    for L, n in ((300, 128), (257, 48)):
        sizes = {"B": 2, "L": L, "G": 1, "R": 3, "P": 64, "N": n, "H": 3, "K": n, "V": 64}
        bad = [str(r) for r in check_compiled(c.layer, c, {d: sizes[d] for d in lay.dim_order}, dtype, 1, DEVICE, True) if not r.ok]
        assert not bad, (L, n, bad)
