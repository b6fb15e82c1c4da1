"""A stable text form of a graph: args first, then nodes in a deterministic topological order,
each named ``%k``; dead nodes (not reachable from an output) are marked."""

from __future__ import annotations

import hashlib

from ssmc.ir.node import Graph, Node, topo_order


def _fmt_attr(v: object) -> str:
    if isinstance(v, tuple):
        return "[" + ", ".join(_fmt_attr(x) for x in v) + "]"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def format_node(node: Node, names: dict[Node, str]) -> str:
    attrs = node.attr_dict
    dims = "[" + ", ".join(node.dims) + "]"
    dt = "" if node.dtype == "float" else f" {node.dtype}"
    if node.op == "arg":
        extra = " optional" if attrs.get("optional") else ""
        init = f" init={attrs['init']}" if attrs.get("init") else ""
        return f"{names[node]} = arg {attrs['name']} : {attrs['kind']}{extra} {dims}{init}"
    if node.op == "const":
        return f"{names[node]} = const {attrs['value']!r}"
    shown = {k: v for k, v in attrs.items() if k != "full_dims"}
    a = "[" + ", ".join(f"{k}={_fmt_attr(v)}" for k, v in shown.items()) + "]" if shown else ""
    operands = ", ".join(names[i] for i in node.inputs)
    return f"{names[node]} = {node.op}{a} {operands} : {dims}{dt}"


def node_names(graph: Graph) -> dict[Node, str]:
    """``%k`` for every node: args first, then a deterministic topological order (the
    numbering ``ssmc show`` prints and generated kernels cite)."""
    roots = [v for _, v in graph.outputs]
    order = list(graph.args) + [n for n in topo_order(roots + list(graph.nodes)) if n.op != "arg"]
    return {n: f"%{i}" for i, n in enumerate(order)}


def format_graph(graph: Graph) -> str:
    live = set(topo_order([v for _, v in graph.outputs]))
    names = node_names(graph)
    order = list(names)
    lines = [f"layer {graph.name} dims [{', '.join(graph.dim_order)}]"]
    if graph.fixed_sizes:
        lines.append("  sizes " + ", ".join(f"{d}={s}" for d, s in graph.fixed_sizes))
    for n in order:
        dead = "" if n in live or n.op == "arg" else "    # dead"
        lines.append("  " + format_node(n, names) + dead)
    lines.append("  return " + ", ".join(f"{k}={names[v]}" for k, v in graph.outputs))
    if graph.groups is not None:
        for g in graph.groups:
            members = ", ".join(names[n] for n in g.nodes if n.op not in ("arg", "const"))
            lines.append(f"  group {g.name}: {members}")
            for n in g.loads:
                lines.append(f"    loads {names[n]}")
            for n in g.stores:
                lines.append(f"    stores {names[n]}")
            for note in g.notes:
                lines.append(f"    note: {note}")
    return "\n".join(lines) + "\n"


def graph_hash(graph: Graph) -> str:
    """A content hash of the graph's text form (stable across processes)."""
    return hashlib.sha256(format_graph(graph).encode()).hexdigest()[:16]
