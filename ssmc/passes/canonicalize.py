"""canonicalize: expand ``gate``, fold constants, drop identities (x*1, x+0, --x)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ssmc.ir.node import Graph, Node
from ssmc.ops.registry import ELEMENTWISE, get
from ssmc.passes.base import Pass, build, const, rewrite


def _is_const(n: Node, value: float | None = None) -> bool:
    return n.op == "const" and (value is None or n.attr("value") == value)


@dataclass(frozen=True)
class Canonicalize(Pass):
    name = "canonicalize"
    why = "one spelling per computation, so CSE and fusion see through sugar"

    def apply(self, graph: Graph) -> Graph:
        order = graph.dim_order

        def rule(n: Node) -> Node | None:
            if n.op == "gate":
                y, z = n.inputs
                act = n.attr("act")
                return build(order, "mul", (y, z if act == "identity" else build(order, act, (z,))))
            op = get(n.op)
            if op.group == ELEMENTWISE and n.inputs and all(_is_const(i) for i in n.inputs):
                if n.dtype == "float":
                    vals = [np.float64(i.attr("value")) for i in n.inputs]
                    with np.errstate(all="ignore"):
                        v = float(op.numpy(*vals, **{k: n.attr(k) for k in op.attrs}))
                    return const(v)
            if n.op == "neg" and n.inputs[0].op == "neg":
                return n.inputs[0].inputs[0]
            if n.op in ("mul", "div") and _is_const(n.inputs[1], 1.0):
                return n.inputs[0] if n.inputs[0].dims == n.dims else None
            if n.op == "mul" and _is_const(n.inputs[0], 1.0):
                return n.inputs[1] if n.inputs[1].dims == n.dims else None
            if n.op in ("add", "sub") and _is_const(n.inputs[1], 0.0):
                return n.inputs[0] if n.inputs[0].dims == n.dims else None
            if n.op == "add" and _is_const(n.inputs[0], 0.0):
                return n.inputs[1] if n.inputs[1].dims == n.dims else None
            if n.op == "pow" and n.attr("exponent") == 1.0:
                return n.inputs[0]
            if n.op == "pow" and n.attr("exponent") == 2.0:
                return build(order, "square", n.inputs)
            return None

        return rewrite(graph, rule)
