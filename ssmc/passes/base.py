"""Passes: small, named, frozen; each maps a valid graph to a valid graph."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ssmc.ir.node import Graph, Node, topo_order
from ssmc.ops.registry import get


@dataclass(frozen=True)
class Pass:
    """A transformation of the graph. Subclasses set ``name`` and ``why`` and define ``apply``."""

    name = "pass"
    why = ""

    def apply(self, graph: Graph) -> Graph:  # pragma: no cover - abstract
        raise NotImplementedError


def build(order: tuple[str, ...], op: str, inputs: tuple[Node, ...], **attrs: Any) -> Node:
    """A new node whose dims and dtype come from the op's shape rule."""
    dims, dtype = get(op).shape(
        tuple(i.dims for i in inputs), tuple(i.dtype for i in inputs), attrs, order
    )
    return Node(op, inputs, tuple(dims), dtype, tuple(attrs.items()))


def const(value: float) -> Node:
    return Node("const", (), (), "float", (("value", float(value)),))


def rewrite(graph: Graph, rule: Callable[[Node], Node | None]) -> Graph:
    """Rebuild ``graph`` bottom-up: each node gets its rewritten inputs, then ``rule`` may
    replace it (return None for no match). Rules see nodes whose inputs are already rewritten."""
    mapping: dict[Node, Node] = {}
    roots = [v for _, v in graph.outputs] + list(graph.nodes)
    for node in topo_order(roots):
        new_inputs = tuple(mapping[i] for i in node.inputs)
        cur = node if new_inputs == node.inputs else node.replace(inputs=new_inputs)
        while True:
            nxt = rule(cur)
            if nxt is None or nxt is cur:
                break
            cur = nxt
        mapping[node] = cur
    return graph.replace(
        outputs=tuple((k, mapping[v]) for k, v in graph.outputs),
        nodes=tuple(dict.fromkeys(mapping[n] for n in graph.nodes)),
    )
