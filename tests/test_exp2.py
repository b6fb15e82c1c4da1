"""The time loop's exponential: the FMA-pipe exp2 (prelude's ``_ssmc_exp2_fma``, the
``exp2_fma`` option) against float64, kernels that use it against the interpreter, and the
GPU's float32 reference (``exp_error``: the platform's ex2.approx, tolerances.py)."""

import importlib.util
import sys

import numpy as np
import pytest
import torch
import triton
from conftest import DEVICE
from mamba1 import mamba1

import ssmc
from ssmc.backends.triton.backward import CompiledBackward
from ssmc.backends.triton.prelude import prelude_for
from ssmc.ops.interpret import run
from ssmc.testing.check import check_compiled, make_inputs


@pytest.fixture(scope="module")
def exp2_kernel(tmp_path_factory):
    src = "import triton\nimport triton.language as tl\n\n" + prelude_for("_ssmc_exp2_fma") + '''

@triton.jit
def exp2_all(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    o = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = o < n
    tl.store(y_ptr + o, _ssmc_exp2_fma(tl.load(x_ptr + o, mask=m)), mask=m)
'''
    path = tmp_path_factory.mktemp("exp2") / "exp2_fma_kernel.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("exp2_fma_kernel", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["exp2_fma_kernel"] = mod  # triton reads the source through the module's file
    spec.loader.exec_module(mod)

    def call(x: np.ndarray) -> np.ndarray:
        xt = torch.from_numpy(x.astype(np.float32)).to(DEVICE)
        y = torch.empty_like(xt)
        mod.exp2_all[(triton.cdiv(len(x), 1024),)](xt, y, len(x), BLOCK=1024)
        return y.cpu().numpy().astype(np.float64)

    return call


def test_exp2_fma_within_ulps(exp2_kernel):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-1, 1, 40000), rng.uniform(-40, 5, 40000), rng.uniform(-125.9, 127.9, 20000)])
    x = x.astype(np.float32)
    got = exp2_kernel(x)
    ref = np.exp2(x.astype(np.float64))
    ulp = np.spacing(ref.astype(np.float32)).astype(np.float64)
    err = (got - ref) / ulp
    assert np.abs(err).max() <= 1.2  # a degree-6 fit: 1.15 ulps at most in float32
    assert abs(err.mean()) < 0.05  # unbiased (ex2.approx's bias is what compounds in a scan)


def test_exp2_fma_edges(exp2_kernel):
    x = np.array([0.0, 1.0, -1.0, 10.0, -126.0, -149.0, 127.0, 127.99, 128.0, 200.0, 1e30,
                  -160.0, -1e30, np.inf, -np.inf, np.nan], dtype=np.float32)
    got = exp2_kernel(x)
    with np.errstate(over="ignore"):  # inf past float32's range
        exact = np.exp2(x.astype(np.float64)).astype(np.float32).astype(np.float64)
    np.testing.assert_array_equal(got[:5], exact[:5])  # integers: exact
    assert got[5] in (0.0, exact[5])  # 2^-149, subnormal: exact, or flushed to 0 as ex2.approx.ftz does
    assert np.allclose(got[6:8], exact[6:8], rtol=2e-7)
    assert np.all(np.isposinf(got[8:11]))  # 2^128 and beyond overflow, as float32's exp2 does
    assert np.all(got[11:13] == 0.0) and got[13] == np.inf and got[14] == 0.0
    assert np.isnan(got[15])


def test_compiled_with_exp2_fma():
    # every 3rd decay of the chunk-states kernel (register-held), all of the others (the
    # backward's main kernel: the tensor form)
    every = (3, 1)
    sizes = dict(B=2, L=37, D=5, N=16)
    c = ssmc.compile(mamba1, strategy="chunked", chunks=3, exp2_fma=every)
    assert all(r.ok for r in check_compiled(mamba1, c, sizes, "f32", device=DEVICE)), "forward"
    states, full = c.sources("chunked", sizes)
    per_step = 16 // every[0] * 4  # states kernel: 16 decays a step, unrolled 4 times
    assert states.count("_ssmc_exp2_fma(v") >= per_step
    assert "tl.exp2(v" in states and "tl.exp2(v" not in full
    b = CompiledBackward(mamba1, forward=c, chunks=3)
    assert b.exp2_fma == tuple(every)  # the backward computes its decays as its forward does
    bsizes = dict(B=1, L=70, D=3, N=16)
    assert all(r.ok for r in check_compiled(b.layer, b, bsizes, "f32", device=DEVICE)), "backward"


