"""The IR verifier: checks every invariant a pass must keep. Runs after every pass in tests."""

from __future__ import annotations

from ssmc.errors import DefinitionError, VerificationError
from ssmc.ir.node import Graph, Node, topo_order
from ssmc.ops.registry import get


def verify_node(node: Node, order: tuple[str, ...]) -> None:
    op = get(node.op)
    if op.arity >= 0 and len(node.inputs) != op.arity:
        raise VerificationError(f"`{node.op}` takes {op.arity} operands, has {len(node.inputs)}")
    if node.op in ("scan", "scan_final") and len(node.inputs) not in (2, 3):
        raise VerificationError(f"`{node.op}` takes (a, b) or (a, b, h0)")
    attrs = node.attr_dict
    for a in op.attrs:
        if a not in attrs:
            raise VerificationError(f"`{node.op}` lacks attribute {a!r}")
    for d in node.dims:
        if d not in order:
            raise VerificationError(f"`{node.op}` has dim {d!r} not among the layer's {order}")
    if list(node.dims) != [d for d in order if d in node.dims]:
        raise VerificationError(f"`{node.op}` dims {node.dims} are not in canonical order")
    try:
        dims, dtype = op.shape(
            tuple(i.dims for i in node.inputs), tuple(i.dtype for i in node.inputs), attrs, order
        )
    except DefinitionError as e:
        raise VerificationError(f"`{node.op}`: {e}") from e
    if tuple(dims) != node.dims or dtype != node.dtype:
        raise VerificationError(
            f"`{node.op}` says {list(node.dims)} {node.dtype}, its rule gives {list(dims)} {dtype}"
        )


def verify(graph: Graph) -> None:
    """Raise ``VerificationError`` if ``graph`` breaks an invariant."""
    names = [a.attr("name") for a in graph.args]
    if len(set(names)) != len(names):
        raise VerificationError(f"argument names repeat: {names}")
    out_names = [n for n, _ in graph.outputs]
    if len(set(out_names)) != len(out_names) or not out_names:
        raise VerificationError(f"output names must be unique and non-empty: {out_names}")
    argset = set(graph.args)
    for node in topo_order([v for _, v in graph.outputs] + list(graph.nodes)):
        if node.op == "arg" and node not in argset:
            raise VerificationError(f"argument {node.attr('name')!r} is not in the signature")
        verify_node(node, graph.dim_order)
    if graph.groups is not None:
        # values that depend on a recurrence belong to exactly one kernel; recurrence-free
        # ones (the prologue) are recomputed in every kernel that needs them
        live_order = topo_order([v for _, v in graph.outputs])
        live = set(live_order)
        recurrent: set[Node] = set()
        for n in live_order:
            if n.op in ("scan", "scan_final") or any(i in recurrent for i in n.inputs):
                recurrent.add(n)
        placed: dict[Node, str] = {}
        for g in graph.groups:
            for n in g.nodes:
                if n in recurrent and n in placed:
                    raise VerificationError(f"node {n.op} is in groups {placed[n]} and {g.name}")
                placed[n] = g.name
        missing = [n.op for n in live if n.op not in ("arg", "const") and n not in placed]
        if missing:
            raise VerificationError(f"live nodes in no group: {missing}")
