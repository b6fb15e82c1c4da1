"""The short causal convolution (depthwise, as in Mamba's blocks) and its derivative ops.

``conv(x, w, win)`` along ``axis`` with ``w``'s taps dim (size K):
``y[t] = sum_k w[k] * xx[t - (K-1) + k]``, where ``xx`` is ``x`` preceded by the window
``win`` (the K values before the first step, oldest first; zeros without one): ``xx[s] =
x[s]`` for ``s >= 0`` and ``win[K + s]`` for ``s < 0``. ``conv_final`` is the window after the
last step (the last K values of ``xx``): the state a later call continues from, as a scan's
final state continues its ``h0`` (Hugging Face's and mamba-ssm's ``conv_state`` [B, D, K]).
The window's oldest value is not read by the next step; it is kept so that the window has the
taps dim, as those caches do.

The derivative ops see ``x`` and ``win`` as one extended sequence ``xx`` over positions
``[-K, L)``: ``conv_t`` is the transposed convolution of a cotangent (``part`` "x": positions
``[0, L)``; "win": ``[-K, 0)``), ``conv_final_t`` places the window's cotangent at the last K
positions, ``conv_dw`` is the weights' gradient (the sum over time of cotangent times input).
The NumPy rules here define them; each works on arrays whose last axis is the sequence (or
the taps), the other axes broadcast, which the interpreter arranges."""

from __future__ import annotations

from typing import Any

import numpy as np

from ssmc.errors import DefinitionError
from ssmc.ir import dtypes
from ssmc.ir.dims import union
from ssmc.ops.registry import STRUCTURAL, OpDef, register

CONV_OPS = ("conv", "conv_final")  # the forward ops
CONV_FAMILY = ("conv", "conv_final", "conv_t", "conv_final_t", "conv_dw")  # with their derivatives


# per op (and part): (operands read from memory at other steps or shifted along the taps,
# which must be tensors; operands read as plain values). Those in neither (x of conv_final_t,
# w of conv_final and conv_dw) give only their sizes.
_READS = {
    "conv": ((0, 2), (1,)), "conv_final": ((0, 2), ()), "conv_dw": ((1, 3), (0,)),
    ("conv_t", "x"): ((0,), (1,)), ("conv_t", "win"): ((0, 1), ()),
    ("conv_final_t", "x"): ((), (0,)), ("conv_final_t", "win"): ((0,), ()),
}