def test_exp2_fma_option_checked():
    with pytest.raises(ssmc.LoweringError, match="exp2_fma"):
        ssmc.compile(mamba1, exp2_fma=(1,))
    with pytest.raises(ssmc.LoweringError, match="exp2_fma"):
        ssmc.compile(mamba1, exp2_fma=(-1, 0))


def test_reference_exp_error_only_per_step():
    """The GPU reference's exp error touches the per-step exponentials (the decays), not those
    computed once (exp(A_log): the kernels compute those accurately)."""
    sizes = dict(B=1, L=50, D=2, N=3)
    inputs = make_inputs(mamba1, sizes, "f32", 0, True, 1.0)
    bound = mamba1.bind(inputs)
    graph = ssmc.compile(mamba1).graph
    base = run(graph, inputs, bound, precision="f32")
    up = run(graph, inputs, bound, precision="f32", exp_error=2.0**-22)
    down = run(graph, inputs, bound, precision="f32", exp_error=-(2.0**-22))
    d_up = up["h_final"] - base["h_final"]
    d_down = down["h_final"] - base["h_final"]
    assert np.abs(d_up).max() > 0 and np.all(np.sign(d_up) * np.sign(d_down) <= 0)
    # no per-step exponential: no change
    @ssmc.layer
    def plain(a: ssmc.In["B L D"], x: ssmc.In["B L D"]):
        return {"y": ssmc.scan(a, x, axis="L")}

    ins = make_inputs(plain, dict(B=1, L=5, D=2), "f32", 0, True, 1.0)
    b2 = plain.bind(ins)
    g2 = ssmc.compile(plain).graph
    same = run(g2, ins, b2, precision="f32", exp_error=1e-3)["y"]
    np.testing.assert_array_equal(same, run(g2, ins, b2, precision="f32")["y"])


@pytest.mark.parametrize("act", ["sigmoid", "softplus", "silu"])
def test_reference_exp_error_reaches_ops_built_from_exp(act):
    """The kernels compute sigmoid, softplus and silu from the hardware's exponential: per
    step, the GPU reference moves them by the same relative error as exp (interpret.EXP_BUILT)."""

    @ssmc.layer
    def gated(a: ssmc.In["B L D"], x: ssmc.In["B L D"]):
        return {"y": ssmc.scan(a, getattr(ssmc, act)(x), axis="L")}

    ins = make_inputs(gated, dict(B=1, L=5, D=2), "f32", 0, True, 1.0)
    b = gated.bind(ins)
    g = ssmc.compile(gated).graph
    base = run(g, ins, b, precision="f32")["y"]
    up = run(g, ins, b, precision="f32", exp_error=1e-3)["y"]
    np.testing.assert_allclose(up, base * (1 + 1e-3), rtol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("fma", [(0, 0), (1, 1)])
def test_float32_long_decay_chains_on_gpu(fma):
    """The cases the GPU's hypothesis run found (float32, D = N = 1, L 130 / 257: ~250 decays
    near 1): within the rule, with the platform's exp2 (its reference models it) and with the
    accurate one."""
    fwd = ssmc.compile(mamba1, exp2_fma=fma)
    b = CompiledBackward(mamba1, forward=fwd)
    for seed in range(4):
        for L in (130, 257):
            for c in (fwd, b):
                for r in check_compiled(c.layer, c, dict(B=1, L=L, D=1, N=1), "f32", seed, "cuda"):
                    assert r.ok, (fma, seed, L, str(r))
