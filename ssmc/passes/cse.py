"""cse: merge structurally equal nodes (nodes are immutable and compare by structure, so CSE is
interning: one canonical object per structure)."""

from __future__ import annotations

from dataclasses import dataclass

from ssmc.ir.node import Graph, Node
from ssmc.passes.base import Pass, rewrite


@dataclass(frozen=True)
class CSE(Pass):
    name = "cse"
    why = "compute each value once (e.g. delta*A shared by Abar and Bbar in exact ZOH)"

    def apply(self, graph: Graph) -> Graph:
        table: dict[Node, Node] = {}

        def rule(n: Node) -> Node | None:
            canon = table.setdefault(n, n)
            return canon if canon is not n else None

        return rewrite(graph, rule)
