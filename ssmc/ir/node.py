"""Immutable IR nodes and the layer graph.

A ``Node`` is one op applied to input nodes, with its result's named dims and dtype. Nodes are
frozen and compare structurally (op, inputs, dims, dtype, attrs), so two identical expressions
are equal and hash alike: CSE is interning. The graph of a layer is its argument nodes, its
named outputs, and (until DCE) every node the tracer created.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ssmc.ir.dims import Dims


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


@dataclass(frozen=True, eq=False)
class Node:
    """One op. ``dims`` are the result's named dims in the layer's canonical order."""

    op: str
    inputs: tuple[Node, ...]
    dims: Dims
    dtype: str
    attrs: tuple[tuple[str, Any], ...] = ()
    _hash: int = field(default=0, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "attrs", tuple(sorted((k, _freeze(v)) for k, v in self.attrs)))
        h = hash((self.op, tuple(hash(i) for i in self.inputs), self.dims, self.dtype, self.attrs))
        object.__setattr__(self, "_hash", h)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Node) or self._hash != other._hash:
            return False
        return (
            self.op == other.op
            and self.dims == other.dims
            and self.dtype == other.dtype
            and self.attrs == other.attrs
            and len(self.inputs) == len(other.inputs)
            and all(a == b for a, b in zip(self.inputs, other.inputs))
        )

    def attr(self, key: str, default: Any = None) -> Any:
        for k, v in self.attrs:
            if k == key:
                return v
        return default

    @property
    def attr_dict(self) -> dict[str, Any]:
        return dict(self.attrs)

    def replace(self, **changes: Any) -> Node:
        fields = {
            "op": self.op,
            "inputs": self.inputs,
            "dims": self.dims,
            "dtype": self.dtype,
            "attrs": self.attrs,
        }
        fields.update(changes)
        return Node(**fields)


@dataclass(frozen=True)
class Group:
    """A set of nodes the backend lowers into one kernel (set by the ``fuse`` pass).

    ``nodes`` are in topological order; ``loads`` are values computed by other groups that
    this one reads from memory; ``stores`` are values this group writes (layer outputs and
    values other groups read); ``notes`` say why fusion stopped where it did.
    """

    name: str
    nodes: tuple[Node, ...]
    loads: tuple[Node, ...]
    stores: tuple[Node, ...]
    notes: tuple[str, ...] = ()

    @property
    def scans(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.op == "scan")


@dataclass(frozen=True)
class Graph:
    """A layer as IR.

    ``args`` are the argument nodes (op ``arg``) in signature order; ``outputs`` the named
    results; ``nodes`` every node known to the graph (the tracer records dead ones too, DCE
    drops them); ``groups`` the fusion plan once the ``fuse`` pass has run.
    """

    name: str
    dim_order: Dims
    args: tuple[Node, ...]
    outputs: tuple[tuple[str, Node], ...]
    nodes: tuple[Node, ...] = ()
    fixed_sizes: tuple[tuple[str, int], ...] = ()
    groups: tuple[Group, ...] | None = None

    def arg(self, name: str) -> Node:
        for a in self.args:
            if a.attr("name") == name:
                return a
        raise KeyError(name)

    def output(self, name: str) -> Node:
        for n, v in self.outputs:
            if n == name:
                return v
        raise KeyError(name)

    def scan_axis(self) -> str | None:
        """The axis of the layer's (first) scan, else of its first conv (the sequence axis),
        or None if it has neither."""
        for n in self.nodes:
            if n.op in ("scan", "scan_final", "matrix_scan", "matrix_scan_final"):
                return n.attr("axis")
        from ssmc.ops.conv import CONV_FAMILY  # (ops builds on the IR: imported here)

        for n in self.nodes:
            if n.op in CONV_FAMILY:
                return n.attr("axis")
        return None

    def live(self) -> tuple[Node, ...]:
        """Nodes reachable from the outputs, plus all args, in topological order."""
        order = topo_order([v for _, v in self.outputs])
        seen = set(order)
        return tuple([a for a in self.args if a not in seen] + order)

    def replace(self, **changes: Any) -> Graph:
        fields = dict(self.__dict__)
        fields.update(changes)
        return Graph(**fields)


def topo_order(roots: Iterable[Node], stop: Callable[[Node], bool] | None = None) -> list[Node]:
    """All nodes reachable from ``roots``, inputs before users, deterministic (DFS post-order,
    iterative so deep graphs do not hit the recursion limit). Nodes for which ``stop`` holds
    are neither listed nor walked through."""
    out: list[Node] = []
    done: set[Node] = set()
    for root in roots:
        if root in done or (stop is not None and stop(root)):
            continue
        stack: list[tuple[Node, Iterator[Node]]] = [(root, iter(root.inputs))]
        onstack = {root}
        while stack:
            node, it = stack[-1]
            child = next(it, None)
            if child is None:
                stack.pop()
                onstack.discard(node)
                if node not in done:
                    done.add(node)
                    out.append(node)
            elif stop is not None and stop(child):
                continue
            elif child not in done and child not in onstack:
                onstack.add(child)
                stack.append((child, iter(child.inputs)))
    return out
