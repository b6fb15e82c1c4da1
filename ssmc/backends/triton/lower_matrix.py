"""The matrix (SSD) form of a scan whose decay is one scalar per head, on tensor cores.

``matrix_form(graph, group)`` finds it by analysis, or says why not. A group has it when
- it holds one forward scan (and maybe its final state) and reads nothing other kernels compute;
- the decay ``a`` is ``exp(x)`` or ``exp2(x)`` and has, besides the time axis, only *head*
  dims (batch and heads): one scalar per head and step, so ``log2 a`` is known;
- the state's other dims are two: ``N``, summed by the readout, and ``P``;
- the scan's input is a product whose factors each lack ``N`` or lack ``P``: ``b = u k^T``
  (u: [heads, L, P], k: [heads, L, N]);
- the scan is used only by one readout ``sum over N of h * c`` (c lacking ``P``) and by its
  final state; every other value lacks ``N``, and what the group stores has the time axis.

Then per head, with ``cum`` the running sum of ``log2 a`` inside a chunk,
``y[t] = sum_{s <= t in the chunk} 2^(cum[t] - cum[s]) (c[t] . k[s]) u[s] + 2^cum[t] c[t] . H``,
``H`` the state entering the chunk: matrix products on tensor cores (``tl.dot``). Two kernels:
*states* walks each head's sequence in tiles of ``BLOCK_T`` steps (one program per head and
block of N x P), carrying the state in registers and storing it at chunk boundaries (every
``SUB`` tiles) and at the end; *outputs* computes ``BLOCK_T`` rows per program from the chunk's
entry state and the chunk's earlier tiles, then the epilogue. Mamba-2's SSD, simple GLA, RetNet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ssmc.backends.triton.kernel_ir import Kernel, Tensor
from ssmc.errors import ArgumentError
from ssmc.ir.dims import Dims
from ssmc.ir.node import Graph, Group, Node, topo_order
from ssmc.ir.printer import node_names

LOG2E = 1.4426950408889634
MAX_N = 256  # the outputs kernel holds N whole (c and k rows of a tile)


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


def _factors(n: Node, split: frozenset) -> list[Node]:
    """The leaves of the product tree at ``n``, splitting products that have every dim of ``split``."""
    if n.op == "mul" and split <= set(n.dims):
        return _factors(n.inputs[0], split) + _factors(n.inputs[1], split)
    return [n]


def matrix_form(graph: Graph, group: Group) -> MatrixForm | str:
    """The matrix form of ``group``, or why it has none."""
    if group.loads:
        return "it reads values another kernel computes"
    scans = [n for n in group.nodes if n.op == "scan"]
    finals = [n for n in group.nodes if n.op == "scan_final"]
    if len(scans) != 1:
        return "it holds no per-step scan" if not scans else "it holds several scans"
    scan = scans[0]
    if scan.attr("reverse"):
        return "the scan runs in reverse"
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


def plain_arg(m: MatrixForm, factors: tuple[Node, ...], ctx: str) -> Node | None:
    """The argument that ``factors`` are, if they are one argument along time and ``ctx``
    (not optional): loaded as stored, its tile is a tensor-core operand as it is (exact in its
    own 16-bit dtype)."""
    if len(factors) == 1 and factors[0].op == "arg" and not factors[0].attr("optional"):
        if {m.time, ctx} <= set(factors[0].dims):
            return factors[0]
    return None


def _elementwise() -> set[str]:
    from ssmc.ops.registry import ELEMENTWISE, GROUPS

    return GROUPS[ELEMENTWISE]


def _args(nodes: list[Node], stop: Node | None = None) -> list[Node]:
    return [n for n in topo_order(nodes, stop=lambda x: x is stop) if n.op == "arg"]


def lower_matrix(graph: Graph, group: Group, form: MatrixForm) -> tuple[Kernel, Kernel]:
    """The states and outputs kernels of ``group`` in its matrix form."""
    m = form
    names = m.names
    outputs = {name: v for name, v in graph.outputs}
    final_names = [k for k, v in outputs.items() if v is m.final] if m.final is not None else []
    # each chunk's entry state, in the outputs' dtype: the outputs kernel rounds it to that for
    # its products anyway (so 16-bit outputs move half the bytes, for the same result)
    hin = Tensor(f"hin_{group.name}", ("_C",) + m.heads + (m.n, m.p), "out", source=f"hin_{group.name}", low=True)

    def arg_tensor(n: Node) -> Tensor:
        return Tensor(f"a_{n.attr('name')}", n.dims, "in", bool(n.attr("optional")), n.attr("name"))

    used = set(m.heads) | {m.time, m.n, m.p}
    size_dims = tuple(d for d in graph.dim_order if d in used)
    common = dict(
        layer=graph.name,
        strategy="matrix",
        time_dim=m.time,
        reverse=False,
        tiled_dim=None,
        full_dims=(),
        carries=(),
        pre=(),
        loop=(),
        post=(),
        batch_dim=m.batch,
    )
    base = f"{graph.name}_{group.name}_matrix"
    a_args = _args([m.log_decay, *m.u, *m.k] + ([m.h0] if m.h0 is not None else []))
    a_tensors = [arg_tensor(n) for n in a_args]
    a_tensors.append(hin)
    a_tensors += [Tensor(f"o_{name}", m.final.dims, "out", source=name) for name in final_names]
    head = (
        f"layer: {graph.name}   kernel: {group.name} (matrix form: chunk states)",
        f"heads: {list(m.heads)}   state: {m.n} x {m.p} per head, blocks of both per program   time: {m.time}",
        f"decay: {'2^' if m.log_scale == 1.0 else 'e^'}{names[m.log_decay]} per head and step",
    )
    states = Kernel(
        name=f"{base}_states",
        tensors=tuple(a_tensors),
        size_dims=size_dims + ("_C", "_NB", "_PB"),
        grid_dims=m.heads + ("_NB", "_PB"),
        header=head,
        role="states",
        matrix=m,
        **common,
    )
    store_nodes = [n for n, _ in m.stores]
    b_args = _args([m.log_decay, *m.u, *m.k, *m.c] + store_nodes, stop=m.readout)
    b_tensors = [arg_tensor(n) for n in b_args]
    b_tensors.append(Tensor(hin.name, hin.dims, "in", source=hin.source))
    for n, outs in m.stores:
        for name in outs:
            b_tensors.append(Tensor(f"o_{name}", n.dims, "out", source=name))
    head_b = (
        f"layer: {graph.name}   kernel: {group.name} (matrix form: outputs)",
        f"heads: {list(m.heads)}   rows: BLOCK_T steps x a block of {m.p} per program   time: {m.time}",
        *[f"note: {x}" for x in group.notes],
    )
    full = Kernel(
        name=base,
        tensors=tuple(b_tensors),
        size_dims=size_dims + ("_C", "_RT", "_PB"),
        grid_dims=m.heads + ("_RT", "_PB"),
        header=head_b,
        role="full",
        matrix=m,
        **common,
    )
    return states, full


# --- checks at launch, on the call's arguments (a tensor: its pointer, then a stride per dim) ---


def tiles_aligned(kernel: Kernel, call: list) -> bool:
    """Whether every tile of the matrix form starts at a multiple of 8 elements: each tensor with
    an N or P dim has strides along the other dims (heads, time, chunks) that are multiples of 8
    (the pointers themselves Triton finds 16-byte aligned or not)."""
    m = kernel.matrix
    i = 0
    ok = True
    for t in kernel.tensors:
        strides = call[i + 1 : i + 1 + len(t.dims)]
        i += 1 + len(t.dims)
        if m.n in t.dims or m.p in t.dims:
            ok = ok and all(int(s) % 8 == 0 for d, s in zip(t.dims, strides) if d not in (m.n, m.p))
    return ok


def check_tile_offsets(name: str, kernel: Kernel, call: list, sched: Any) -> None:
    """The matrix form addresses a tile as a 64-bit base plus 32-bit offsets within the tile:
    each tensor's largest offset in a tile must stay below 2^31 elements."""
    m = kernel.matrix
    blocks = dict(sched.blocks)
    blocks[m.time] = sched.block_t
    i = 0
    for t in kernel.tensors:
        strides = call[i + 1 : i + 1 + len(t.dims)]
        i += 1 + len(t.dims)
        span = sum((blocks[d] - 1) * abs(int(s)) for d, s in zip(t.dims, strides) if d in blocks)
        if span >= 2**31:
            worst = max(((d, int(s)) for d, s in zip(t.dims, strides) if d in blocks), key=lambda ds: abs(ds[1]))
            raise ArgumentError(
                f"{name}: `{t.source}` has stride {worst[1]} along {worst[0]}; a tile of the matrix form spans "
                f"{span} elements of it, and tiles must span fewer than 2^31 (make it contiguous)"
            )
