"""The NumPy interpreter: the definition of what every layer computes.

Every value is a float64 array whose axes are the node's named dims in the layer's canonical
order. Elementwise operands are aligned by name (missing dims become size-1 axes) and broadcast.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ssmc.ir.dims import Dims, in_order
from ssmc.ir.node import Graph, Node, topo_order
from ssmc.ops.conv import CONV_FAMILY
from ssmc.ops.registry import ELEMENTWISE, REDUCE, get


def align(value: np.ndarray, from_dims: Dims, to_dims: Dims) -> np.ndarray:
    """Reshape ``value`` (axes ``from_dims``) to the rank of ``to_dims``, size 1 where missing.
    Both are in canonical order, so this only inserts axes."""
    shape = [value.shape[from_dims.index(d)] if d in from_dims else 1 for d in to_dims]
    return np.reshape(value, shape)


def to_canonical(value: np.ndarray, layout: Dims, dims: Dims) -> np.ndarray:
    """An argument given in its declared ``layout`` -> axes in canonical ``dims`` order."""
    return np.transpose(value, [layout.index(d) for d in dims])


# ops whose kernels' code evaluates the hardware's exponential (codegen: tl.exp, tl.exp2,
# tl.sigmoid, _ssmc_softplus's tl.exp), each within about its relative error of the exact
# value. Seen on an H100: Mamba-2's float32 dt_bias gradient (a sum over B2 L300 of terms
# built from sigmoid and softplus of dt) erred 2.5e-6 of its max, against 2.3e-7 for the same
# kernels in Triton's interpreter (exact exp). bench/f32_margin.py on an H100 (session 19): it
# sits in the per-step grad_dt terms, of one sign over the steps, not in the kernel's sum over
# time; this model moved that output's bound by 4%. bench/exp_ops_error_gpu.py on an H100
# (session 20): these ops err up to 8-9 float32 ulps at |x| <= 10 (tl.exp's argument x log2 e
# is rounded), about 4 at |x| <= 3, with means within 0.3 ulp: above this model's 2^-22.
EXP_BUILT = ("exp", "exp2", "sigmoid", "softplus", "silu")


def interpret(
    graph: Graph,
    args: Mapping[str, np.ndarray],
    sizes: Mapping[str, int],
    roots: list[Node] | None = None,
    precision: str = "f64",
    exp_error: float = 0.0,
) -> dict[Node, np.ndarray]:
    """Evaluate ``graph`` (or just ``roots``); returns every computed value.

    ``args`` maps argument names to arrays in their declared layout (optional ones may be
    missing: they are zeros); ``sizes`` gives every dim's size. ``precision="f64"`` is the
    definition; ``"f32"`` rounds every value to float32 after each op (a straightforward
    float32 computation: the low-precision reference the tolerance rule compares against).
    ``exp_error``: every exp and exp2 computed per step (along the scan axis), and every op
    the kernels compute from one (``EXP_BUILT``), is off by this relative error, as a
    platform's fast exponential is (the GPU's ex2.approx: the same sign through a run of decays
    near 1, so it compounds; through a sum over time of terms built from sigmoid or softplus,
    likewise; see testing/check.py)."""
    values: dict[Node, np.ndarray] = {}
    order = topo_order(roots if roots is not None else [v for _, v in graph.outputs])
    axis = graph.scan_axis() if exp_error else None
    with np.errstate(all="ignore"):
        for node in order:
            v = _eval(node, values, args, sizes, graph.dim_order)
            if axis is not None and node.op in EXP_BUILT and axis in node.dims:
                v = v * (1.0 + exp_error)
            if precision == "f32" and node.dtype != "bool":
                v = np.asarray(v, dtype=np.float32).astype(np.float64)
            values[node] = v
    return values


def run(graph: Graph, args: Mapping[str, np.ndarray], sizes: Mapping[str, int], precision: str = "f64",
        exp_error: float = 0.0):
    """The layer's named outputs, axes in canonical dim order (float64 arrays)."""
    values = interpret(graph, args, sizes, precision=precision, exp_error=exp_error)
    return {name: values[node] for name, node in graph.outputs}


def _full(node: Node, sizes: Mapping[str, int]) -> tuple[int, ...]:
    return tuple(sizes[d] for d in node.dims)


