"""The matrix (SSD) form: finding it by analysis, and the ``form_matrix_scans`` pass.

``matrix_form(graph, group)`` finds it in a fused group, or says why not. A group has it when
- it holds one forward scan (and maybe its final state) and reads nothing other kernels compute;
- the decay ``a`` is ``exp(x)`` or ``exp2(x)`` and has, besides the time axis, only *head*
  dims (batch and heads): one scalar per head and step, so ``log2 a`` is known;
- the state's other dims are two: ``N``, summed by the readout, and ``P``;
- the scan's input is a product whose factors each lack ``N`` or lack ``P``: ``b = u k^T``
  (u: [heads, L, P], k: [heads, L, N]);
- the scan is used only by one readout ``sum over N of h * c`` (c lacking ``P``) and by its
  final state; every other value lacks ``N``, and what the group stores has the time axis.
A group made of one ``matrix_scan`` (and its final state) with its elementwise prologue has it
by construction (``op_form``), forward or reverse.

``FormMatrixScans`` rewrites each such scan, with its readout and final state, into the ops
``matrix_scan`` / ``matrix_scan_final``: the backward is derived from those (autodiff's
``matrix_vjp``: three more matrix scans, two of them reverse, and the decay's gradient, a
``matrix_scan_dl`` whose kernel reads two of their chunk states), so the backward runs on
tensor cores too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ssmc.ir.dims import Dims
from ssmc.ir.node import Graph, Group, Node, topo_order
from ssmc.ir.printer import node_names
from ssmc.ops.conv import CONV_OPS, conv_of_args
from ssmc.passes.base import Pass, build, const, rewrite

LOG2E = 1.4426950408889634
MATRIX_OPS = ("matrix_scan", "matrix_scan_final")
MATRIX_DL = "matrix_scan_dl"  # a matrix scan's decay gradient: a kernel reading two scans' chunk states


@dataclass(frozen=True)
class MatrixForm:
    scan: Node
    final: Node | None  # the scan's final state, if the group computes it
    readout: Node  # sum over N of h * c
    time: str
    heads: Dims  # batch and head dims: one recurrence each
    n: str  # the state dim the readout sums
    p: str  # the other state dim
    log_decay: Node  # x with a = exp(x) or exp2(x)
    log_scale: float  # log2 a = x * log_scale
    u: tuple[Node, ...]  # factors of b along P
    k: tuple[Node, ...]  # factors of b along N
    c: tuple[Node, ...]  # factors of the readout along N
    h0: Node | None
    stores: tuple[tuple[Node, tuple[str, ...]], ...]  # epilogue values and the output names they go to
    batch: str | None  # the heads' dim that indexes sequences of a packed batch
    names: dict  # the graph's node names (%k), for the generated source's comments
    reverse: bool = False  # a reverse matrix scan (``matrix_scan`` ops only): see ``op_form``
    dy: tuple[Node, ...] = ()  # a ``matrix_scan_dl``'s: the outputs' cotangent (along P); see ``dl_form``
    summed: Dims = ()  # head dims the outputs kernel loops over and sums (a ``matrix_scan``'s sum_dims)
    # factors along P (a decay gradient's q or k) whose products with the entry state's part of
    # each row the outputs kernel also sums over its P block and stores per head and step, for
    # the decay gradient (``lower_matrix.share_matrix_states``, sides)
    side: tuple[Node, ...] = ()


def _factors(n: Node, split: frozenset) -> list[Node]:
    """The leaves of the product tree at ``n``, splitting products that have every dim of ``split``."""
    if n.op == "mul" and split <= set(n.dims):
        return _factors(n.inputs[0], split) + _factors(n.inputs[1], split)
    return [n]


def matrix_form(graph: Graph, group: Group) -> MatrixForm | str:
    """The matrix form of ``group``, or why it has none."""
    if any(n.op == MATRIX_DL for n in group.nodes):
        return dl_form(graph, group)
    if any(n.op in MATRIX_OPS for n in group.nodes):
        return op_form(graph, group)
    if group.loads:
        return "it reads values another kernel computes"
    if any(n.op in CONV_OPS and not conv_of_args(n) for n in group.nodes):
        return "it holds a conv of a computed value or a conv's final window"
    scans = [n for n in group.nodes if n.op == "scan"]
    finals = [n for n in group.nodes if n.op == "scan_final"]
    if len(scans) != 1:
        return "it holds no per-step scan" if not scans else "it holds several scans"
    scan = scans[0]
    if scan.attr("reverse"):
        return "the scan runs in reverse"
    if scan.attr("complex"):
        return "the scan is complex (its decay mixes the two parts)"
    if any(f.inputs != scan.inputs for f in finals):
        return "it holds several recurrences"
    time = scan.attr("axis")
    a, b = scan.inputs[0], scan.inputs[1]
    h0 = scan.inputs[2] if len(scan.inputs) == 3 else None
    if a.op not in ("exp", "exp2"):
        return f"the decay is `{a.op}`, not exp or exp2 (its logarithm is needed)"
    users: dict[Node, list[Node]] = {}
    for n in group.nodes:
        for i in n.inputs:
            users.setdefault(i, []).append(n)
    on_scan = {scan}  # the values computed from the per-step state (group.nodes: inputs first)
    for n in group.nodes:
        if any(i in on_scan for i in n.inputs):
            on_scan.add(n)

    def readout_leaves(n: Node) -> list[Node]:  # split the products that hold the state
        if n.op == "mul" and n in on_scan and n is not scan:
            return readout_leaves(n.inputs[0]) + readout_leaves(n.inputs[1])
        return [n]

    readouts = []
    for n in group.nodes:
        if n.op == "sum" and n.inputs[0] in on_scan:
            readouts.append((n, readout_leaves(n.inputs[0])))
    if len(readouts) != 1 or scan not in readouts[0][1]:
        return "the state is not read out by exactly one sum over a state dim of h * c"
    readout, leaves = readouts[0]
    nd = readout.attr("dim")
    if nd in a.dims:
        return f"the decay varies along {nd!r}, the dim the readout sums"
    if leaves.count(scan) != 1:
        return "the readout multiplies the state by itself"
    c = tuple(x for x in leaves if x is not scan)
    # P: the state dim (not the decay's) along which neither the readout's factor nor the
    # input's N side varies; the state's other dims are heads (batch, heads)
    rest = [d for d in scan.dims if d not in (time, nd) and d not in a.dims]
    found = []
    for pd in rest:
        if any(pd in x.dims for x in c):
            continue
        ks, us = [], []
        for x in _factors(b, frozenset((nd, pd))):
            (ks if nd in x.dims else us).append(x)
        if ks and not any(pd in x.dims for x in ks):
            found.append((pd, ks, us))
    if len(found) != 1:
        varies = [d for d in a.dims if d != time]
        return (f"the decay varies along {varies}, and of the state's other dims {rest} "
                f"{'none' if not found else 'several'} can be P (a dim the input factors into, "
                f"read out by a sum over {nd!r} with a factor not along P)")
    pd, ks, us = found[0]
    heads = tuple(d for d in scan.dims if d not in (time, nd, pd))
    tree = set(topo_order([readout.inputs[0]], stop=lambda x: x in leaves)) | {readout}
    for n in tree - {readout}:  # the readout's products have no other use
        if any(u not in tree for u in users.get(n, [])):
            return "a product of the state is used outside its readout"
    if any(u not in tree for u in users.get(scan, [])):
        return "the per-step state is used outside its readout"
    allowed = set(heads) | {time, pd}
    stores = []
    outputs: dict[Node, list[str]] = {}
    for name, v in graph.outputs:
        outputs.setdefault(v, []).append(name)
    prologue = set(topo_order([a, b] + list(c) + ([h0] if h0 is not None else [])))
    for n in group.nodes:
        if n in prologue or n in tree or n.op in ("scan", "scan_final", "arg", "const"):
            continue
        if n.op not in _elementwise():
            return f"its epilogue holds `{n.op}` ({list(n.dims)}); only elementwise ops follow the readout"
        if not set(n.dims) <= allowed:
            return f"a value after the readout varies along {sorted(set(n.dims) - allowed)}"
    for n in group.stores:
        if n.op == "scan_final":
            continue
        if time not in n.dims or not set(n.dims) <= allowed:
            return f"it stores a value of dims {list(n.dims)}; the outputs kernel writes [heads, {time}, {pd}] values"
        if not outputs.get(n):
            return "another kernel reads a value it computes"
        stores.append((n, tuple(outputs[n])))
    for n in group.nodes:
        if n.op == "sum" and n is not readout:
            return "it holds a second reduction"
    batch = graph.dim_order[0] if graph.dim_order and graph.dim_order[0] in heads else None
    return MatrixForm(
        scan=scan,
        final=finals[0] if finals else None,
        readout=readout,
        time=time,
        heads=tuple(d for d in graph.dim_order if d in heads),
        n=nd,
        p=pd,
        log_decay=a.inputs[0],
        log_scale=1.0 if a.op == "exp2" else LOG2E,
        u=tuple(us),
        k=tuple(ks),
        c=c,
        h0=h0,
        stores=tuple(stores),
        batch=batch,
        names=node_names(graph),
    )


def _elementwise() -> set[str]:
    from ssmc.ops.registry import ELEMENTWISE, GROUPS

    return GROUPS[ELEMENTWISE]




def _operands_recomputed(group: Group, ops: list[Node]) -> str:
    """Why the operands of ``ops`` (a group's matrix ops) cannot be recomputed in their kernel
    from arguments, or ''. A conv of arguments is recomputed like the elementwise ones."""
    if group.loads:
        return "it reads values another kernel computes"
    from ssmc.ops.registry import get

    others = [n for n in group.nodes if n not in ops and n.op not in ("arg", "const")]
    bad = next((n for n in others if not (get(n.op).group == "elementwise" or conv_of_args(n))), None)
    return f"its operands need `{bad.op}`, not elementwise" if bad is not None else ""


def op_form(graph: Graph, group: Group) -> MatrixForm | str:
    """The matrix form of a group holding one matrix scan (``matrix_scan`` and / or its final
    state, same operands) and what its operands need, elementwise from arguments."""
    from ssmc.passes.fuse import recurrence_key

    ms = [n for n in group.nodes if n.op in MATRIX_OPS]
    if len({recurrence_key(n) for n in ms}) != 1:  # (a scan and its final state: one recurrence)
        return "it holds several matrix scans"
    why = _operands_recomputed(group, ms)
    if why:
        return why
    others = [n for n in group.nodes if n not in ms and n.op not in ("arg", "const")]
    if any(any(i in ms for i in n.inputs) for n in others):
        return "a value after the matrix scan is computed in its kernel"
    m0 = ms[0]
    at = m0.attr_dict
    scan = next((n for n in ms if n.op == "matrix_scan"), None)
    final = next((n for n in ms if n.op == "matrix_scan_final"), None)
    outputs: dict[Node, list[str]] = {}
    for name, v in graph.outputs:
        outputs.setdefault(v, []).append(name)
    for n in group.stores:
        if n not in ms or not outputs.get(n):
            return "it stores a value other than the matrix scan's outputs"
    time, kd, vd = at["axis"], at["kdim"], at["vdim"]
    heads = tuple(d for d in at["full_dims"] if d not in (time, kd, vd))
    ld, v, k, q = m0.inputs[:4]
    return MatrixForm(
        scan=scan if scan is not None else m0,
        final=final,
        readout=scan,
        time=time,
        heads=heads,
        n=kd,
        p=vd,
        log_decay=ld,
        log_scale=LOG2E,
        u=(v,),
        k=(k,),
        c=(q,),
        h0=m0.inputs[4] if len(m0.inputs) == 5 else None,
        stores=((scan, tuple(outputs[scan])),) if scan is not None and scan in group.stores else (),
        batch=graph.dim_order[0] if graph.dim_order and graph.dim_order[0] in heads else None,
        names=node_names(graph),
        reverse=bool(at["reverse"]),
        summed=tuple(scan.attr("sum_dims") or ()) if scan is not None else (),
    )


def dl_form(graph: Graph, group: Group) -> MatrixForm | str:
    """The form of a group holding one ``matrix_scan_dl`` (the decay's gradient of a matrix
    scan) with its elementwise operands: its kernel reads the chunk states of the scan's state
    and of its cotangent's (``dl_state_keys``), which other groups' states kernels store."""
    dls = [n for n in group.nodes if n.op == MATRIX_DL]
    if len(dls) != 1:
        return "it holds several decay gradients"
    why = _operands_recomputed(group, dls)
    if why:
        return why
    dl = dls[0]
    at = dl.attr_dict
    if at["reverse"]:
        return "the decay gradient of a reverse matrix scan has no kernel yet"
    outputs = [name for name, v in graph.outputs if v is dl]
    time, kd, vd = at["axis"], at["kdim"], at["vdim"]
    heads = tuple(d for d in at["full_dims"] if d not in (time, kd, vd))
    ld, v, k, q, dy = dl.inputs[:5]
    return MatrixForm(
        scan=dl,
        final=None,
        readout=None,
        time=time,
        heads=heads,
        n=kd,
        p=vd,
        log_decay=ld,
        log_scale=LOG2E,
        u=(v,),
        k=(k,),
        c=(q,),
        h0=dl.inputs[5] if at["with_h0"] else None,
        stores=((dl, tuple(outputs)),) if outputs else (),
        batch=graph.dim_order[0] if graph.dim_order and graph.dim_order[0] in heads else None,
        names=node_names(graph),
        dy=(dy,),
    )


def dl_state_keys(n: Node) -> tuple[tuple, tuple]:
    """The ``state_key`` of the two states a ``matrix_scan_dl`` pairs: the scan's own (from
    h0) and its cotangent's (the reverse scan of dy q^T from gf: a backward's dv scan)."""
    at = n.attr_dict
    ld, v, k, q, dy = n.inputs[:5]
    h0 = n.inputs[5] if at["with_h0"] else None
    gf = n.inputs[-1] if at["with_gf"] else None
    axis, rev, full = at["axis"], bool(at["reverse"]), at["full_dims"]
    own = (ld, h0, frozenset({(v, at["vdim"]), (k, at["kdim"])}), axis, rev, full)
    cot = (ld, gf, frozenset({(dy, at["vdim"]), (q, at["kdim"])}), axis, not rev, full)
    return own, cot


def state_key(n: Node) -> tuple:
    """What the state of matrix scan ``n`` depends on: two scans with equal keys carry the same
    state. ``S[kdim, vdim] = sum (decay) k[kdim] v[vdim]`` (from h0): a scan whose v and k trade
    places, along each other's dims, holds the same values under the same dim names (a backward's
    dq scan is its forward's y scan with v and k swapped; dk's is dv's)."""
    if n.op not in MATRIX_OPS:  # a layer's own scan in the matrix form: its own state
        return (n,)
    at = n.attr_dict
    ld, v, k = n.inputs[:3]
    h0 = n.inputs[4] if len(n.inputs) == 5 else None
    return (ld, h0, frozenset({(v, at["vdim"]), (k, at["kdim"])}), at["axis"], bool(at["reverse"]), at["full_dims"])


