"""expand_discretize: ``discretize`` into elementwise ops, so it fuses like any other math.

Exact ZOH's ``(exp(dA) - 1) / A * B`` is written ``delta * exprel(dA) * B`` with
``exprel(x) = expm1(x) / x``: finite and accurate as A -> 0 (no 0/0, no cancellation)."""

from __future__ import annotations

from dataclasses import dataclass

from ssmc.ir.node import Graph, Node
from ssmc.passes.base import Pass, build, const, rewrite


@dataclass(frozen=True)
class ExpandDiscretize(Pass):
    name = "expand_discretize"
    why = "discretize is sugar for elementwise math; expanded, it fuses and CSEs with the rest"

    def apply(self, graph: Graph) -> Graph:
        o = graph.dim_order

        def rule(n: Node) -> Node | None:
            if n.op != "discretize":
                return None
            A, B, delta = n.inputs
            method, part = n.attr("method"), n.attr("part")
            dA = build(o, "mul", (delta, A))
            if part == "A":
                if method in ("zoh", "zoh_euler"):
                    return build(o, "exp", (dA,))
                if method == "euler":
                    return build(o, "add", (const(1.0), dA))
                half = build(o, "mul", (dA, const(0.5)))
                return build(
                    o, "div", (build(o, "add", (const(1.0), half)), build(o, "sub", (const(1.0), half)))
                )
            if method == "zoh":
                scale = build(o, "mul", (delta, build(o, "exprel", (dA,))))
            elif method == "bilinear":
                half = build(o, "mul", (dA, const(0.5)))
                scale = build(o, "div", (delta, build(o, "sub", (const(1.0), half))))
            else:  # zoh_euler, euler
                scale = delta
            return build(o, "mul", (scale, B))

        return rewrite(graph, rule)