def _eval(node: Node, values, args, sizes, order) -> np.ndarray:
    op = get(node.op)
    attrs = node.attr_dict
    ins = [values[i] for i in node.inputs]
    if node.op == "arg":
        name = attrs["name"]
        if name not in args or args[name] is None:
            return np.zeros(_full(node, sizes))
        arr = np.asarray(args[name], dtype=np.float64)
        return to_canonical(arr, tuple(attrs["layout"]), node.dims)
    if node.op == "const":
        return op.numpy(attrs["value"])
    if op.group == ELEMENTWISE or node.op in ("discretize", "gate"):
        used = _used_operands(node)
        aligned = [
            align(v, i.dims, node.dims) if k in used else None
            for k, (v, i) in enumerate(zip(ins, node.inputs))
        ]
        kw = {k: attrs[k] for k in op.attrs}
        out = op.numpy(*aligned, **kw)
        return np.broadcast_to(out, _full(node, sizes)).astype(np.float64 if node.dtype != "bool" else bool)
    if op.group == REDUCE:
        (x,) = node.inputs
        return op.numpy(ins[0], axis=x.dims.index(attrs["dim"]))
    if node.op in ("scan", "scan_final"):
        a_node, b_node = node.inputs[0], node.inputs[1]
        full_dims = _scan_full_dims(node)
        a = align(ins[0], a_node.dims, full_dims)
        b = align(ins[1], b_node.dims, full_dims)
        a = np.broadcast_to(a, tuple(sizes[d] for d in full_dims))
        h0 = None
        if len(ins) == 3:
            state_dims = tuple(d for d in full_dims if d != attrs["axis"])
            h0 = align(ins[2], node.inputs[2].dims, state_dims)
        part = attrs.get("complex")
        return op.numpy(a, b, h0, axis=full_dims.index(attrs["axis"]), reverse=attrs["reverse"],
                        complex_axis=full_dims.index(part) if part else None)
    if node.op == "stack":
        full, ax = _full(node, sizes), node.dims.index(attrs["dim"])
        if full[ax] != 2:
            raise ValueError(f"`stack` along {attrs['dim']!r}: its size is {full[ax]}, not 2")
        half = full[:ax] + (1,) + full[ax + 1 :]
        parts = [np.broadcast_to(align(v, i.dims, node.dims), half) for v, i in zip(ins, node.inputs)]
        return op.numpy(*parts, axis=ax)
    if node.op == "part":
        x = node.inputs[0]
        return op.numpy(ins[0], axis=x.dims.index(attrs["dim"]), index=attrs["index"])
    if node.op in ("matrix_scan", "matrix_scan_final"):
        full = tuple(attrs["full_dims"])
        state = tuple(d for d in full if d != attrs["axis"])
        ops = [align(v, i.dims, full) for v, i in zip(ins[:4], node.inputs[:4])]
        h0 = align(ins[4], node.inputs[4].dims, state) if len(ins) == 5 else None
        ops[0] = np.broadcast_to(ops[0], tuple(sizes[d] for d in full))
        summed = {"sum_axes": tuple(full.index(d) for d in attrs["sum_dims"])} if attrs.get("sum_dims") else {}
        return op.numpy(*ops, h0, axis=full.index(attrs["axis"]), kaxis=full.index(attrs["kdim"]), reverse=attrs["reverse"],
                        **summed)
    if node.op == "matrix_scan_dl":
        full = tuple(attrs["full_dims"])
        state = tuple(d for d in full if d != attrs["axis"])
        ops = [align(v, i.dims, full) for v, i in zip(ins[:5], node.inputs[:5])]
        ops[0] = np.broadcast_to(ops[0], tuple(sizes[d] for d in full))
        extra = list(zip(ins[5:], node.inputs[5:]))
        h0 = gf = None
        if attrs["with_h0"]:
            v, i = extra.pop(0)
            h0 = align(v, i.dims, state)
        if attrs["with_gf"]:
            v, i = extra.pop(0)
            gf = align(v, i.dims, state)
        return op.numpy(*ops, h0, gf, axis=full.index(attrs["axis"]), kaxis=full.index(attrs["kdim"]),
                        vaxis=full.index(attrs["vdim"]), reverse=attrs["reverse"])
    if node.op in CONV_FAMILY:
        return _eval_conv(node, ins, sizes, order)
    if node.op == "prev":
        fill = None
        if len(ins) == 2:
            fill = align(ins[1], node.inputs[1].dims, tuple(d for d in node.dims if d != attrs["axis"]))
        x = np.broadcast_to(align(ins[0], node.inputs[0].dims, node.dims), _full(node, sizes))
        return op.numpy(x, fill, axis=node.dims.index(attrs["axis"]), reverse=attrs["reverse"])
    raise NotImplementedError(f"the interpreter has no evaluation for op `{node.op}`")


def _eval_conv(node: Node, ins, sizes, order) -> np.ndarray:
    """The conv ops' NumPy rules take the sequence (or taps) as the last axis of every
    operand and the result's other dims, broadcast, before it: arrange them so."""
    at = node.attr_dict
    axis, taps = at["axis"], at["taps"]
    rest = tuple(d for d in node.dims if d not in (axis, taps))
    for i in node.inputs:
        rest = in_order(set(rest) | {d for d in i.dims if d not in (axis, taps)}, order)

    def last(k: int, dim: str) -> np.ndarray:
        v, dims = ins[k], node.inputs[k].dims
        target = in_order(set(rest) | {dim}, order)
        return np.moveaxis(align(v, dims, target), target.index(dim), -1)

    op = get(node.op)
    if node.op in ("conv", "conv_final"):
        win = last(2, taps) if len(ins) == 3 else None
        out = op.numpy(last(0, axis), last(1, taps), win)
    elif node.op == "conv_t":
        out = op.numpy(last(0, axis), last(1, taps), at["part"])
    elif node.op == "conv_final_t":
        out = op.numpy(last(0, taps), last(1, axis), at["part"])
    else:  # conv_dw
        win = last(3, taps) if len(ins) == 4 else None
        out = op.numpy(last(0, axis), last(1, axis), last(2, taps), win)
    end = axis if axis in node.dims else taps
    full = in_order(set(rest) | {end}, order)
    out = np.moveaxis(out, -1, full.index(end))
    assert full == node.dims, (full, node.dims)
    return np.broadcast_to(out, tuple(sizes[d] for d in full)).astype(np.float64)


def _used_operands(node: Node) -> set[int]:
    """Operands a node's value depends on: discretize's Abar does not read B, and Euler-type
    Bbar does not read A (their dims may lie outside the result's)."""
    if node.op != "discretize":
        return set(range(len(node.inputs)))
    if node.attr("part") == "A":
        return {0, 2}
    return {0, 1, 2} if node.attr("method") in ("zoh", "bilinear") else {1, 2}


def _scan_full_dims(node: Node) -> Dims:
    """The dims of the scan's full state, with the axis (both scan and scan_final)."""
    return node.dims if node.op == "scan" else tuple(node.attr("full_dims"))
