"""Full mixer blocks around ssmc's scans: Mamba-1's (in_proj, causal depthwise conv1d + SiLU,
x_proj, dt_proj, selective scan, gate, out_proj) and Mamba-2's (in_proj, conv1d + SiLU over
x, B and C, the SSD scan with its gate, gated RMSNorm, out_proj).

Parameter names and shapes are those of Hugging Face transformers' ``MambaMixer`` and
``Mamba2Mixer``, so their ``state_dict`` loads as it is (tests/test_blocks.py checks the outputs
against theirs). The scan is the example layer ``examples/mamba1.py`` / ``examples/mamba2.py``
compiled by ssmc, or any layer passed as ``layer=`` with the same arguments (a variant of the
recurrence in the same block). The causal convolution + SiLU is ssmc's generated conv kernel
(``examples/causal_conv.py``), or, in Mamba-2's block with ``fuse_conv=True``, part of the
scan's kernel (``examples/mamba2_conv.py``); the linear maps run in PyTorch."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example_layer(name: str, file: str | None = None):
    """The layer ``name`` of ``examples/<file or name>.py``."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return getattr(__import__(file or name), name)


def _conv_silu(kernel: Any, conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """SiLU of the depthwise causal convolution of ``x`` [B, L, C] with ``conv``'s weights
    ([C, 1, K], transformers' layout), by ssmc's generated conv kernel."""
    bias = conv.bias if conv.bias is not None else torch.zeros(conv.weight.shape[0], device=x.device, dtype=conv.weight.dtype)
    return kernel(x=x, weight=conv.weight[:, 0, :], bias=bias)["y"]


class MambaMixer(nn.Module):
    """Mamba-1's mixer. ``forward(hidden [B, L, d_model], h0=None)`` -> [B, L, d_model], and
    with ``return_state=True`` also the scan's final state [B, d_inner, d_state] (float32)."""

    def __init__(self, d_model: int, d_inner: int, d_state: int = 16, d_conv: int = 4, dt_rank: int | None = None,
                 conv_bias: bool = True, bias: bool = False, layer: Any = None, **compile_options: Any) -> None:
        super().__init__()
        import ssmc

        self.d_state, self.dt_rank = d_state, dt_rank or math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=bias)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1, bias=conv_bias)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner, bias=True)  # its bias is the scan's dt_bias
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=bias)
        self.scan = ssmc.compile(layer or example_layer("mamba1"), **compile_options)
        self.conv = ssmc.compile(example_layer("causal_conv"), **compile_options)

    def forward(self, hidden: torch.Tensor, h0: torch.Tensor | None = None, return_state: bool = False):
        x, z = self.in_proj(hidden).chunk(2, dim=-1)
        x = _conv_silu(self.conv, self.conv1d, x)
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight)  # dt_proj's bias is added in the scan, before softplus
        out = self.scan(x=x, dt=dt, B=B, C=C, z=z, A_log=self.A_log, D=self.D, dt_bias=self.dt_proj.bias, h0=h0)
        y = self.out_proj(out["y"])
        return (y, out["h_final"]) if return_state else y


class Mamba2Mixer(nn.Module):
    """Mamba-2's mixer (no MLP branch in in_proj). ``forward(hidden [B, L, d_model], h0=None)``
    -> [B, L, d_model]; with ``return_state=True`` also the final state [B, H, P, N] (float32).
    Heads: ``n_heads = d_inner // head_dim``, B and C shared by ``n_groups`` groups of heads.
    ``fuse_conv``: the convolution computed inside the scan's kernel (``mamba2_conv``; its
    strategies are the sequential and chunked ones, not yet the matrix form) instead of by
    the conv kernel before it."""

    def __init__(self, d_model: int, d_inner: int, d_state: int = 128, head_dim: int = 64, n_groups: int = 1,
                 d_conv: int = 4, conv_bias: bool = True, bias: bool = False, eps: float = 1e-6,
                 layer: Any = None, fuse_conv: bool = False, **compile_options: Any) -> None:
        super().__init__()
        import ssmc

        if d_inner % head_dim or (d_inner // head_dim) % n_groups:
            raise ValueError(f"d_inner={d_inner} must be head_dim={head_dim} x heads, heads a multiple of n_groups={n_groups}")
        self.d_inner, self.d_state, self.head_dim, self.n_groups = d_inner, d_state, head_dim, n_groups
        self.n_heads = d_inner // head_dim
        self.eps = eps
        conv_dim = d_inner + 2 * n_groups * d_state
        self.in_proj = nn.Linear(d_model, d_inner + conv_dim + self.n_heads, bias=bias)
        self.conv1d = nn.Conv1d(conv_dim, conv_dim, d_conv, groups=conv_dim, padding=d_conv - 1, bias=conv_bias)
        self.dt_bias = nn.Parameter(torch.ones(self.n_heads))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, self.n_heads + 1, dtype=torch.float32)))
        self.D = nn.Parameter(torch.ones(self.n_heads))
        self.norm = _GatedNormWeight(d_inner)
        self.out_proj = nn.Linear(d_inner, d_model, bias=bias)
        self.fuse_conv = fuse_conv
        self.scan = ssmc.compile(layer or example_layer("mamba2_conv" if fuse_conv else "mamba2"), **compile_options)
        self.conv = None if fuse_conv else ssmc.compile(example_layer("causal_conv"), **compile_options)

    def forward(self, hidden: torch.Tensor, h0: torch.Tensor | None = None, return_state: bool = False):
        Bn, L, _ = hidden.shape
        G, R, P, N = self.n_groups, self.n_heads // self.n_groups, self.head_dim, self.d_state
        z, xBC, dt = self.in_proj(hidden).split([self.d_inner, self.d_inner + 2 * G * N, self.n_heads], dim=-1)
        if not self.fuse_conv:
            xBC = _conv_silu(self.conv, self.conv1d, xBC)
        x, B, C = xBC.split([self.d_inner, G * N, G * N], dim=-1)
        args = dict(
            x=x.reshape(Bn, L, G, R, P), dt=dt.reshape(Bn, L, G, R), B=B.reshape(Bn, L, G, N), C=C.reshape(Bn, L, G, N),
            z=z.reshape(Bn, L, G, R, P), A_log=self.A_log.view(G, R), D=self.D.view(G, R), dt_bias=self.dt_bias.view(G, R),
            h0=None if h0 is None else h0.reshape(Bn, G, R, P, N),
        )
        if self.fuse_conv:  # the conv's taps and bias, split like xBC
            w = self.conv1d.weight[:, 0, :]
            b = self.conv1d.bias if self.conv1d.bias is not None else torch.zeros(w.shape[0], device=w.device, dtype=w.dtype)
            wx, wB, wC = w.split([self.d_inner, G * N, G * N])
            bx, bB, bC = b.split([self.d_inner, G * N, G * N])
            args.update(conv_x=wx.reshape(G, R, P, -1), conv_x_bias=bx.reshape(G, R, P), conv_B=wB.reshape(G, N, -1),
                        conv_B_bias=bB.reshape(G, N), conv_C=wC.reshape(G, N, -1), conv_C_bias=bC.reshape(G, N))
        out = self.scan(**args)
        y = out["y"].reshape(Bn, L, self.d_inner).float()  # gated in the scan: y * silu(z)
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)
        y = self.out_proj(self.norm.weight * y.to(hidden.dtype))
        return (y, out["h_final"].reshape(Bn, self.n_heads, P, N)) if return_state else y


class _GatedNormWeight(nn.Module):
    """Holds the gated RMSNorm's weight under transformers' name (``norm.weight``)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
