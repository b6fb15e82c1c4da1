"""Lowering the conv ops (ssmc/ops/conv.py) to kernel IR statements, for the forward's kernels
(``lower.py``) and the backward's (``lower_backward.py``).

A conv reads its input at the K steps up to the current one: that input must be a tensor in
memory (a layer argument, or a value another kernel stored), which the kernel reads at those
steps (``WindowLoad``); the taps are a dim held whole, summed inside the kernel. Its derivative
ops read their cotangent at later steps (the transposed conv), so ``fuse_backward`` stores that
cotangent and a later kernel reads it (``tensor_operands``)."""

from __future__ import annotations

from collections.abc import Callable

from ssmc.backends.triton.kernel_ir import (
    Compute,
    Reduce,
    Stmt,
    TapAt,
    TapsShift,
    TimeSum,
    WindowHead,
    WindowLoad,
)
from ssmc.errors import LoweringError
from ssmc.ir.node import Node
from ssmc.ir.printer import format_node
from ssmc.ops.conv import CONV_FAMILY, tensor_operands, value_operands


def plain_reads(nodes) -> tuple[set[Node], set[Node]]:
    """(values some node reads as a plain value, values only conv ops read: from memory at
    other steps, or not at all, for their sizes): the kernel loads the latter at no step."""
    plain, windowed = set(), set()
    for n in nodes:
        for k, i in enumerate(n.inputs):
            if n.op not in CONV_FAMILY:
                plain.add(i)
            elif k in value_operands(n):
                plain.add(i)
            else:  # read from memory at other steps, or only for its sizes
                windowed.add(i)
    return plain, windowed - plain


def lower_conv(
    n: Node,
    names: dict[Node, str],
    value: Callable[[Node], str],
    tensor_of: dict[Node, str],
    size_dims: tuple[str, ...],
    layer: str,
    group: str,
    time_sums: bool = False,
) -> list[Stmt]:
    """The statements computing conv-family node ``n`` (into ``v<id>``). ``tensor_of``: the
    kernel's tensor of each value held in memory; ``time_sums``: whether the kernel can sum
    over time (the bidir loop), which the weights' gradient needs."""
    v, i = f"v{names[n][1:]}", names[n][1:]
    taps, axis = n.attr("taps"), n.attr("axis")
    comment = format_node(n, names)
    for k in tensor_operands(n):
        if k < len(n.inputs) and n.inputs[k] not in tensor_of:
            op = n.inputs[k]
            raise LoweringError(
                f"{layer}: {names[n]} = {n.op} reads {names[op]} ({format_node(op, names)}) at other steps, "
                f"and kernel {group} computes it: it must be a layer argument or a value another kernel stores"
            )

    def window(k: int) -> tuple[str | None, tuple[str, ...]]:
        w = n.inputs[k] if k < len(n.inputs) else None
        return (tensor_of[w], w.dims) if w is not None else (None, ())

    def dims_of(*nodes: Node) -> tuple[str, ...]:
        s = {d for m in nodes for d in m.dims}
        return tuple(d for d in size_dims if d in s)

    if n.op == "conv":
        x, w = n.inputs[0], n.inputs[1]
        return [
            WindowLoad(f"u{i}", tensor_of[x], x.dims, taps, *window(2), f"{names[x]} at steps t-(K-1) .. t"),
            Compute(f"m{i}", f"u{i} * {value(w)}", "times the taps", dims_of(x, w)),
            Reduce(v, f"m{i}", taps, "sum", comment),
        ]
    if n.op == "conv_final":
        x = n.inputs[0]
        return [WindowLoad(v, tensor_of[x], x.dims, taps, *window(2), comment, end=True)]
    if n.op == "conv_t" and n.attr("part") == "x":
        g, w = n.inputs
        return [
            WindowLoad(f"u{i}", tensor_of[g], g.dims, taps, None, (), f"{names[g]} at steps t+(K-1) .. t", ahead=True),
            Compute(f"m{i}", f"u{i} * {value(w)}", "times the taps", dims_of(g, w)),
            Reduce(v, f"m{i}", taps, "sum", comment),
        ]
    if n.op == "conv_t":
        g, w = n.inputs
        return [WindowHead(v, tensor_of[g], g.dims, tensor_of[w], w.dims, taps, n.dims, comment)]
    if n.op == "conv_final_t" and n.attr("part") == "x":
        return [TapAt(v, value(n.inputs[0]), taps, comment)]
    if n.op == "conv_final_t":
        gw = n.inputs[0]
        return [TapsShift(v, tensor_of[gw], gw.dims, taps, "-n_steps", comment)]
    if n.op == "conv_dw":
        if not time_sums:
            raise LoweringError(f"{layer}: {names[n]} = conv_dw sums over {axis}; kernel {group} cannot")
        g, x = n.inputs[0], n.inputs[1]
        return [
            WindowLoad(f"u{i}", tensor_of[x], x.dims, taps, *window(3), f"{names[x]} at steps t-(K-1) .. t"),
            Compute(f"m{i}", f"u{i} * {value(g)}", "times the cotangent", dims_of(g, x, n)),
            TimeSum(v, f"m{i}", n.dims, comment),
        ]
    raise LoweringError(f"{layer}: no Triton lowering for op `{n.op}` ({names[n]})")
