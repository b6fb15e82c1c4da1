"""A model holding an ssmc layer under torch.compile(fullgraph=True) and torch.export."""

import pytest
import torch
from conftest import DEVICE, HAS_GPU
from mamba1 import mamba1

import ssmc

D_MODEL, D, N = 6, 8, 4


class Block(torch.nn.Module):
    """in_proj -> Mamba-1's selective scan (generated kernels) -> out_proj."""

    def __init__(self, outputs=None) -> None:
        super().__init__()
        self.outputs = outputs  # the layer's outputs asked for (None: all)
        self.in_proj = torch.nn.Linear(D_MODEL, 3 * D + 2 * N)
        self.ssm = ssmc.to_module(mamba1, dict(D=D, N=N))
        self.out_proj = torch.nn.Linear(D, D_MODEL)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        x, dt, z, B, C = self.in_proj(u).split([D, D, D, N, N], dim=-1)
        return self.out_proj(self.ssm(x=x, dt=dt, B=B, C=C, z=z, outputs=self.outputs)["y"])


def model_and_input(outputs=None):
    torch.manual_seed(0)
    return Block(outputs).to(DEVICE), torch.randn(2, 9, D_MODEL, device=DEVICE)


@pytest.mark.parametrize("outputs", [None, ("y",)])
def test_compile_fullgraph_forward_and_backward(outputs):
    """The layer as one op, its outputs all or only y (the op takes the names asked for)."""
    m, u = model_and_input(outputs)
    ref = m(u)
    ref.square().sum().backward()
    grads = {k: p.grad.clone() for k, p in m.named_parameters()}
    m.zero_grad()
    compiled = torch.compile(m, fullgraph=True, backend="inductor" if HAS_GPU else "aot_eager")
    out = compiled(u)  # fullgraph: a graph break would raise
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    out.square().sum().backward()
    for k, p in m.named_parameters():
        torch.testing.assert_close(p.grad, grads[k], rtol=1e-4, atol=1e-5, msg=k)


def test_export():
    m, u = model_and_input()
    ep = torch.export.export(m, (u,))
    assert any("ssmc" in str(n.target) for n in ep.graph.nodes), "the layer is one op in the exported graph"
    torch.testing.assert_close(ep.module()(u), m(u), rtol=1e-5, atol=1e-5)