def _reads(n: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return _READS[(n.op, n.attr("part")) if n.op in ("conv_t", "conv_final_t") else n.op]


def tensor_operands(n: Any) -> tuple[int, ...]:
    """The operands of conv-family node ``n`` read from memory at steps other than the
    current one (or along the taps at shifted indices): they must be tensors."""
    return _reads(n)[0]


def value_operands(n: Any) -> tuple[int, ...]:
    """The operands of ``n`` read as plain values (at the current step, or loop-invariant)."""
    return _reads(n)[1]


def conv_of_args(n: Any) -> bool:
    """A conv whose operands are all layer arguments: a kernel can recompute it anywhere (the
    matrix form's tiles) by reading them at the steps it needs."""
    return n.op == "conv" and all(i.op == "arg" for i in n.inputs)


def _check(dims, attrs, name: str):
    """(result dims with the axis, taps) of a conv over operands (x, w[, win])."""
    axis, taps = attrs.get("axis"), attrs.get("taps")
    x, w = dims[0], dims[1]
    if axis not in x:
        raise DefinitionError(f"`{name}` along {axis!r}: the input's dims are {list(x)}")
    if taps not in w:
        raise DefinitionError(f"`{name}`: the weights {list(w)} lack the taps dim {taps!r}")
    if taps in x or axis in w:
        raise DefinitionError(
            f"`{name}`: the input {list(x)} must not have the taps dim {taps!r} nor the weights "
            f"{list(w)} the axis {axis!r}"
        )
    return axis, taps


def _conv_rule(dims, dts, attrs, order):
    axis, taps = _check(dims, attrs, "conv")
    out = union(order, dims[0], [d for d in dims[1] if d != taps])
    if len(dims) == 3:
        allowed = {d for d in out if d != axis} | {taps}
        extra = [d for d in dims[2] if d not in allowed]
        if extra or taps not in dims[2]:
            raise DefinitionError(
                f"`conv` window {list(dims[2])} must have the taps dim {taps!r} and no dims "
                f"outside {sorted(allowed)}"
            )
    return out, dtypes.FLOAT


def _conv_final_rule(dims, dts, attrs, order):
    out, _ = _conv_rule(dims, dts, attrs, order)
    axis, taps = attrs["axis"], attrs["taps"]
    return union(order, [d for d in out if d != axis], [taps]), dtypes.FLOAT


def _extended(x, win, K):
    """Positions [-K, L) of the sequence: the window (zeros without one) then x (last axes)."""
    shape = np.broadcast_shapes(x.shape[:-1], () if win is None else win.shape[:-1])
    win = np.zeros(shape + (K,)) if win is None else np.broadcast_to(win, shape + (K,))
    return np.concatenate([win, np.broadcast_to(x, shape + x.shape[-1:])], axis=-1)


def conv_numpy(x, w, win):
    """x [..., L], w [..., K], win [..., K] or None -> y [..., L]."""
    K, L = w.shape[-1], x.shape[-1]
    xx = _extended(x, win, K)
    y = 0.0
    for k in range(K):  # y[t] = sum_k w[k] * xx[t - (K-1) + k]: position p <-> index p + K
        y = y + w[..., k : k + 1] * xx[..., k + 1 : k + 1 + L]
    return np.asarray(y, dtype=np.float64)


def conv_final_numpy(x, w, win):
    """The window after the last step: positions [L-K, L) of the extended sequence."""
    K, L = w.shape[-1], x.shape[-1]
    return _extended(x, win, K)[..., L : L + K].astype(np.float64)


def conv_t_numpy(g, w, part):
    """The cotangent of the extended sequence from y's: d[p] = sum_k w[k] g[p + K-1 - k]
    (valid steps); part "x" -> positions [0, L), "win" -> [-K, 0)."""
    K, L = w.shape[-1], g.shape[-1]
    shape = np.broadcast_shapes(g.shape[:-1], w.shape[:-1])
    d = np.zeros(shape + (L + K,))
    for k in range(K):  # g[t] reaches position t - (K-1) + k: index t + k + 1
        d[..., k + 1 : k + 1 + L] += w[..., k : k + 1] * g
    return d[..., K:] if part == "x" else d[..., :K]


def conv_final_t_numpy(gw, x, part):
    """The cotangent of the extended sequence from the final window's: gw at [L-K, L)."""
    K, L = gw.shape[-1], x.shape[-1]
    shape = np.broadcast_shapes(gw.shape[:-1], x.shape[:-1])
    d = np.zeros(shape + (L + K,))
    d[..., L : L + K] = gw
    return d[..., K:] if part == "x" else d[..., :K]


def conv_dw_numpy(g, x, w, win):
    """dw[..., k] = sum_t g[t] * xx[t - (K-1) + k] (no sum over the other dims)."""
    K, L = w.shape[-1], x.shape[-1]
    xx = _extended(x, win, K)
    return np.stack([np.sum(g * xx[..., k + 1 : k + 1 + L], axis=-1) for k in range(K)], axis=-1)


def _conv_t_rule(dims, dts, attrs, order):
    axis, taps, part = attrs.get("axis"), attrs.get("taps"), attrs.get("part")
    g, w = dims
    if axis not in g or taps not in w or part not in ("x", "win"):
        raise DefinitionError(f"`conv_t`: cotangent {list(g)}, weights {list(w)}, part {part!r}")
    out = union(order, g, [d for d in w if d != taps])
    if part == "win":
        out = union(order, [d for d in out if d != axis], [taps])
    return out, dtypes.FLOAT


def _conv_final_t_rule(dims, dts, attrs, order):
    axis, taps, part = attrs.get("axis"), attrs.get("taps"), attrs.get("part")
    gw, x = dims
    if taps not in gw or axis not in x or part not in ("x", "win"):
        raise DefinitionError(f"`conv_final_t`: cotangent {list(gw)}, input {list(x)}, part {part!r}")
    if part == "win":
        return gw, dtypes.FLOAT
    return union(order, [d for d in gw if d != taps], x), dtypes.FLOAT


def _conv_dw_rule(dims, dts, attrs, order):
    axis, taps = _check(dims[1:], attrs, "conv_dw")
    out = union(order, dims[0], dims[1], [d for d in dims[2] if d != taps])
    return union(order, [d for d in out if d != axis], [taps]), dtypes.FLOAT


def _conv_derivative(b, xs, y, g, axis, taps):
    x, w = xs[0], xs[1]
    win = xs[2:]
    out = [b.conv_t(g, w, axis=axis, taps=taps, part="x"), b.conv_dw(g, x, w, *win, axis=axis, taps=taps)]
    if win:
        out.append(b.conv_t(g, w, axis=axis, taps=taps, part="win"))
    return tuple(out)


def _conv_final_derivative(b, xs, y, g, axis, taps):
    x = xs[0]
    out = [b.conv_final_t(g, x, axis=axis, taps=taps, part="x"), None]
    if len(xs) == 3:
        out.append(b.conv_final_t(g, x, axis=axis, taps=taps, part="win"))
    return tuple(out)


register(
    OpDef(
        "conv",
        STRUCTURAL,
        -1,
        _conv_rule,
        conv_numpy,
        "structural",
        "short causal depthwise convolution along a named axis: y[t] = sum_k w[k] x[t-(K-1)+k], "
        "the K values before the first step from the window; inputs (x, w) or (x, w, window)",
        ("any", "any", "any"),
        derivative=_conv_derivative,
        attrs=("axis", "taps"),
    )
)
register(
    OpDef(
        "conv_final",
        STRUCTURAL,
        -1,
        _conv_final_rule,
        conv_final_numpy,
        "structural",
        "the window after the last step of the conv with the same operands: its last K inputs",
        ("any", "any", "any"),
        derivative=_conv_final_derivative,
        attrs=("axis", "taps"),
    )
)
register(
    OpDef(
        "conv_t",
        STRUCTURAL,
        2,
        _conv_t_rule,
        conv_t_numpy,
        "structural",
        "made by autodiff: the transposed conv of a cotangent (part x: the steps; win: the window)",
        ("any", "any"),
        derivative=None,
        attrs=("axis", "taps", "part"),
    )
)
register(
    OpDef(
        "conv_final_t",
        STRUCTURAL,
        2,
        _conv_final_t_rule,
        conv_final_t_numpy,
        "structural",
        "made by autodiff: the final window's cotangent placed at the last K positions",
        ("any", "any"),
        derivative=None,
        attrs=("axis", "taps", "part"),
    )
)
register(
    OpDef(
        "conv_dw",
        STRUCTURAL,
        -1,
        _conv_dw_rule,
        conv_dw_numpy,
        "structural",
        "made by autodiff: the conv weights' gradient, summed over time: inputs (g, x, w[, window])",
        ("any", "any", "any", "any"),
        derivative=None,
        attrs=("axis", "taps"),
    )
)