def _product(order: Dims, factors: tuple[Node, ...]) -> Node:
    out = factors[0]
    for f in factors[1:]:
        out = build(order, "mul", (out, f))
    return out


@dataclass(frozen=True)
class FormMatrixScans(Pass):
    name = "form_matrix_scans"
    why = "a scan with a scalar decay per head and a rank-one input, read out by one sum, is a matrix scan (tensor cores, and so is its derivative)"

    def apply(self, graph: Graph) -> Graph:
        from ssmc.passes.fuse import Fuse

        fused = Fuse().apply(graph)
        order = graph.dim_order
        repl: dict[Node, Node] = {}
        for g in fused.groups or ():
            m = matrix_form(fused, g)
            if not isinstance(m, MatrixForm) or m.readout.op != "sum":
                continue
            ld = m.log_decay
            if m.log_scale == 1.0:  # exp2(x) = exp(x ln 2)
                ld = build(order, "mul", (ld, const(math.log(2.0))))
            ins = (ld, _product(order, m.u), _product(order, m.k), _product(order, m.c))
            ins += (m.h0,) if m.h0 is not None else ()
            full = tuple(d for d in order if d in set(m.heads) | {m.time, m.n, m.p})
            attrs = dict(axis=m.time, kdim=m.n, vdim=m.p, reverse=False, full_dims=full)
            repl[m.readout] = build(order, "matrix_scan", ins, **attrs)
            if m.final is not None:
                repl[m.final] = build(order, "matrix_scan_final", ins, **attrs)
        if not repl:
            return graph
        out = rewrite(graph, lambda n: repl.get(n))
        return out.replace(nodes=tuple(topo_order([v for _, v in out.outputs])))


@dataclass(frozen=True)
class FuseMatrixScans(Pass):
    name = "fuse_matrix_scans"
    why = "one kernel pair per matrix scan (and its final state), its elementwise operands recomputed there"

    def apply(self, graph: Graph) -> Graph:
        from ssmc.passes.fuse import recurrence_key

        outs = {v for _, v in graph.outputs}
        live = topo_order([v for _, v in graph.outputs])
        recs: dict[tuple, list[Node]] = {}
        for n in live:
            if n.op in MATRIX_OPS or n.op == MATRIX_DL:
                recs.setdefault(recurrence_key(n), []).append(n)
        if any(v.op not in MATRIX_OPS and v.op != MATRIX_DL for v in outs):
            raise ValueError(f"{graph.name}: fuse_matrix_scans takes a graph whose outputs are matrix scans")
        groups = []
        for k, members in enumerate(recs.values()):
            nodes = tuple(topo_order(members))
            what = "the decay's gradient from two matrix scans' chunk states" if members[0].op == MATRIX_DL else "a matrix scan of the backward"
            groups.append(Group(f"m{k}", nodes, (), tuple(n for n in members if n in outs),
                                (f"{what}, its operands recomputed",)))
        return graph.replace(groups=tuple(groups))
