"""Layers as torch modules."""

import numpy as np
import pytest
import torch
from conftest import DEVICE
from mamba1 import mamba1

import ssmc
from ssmc.testing.check import make_inputs

SIZES = dict(B=2, L=6, D=4, N=3)


def inputs():
    a = make_inputs(mamba1, SIZES, "f32", 0, with_optional=False)
    return {k: torch.tensor(v, dtype=torch.float32, device=DEVICE) for k, v in a.items() if k in mamba1.inputs}


def test_parameters_are_registered_and_initialized():
    m = ssmc.to_module(mamba1, SIZES, seed=3).to(DEVICE)
    assert sorted(dict(m.named_parameters())) == ["A_log", "D", "dt_bias"]
    np.testing.assert_allclose(m.A_log.detach().cpu().numpy(), mamba1.init_params(SIZES, 3)["A_log"], rtol=1e-6)


def test_forward_matches_the_interpreter():
    m = ssmc.to_module(mamba1, SIZES, seed=3).to(DEVICE)
    x = inputs()
    out = m(**x)
    ref = mamba1(**{k: v.cpu().numpy() for k, v in x.items()}, **{k: p.detach().cpu().numpy() for k, p in m.named_parameters()})
    for k in ref:
        np.testing.assert_allclose(out[k].detach().cpu().double().numpy(), ref[k], rtol=1e-5, atol=1e-5)


def test_state_dict_round_trips():
    a, b = ssmc.to_module(mamba1, SIZES, seed=1), ssmc.to_module(mamba1, SIZES, seed=2)
    b.load_state_dict(a.state_dict())
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])


def test_backward_fills_every_parameter_gradient():
    m = ssmc.to_module(mamba1, SIZES).to(DEVICE)
    out = m(**inputs())
    out["y"].sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape and torch.isfinite(p.grad).all(), name
    with torch.no_grad():
        assert not m(**inputs())["y"].requires_grad


def test_stepping_equals_the_full_forward():
    m = ssmc.to_module(mamba1, SIZES, seed=2).to(DEVICE)
    x = inputs()
    full = m(**x)
    state, ys = None, []
    for t in range(SIZES["L"]):
        y, state = m.step(state, **{k: v[:, t] for k, v in x.items()})
        ys.append(y["y"])
    torch.testing.assert_close(torch.stack(ys, 1), full["y"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state["h_final"], full["h_final"], rtol=1e-5, atol=1e-5)
    assert m.state_names() == {"h_final": "h0"}


@pytest.mark.gpu
def test_step_replays_from_a_cuda_graph():
    """A decode step captured in a CUDA graph (no host work per token) gives what the eager
    step gives, for new inputs copied into the captured ones."""
    m = ssmc.to_module(mamba1, SIZES, seed=2).to("cuda")
    x = {k: v[:, 0].contiguous() for k, v in inputs().items()}
    state = {"h_final": torch.randn(2, SIZES["D"], SIZES["N"], device="cuda")}
    with torch.no_grad():
        m.step(state, **x)  # compile outside the capture
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            m.step(state, **x)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            y_g, s_g = m.step(state, **x)
        for v in x.values():
            v.copy_(torch.randn_like(v))
        state["h_final"].copy_(torch.randn_like(state["h_final"]))
        graph.replay()
        y_e, s_e = m.step(state, **x)
    torch.testing.assert_close(y_g["y"], y_e["y"], rtol=0, atol=0)
    torch.testing.assert_close(s_g["h_final"], s_e["h_final"], rtol=0, atol=0)
