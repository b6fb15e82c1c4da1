"""Strength reduction for the per-element work of a scan: the innermost loop runs over
[B, L, D, N], so every multiply saved there is saved B*L*D*N times.

- ``fold_exp2``: ``exp(p * q)`` -> ``exp2(p * (q * log2 e))`` when ``q`` has fewer dims than the
  product (a parameter like A): GPUs compute exp(x) as ex2(x * log2 e), so folding the constant
  into the smaller factor saves one multiply per element (and hoists it out of the time loop).
- ``reassociate``: ``(a * b) * c`` -> ``(a * c) * b`` when ``a * c`` has fewer dims than
  ``a * b`` and the inner product has no other user: Mamba's ``delta * B * x`` becomes
  ``(delta * x) * B``, one [B, L, D, N] multiply instead of two.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from ssmc.ir.node import Graph, Node, topo_order
from ssmc.passes.base import Pass, build, const, rewrite

LOG2E = 1.0 / math.log(2.0)


@dataclass(frozen=True)
class FoldExp2(Pass):
    name = "fold_exp2"
    why = "exp(x) is ex2(x*log2e) on GPUs: fold log2e into the smaller factor"

    def apply(self, graph: Graph) -> Graph:
        o = graph.dim_order

        def rule(n: Node) -> Node | None:
            if n.op != "exp" or n.inputs[0].op != "mul":
                return None
            prod = n.inputs[0]
            p, q = prod.inputs
            if len(p.dims) < len(q.dims):
                p, q = q, p
            if len(q.dims) >= len(prod.dims):
                return None  # no factor is smaller than the product: nothing to gain
            scaled = build(o, "mul", (q, const(LOG2E)))
            return build(o, "exp2", (build(o, "mul", (p, scaled)),))

        return rewrite(graph, rule)


@dataclass(frozen=True)
class Reassociate(Pass):
    name = "reassociate"
    why = "multiply the low-rank factors first: fewer multiplies per state element"

    def apply(self, graph: Graph) -> Graph:
        o = graph.dim_order
        users: Counter[Node] = Counter()
        for n in topo_order([v for _, v in graph.outputs]):
            for i in n.inputs:
                users[i] += 1
        for _, v in graph.outputs:
            users[v] += 1

        def rule(n: Node) -> Node | None:
            if n.op != "mul":
                return None
            for inner, c in ((n.inputs[0], n.inputs[1]), (n.inputs[1], n.inputs[0])):
                if inner.op != "mul" or users[inner] != 1 or inner.dims != n.dims:
                    continue
                a, b = inner.inputs
                for x, y in ((a, b), (b, a)):
                    xc = set(x.dims) | set(c.dims)
                    if len(xc) < len(inner.dims) and len(set(x.dims) | set(y.dims)) == len(inner.dims):
                        return build(o, "mul", (build(o, "mul", (x, c)), y))
            return None

        return rewrite(graph, rule)
