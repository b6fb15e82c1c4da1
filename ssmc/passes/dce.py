"""dce: drop nodes no output needs (the tracer records every op the function made)."""

from __future__ import annotations

from dataclasses import dataclass

from ssmc.ir.node import Graph, topo_order
from ssmc.passes.base import Pass


@dataclass(frozen=True)
class DCE(Pass):
    name = "dce"
    why = "dead values would otherwise be computed (and could block fusion)"

    def apply(self, graph: Graph) -> Graph:
        live = topo_order([v for _, v in graph.outputs])
        return graph.replace(nodes=tuple(n for n in live if n.op != "arg"))
