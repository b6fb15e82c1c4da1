"""The matrix (SSD) form of a scan whose decay is one scalar per head, on tensor cores.

``matrix_form(graph, group)`` (``ssmc.passes.matrix_scans``) finds it by analysis, or says why
not: a scan whose decay is exp or exp2 of one value per head and step, whose input is u k^T,
read out by one sum over N of h * c; or a ``matrix_scan`` op (a backward's).

Then per head, with ``cum`` the running sum of ``log2 a`` inside a chunk,
``y[t] = sum_{s <= t in the chunk} 2^(cum[t] - cum[s]) (c[t] . k[s]) u[s] + 2^cum[t] c[t] . H``,
``H`` the state entering the chunk: matrix products on tensor cores (``tl.dot``). Two kernels:
*states* walks each head's sequence in tiles of ``BLOCK_T`` steps (one program per head and
block of N x P), carrying the state in registers and storing it at chunk boundaries (every
``SUB`` tiles) and at the end; *outputs* computes ``BLOCK_T`` rows per program from the chunk's
entry state and the chunk's earlier tiles, then the epilogue. Mamba-2's SSD, simple GLA, RetNet.

A reverse matrix scan (in backwards) is the same kernels over *positions* counted from the end
of the steps padded to whole chunks (n_pos = the chunks' steps): position p is step
n_pos - 1 - p (the first n_pos - n positions hold none), and the decay applied on entering
position p is the one of step n_pos - p (the step after it, in time); its final state takes
one more position (p = n_pos: no input, the decay of step 0). So a reverse scan's chunks are a
forward one's, and the decay's gradient (``lower_matrix_dl``) pairs their chunk states.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ssmc.backends.triton.kernel_ir import Kernel, Tensor
from ssmc.errors import ArgumentError, LoweringError
from ssmc.ir.node import Graph, Group, Node, topo_order
from ssmc.passes.matrix_scans import LOG2E, MatrixForm, dl_state_keys, matrix_form, state_key  # noqa: F401 (the analysis)

MAX_N = 256  # the outputs kernel holds N whole (c and k rows of a tile)


def plain_arg(m: MatrixForm, factors: tuple[Node, ...], ctx: str) -> Node | None:
    """The argument that ``factors`` are, if they are one argument along time and ``ctx``
    (not optional): loaded as stored, its tile is a tensor-core operand as it is (exact in its
    own 16-bit dtype)."""
    if len(factors) == 1 and factors[0].op == "arg" and not factors[0].attr("optional"):
        if {m.time, ctx} <= set(factors[0].dims):
            return factors[0]
    return None


def _args(nodes: list[Node], stop: Node | None = None) -> list[Node]:
    return [n for n in topo_order(nodes, stop=lambda x: x is stop) if n.op == "arg"]


def lower_matrix(graph: Graph, group: Group, form: MatrixForm) -> tuple[Kernel, ...]:
    """The states and outputs kernels of ``group`` in its matrix form (the states kernel alone
    where only the final state is used); a decay gradient's one kernel (``lower_matrix_dl``)."""
    if form.dy:
        return (lower_matrix_dl(graph, group, form),)
    m = form
    names = m.names
    outputs = {name: v for name, v in graph.outputs}
    final_names = [k for k, v in outputs.items() if v is m.final] if m.final is not None else []
    # each chunk's entry state, in the outputs' dtype: the outputs kernel rounds it to that for
    # its products anyway (so 16-bit outputs move half the bytes, for the same result)
    hin = Tensor(f"hin_{group.name}", ("_C",) + m.heads + (m.n, m.p), "out", source=f"hin_{group.name}", low=True)

    size_dims, common = _sizes_and_common(graph, group, m)
    base = f"{graph.name}_{group.name}_matrix"
    a_args = _args([m.log_decay, *m.u, *m.k] + ([m.h0] if m.h0 is not None else []))
    a_tensors = [_arg_tensor(n) for n in a_args]
    a_tensors.append(hin)
    a_tensors += [Tensor(f"o_{name}", m.final.dims, "out", source=name) for name in final_names]
    head = (
        f"layer: {graph.name}   kernel: {group.name} (matrix form: chunk states{', reverse' if m.reverse else ''})",
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
    if m.readout is None:  # only the final state is used (a backward's matrix scan)
        return (states,)
    store_nodes = [n for n, _ in m.stores]
    b_args = _args([m.log_decay, *m.u, *m.k, *m.c] + store_nodes, stop=m.readout)
    b_tensors = [_arg_tensor(n) for n in b_args]
    b_tensors.append(Tensor(hin.name, hin.dims, "in", source=hin.source))
    for n, outs in m.stores:
        for name in outs:
            b_tensors.append(Tensor(f"o_{name}", n.dims, "out", source=name))
    if m.summed and [n for n, _ in m.stores] != [m.scan]:  # pragma: no cover - op_form's groups store the scan
        raise LoweringError(f"{graph.name}: a matrix scan summed over {list(m.summed)} with an epilogue")
    over = f"   summed over {list(m.summed)}: a loop over them in each program" if m.summed else ""
    head_b = (
        f"layer: {graph.name}   kernel: {group.name} (matrix form: outputs{', reverse' if m.reverse else ''})",
        f"heads: {list(m.heads)}   rows: BLOCK_T steps x a block of {m.p} per program   time: {m.time}{over}",
        *[f"note: {x}" for x in group.notes],
    )
    full = Kernel(
        name=base,
        tensors=tuple(b_tensors),
        size_dims=size_dims + ("_C", "_RT", "_PB"),
        grid_dims=tuple(d for d in m.heads if d not in m.summed) + ("_RT", "_PB"),
        header=head_b,
        role="full",
        matrix=m,
        **common,
    )
    return states, full


def _arg_tensor(n: Node) -> Tensor:
    return Tensor(f"a_{n.attr('name')}", n.dims, "in", bool(n.attr("optional")), n.attr("name"))


def _sizes_and_common(graph: Graph, group: Group, m: MatrixForm) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The dims whose sizes a matrix-form kernel of ``group`` takes, and the fields every such
    kernel shares."""
    used = set(m.heads) | {m.time, m.n, m.p} | {n.attr("taps") for n in group.nodes if n.op == "conv"}
    common = dict(layer=graph.name, strategy="matrix", time_dim=m.time, reverse=False, tiled_dim=None, full_dims=(),
                  carries=(), pre=(), loop=(), post=(), batch_dim=m.batch)
    return tuple(d for d in graph.dim_order if d in used), common


def lower_matrix_dl(graph: Graph, group: Group, form: MatrixForm) -> Kernel:
    """The kernel of a ``matrix_scan_dl``: one program per head and chunk sums the pairs of
    steps (s, t) that cross each step of the chunk (print_matrix ``dl_body``), from the chunk
    states of the scan's state and of its cotangent, which two other groups' states kernels
    store (``share_matrix_states`` binds them: ``hin_own`` and ``hin_cot`` until then)."""
    m = form
    size_dims, common = _sizes_and_common(graph, group, m)
    tensors = [_arg_tensor(n) for n in _args([m.log_decay, *m.u, *m.k, *m.c, *m.dy])]
    tensors += [Tensor(name, ("_C",) + m.heads + (m.n, m.p), "in", source=name) for name in ("hin_own", "hin_cot")]
    for n, outs in m.stores:
        tensors += [Tensor(f"o_{name}", n.dims, "out", source=name) for name in outs]
    head = (
        f"layer: {graph.name}   kernel: {group.name} (matrix form: the decay's gradient)",
        f"heads: {list(m.heads)}   rows: a chunk of steps per program, state {m.n} x {m.p}   time: {m.time}",
        *[f"note: {x}" for x in group.notes],
    )
    return Kernel(
        name=f"{graph.name}_{group.name}_matrix_dl",
        tensors=tuple(tensors),
        size_dims=size_dims + ("_C",),
        grid_dims=m.heads + ("_C",),
        header=head,
        role="dl",
        matrix=m,
        **common,
    )


def share_matrix_states(plans: list, exact, sides: bool = False) -> list:
    """``plans`` with each matrix scan whose state another one's states kernel stores
    (``state_key``) run as its outputs kernel alone, reading those chunk states: a backward's dq
    and dk scans (measured on an H100: bench/NOTES.md). Of scans with one state, the one storing
    it is the one with a final state, else one that needs float32-accurate products
    (``exact(group)``), else the first; a scan with a final state of its own keeps its states
    kernel. Where every plan is a matrix scan's (none reads another's results), the storing one
    moves before those reading its states; else only later plans read earlier ones'.

    ``sides``: a decay gradient takes two of its four sums per step from the outputs kernels
    of dq and dk (``with_sides``), where the backward has them."""
    dls = [p for p in plans if p.matrix and p.kernels[0].role == "dl"]
    plans = [p for p in plans if p not in dls]
    matrix = [p for p in plans if p.matrix]
    keys = {id(p): state_key(p.kernels[0].matrix.scan) for p in matrix}
    primary: dict[tuple, object] = {}

    def rank(x) -> tuple:
        return x.kernels[0].matrix.final is not None, bool(exact(x.group))

    for p in matrix:  # the keeper of each state: one with a final state, else exact, else the first
        q = primary.get(keys[id(p)])
        if q is None or rank(p) > rank(q):
            primary[keys[id(p)]] = p
    movable = len(matrix) == len(plans)
    out, done = [], set()
    for p in plans:
        if not p.matrix:
            out.append(p)
            continue
        if id(p) in done:  # a keeper moved before a scan reading its states
            continue
        keeper = primary[keys[id(p)]]
        m = p.kernels[0].matrix
        reads = keeper is not p and m.final is None and len(p.kernels) == 2
        # never float32-accurate outputs from states stored with 16-bit products
        reads = reads and (bool(exact(keeper.group)) or not exact(p.group))
        if reads and id(keeper) not in done and not movable:
            reads = False  # its keeper runs later, and plans may not move
        if not reads:
            out.append(p)
            done.add(id(p))
            continue
        if id(keeper) not in done:
            out.append(keeper)
            done.add(id(keeper))
        states, full = keeper.kernels[0], p.kernels[-1]
        hin = next(t for t in states.tensors if t.name.startswith("hin_"))
        # its chunk states, dims in their stored order (strides go by position, offsets by name)
        tensors = tuple(Tensor(hin.name, hin.dims, "in", source=hin.source) if t.name.startswith("hin_") else t
                        for t in full.tensors)
        header = full.header + (f"note: chunk states from {states.name} (the same state: v and k trade places)",)
        out.append(replace(p, kernels=(replace(full, tensors=tensors, header=header),), shares=keeper.group.name))
        done.add(id(p))
    for p in dls:  # after every states kernel: the scan's state's and its cotangent's
        k = p.kernels[0]
        keepers = [primary.get(key) for key in dl_state_keys(k.matrix.scan)]
        if any(x is None for x in keepers):
            raise LoweringError(f"{k.name}: no matrix scan of the backward holds the "
                                f"{'state' if keepers[0] is None else 'state cotangent'} its decay gradient pairs")
        hins = [next(t for t in x.kernels[0].tensors if t.name.startswith("hin_")) for x in keepers]
        bound = dict(zip(("hin_own", "hin_cot"), hins))
        tensors = tuple(Tensor(bound[t.name].name, bound[t.name].dims, "in", source=bound[t.name].source)
                        if t.name in bound else t for t in k.tensors)
        header = k.header + (f"note: chunk states from {keepers[0].kernels[0].name} (the state) and "
                             f"{keepers[1].kernels[0].name} (its cotangent)",)
        k = replace(k, tensors=tensors, header=header)
        if sides:
            out, k = with_sides(out, k)
        out.append(replace(p, kernels=(k,), shares=keepers[0].group.name))
    return out


def with_sides(plans: list, dl: Kernel) -> tuple[list, Kernel]:
    """``plans`` and decay gradient ``dl`` with two of its sums per step moved to the outputs
    kernels of dq and dk, where ``plans`` hold both (else as they are). dq's kernel (the scan's
    own state, read out along P by dy, its result along N) forms the entry state's part of dq
    per row, ``e[t, n]``; ``sum_n e[t, n] q[t, n]`` (decayed) is dy[t] . (the entry state's part
    of y[t]), which the decay gradient otherwise forms from the chunk state by a [T, N] x [N, P]
    product of its own. Likewise dk's kernel (the cotangent state, read out by v) and k: v[s] .
    (the exit cotangent's part of dv[s]). Each stores its sums per head and step, one slot per
    block of N (``_P<N>``); the decay gradient adds the slots (``_SO``, ``_SC``: their counts)."""
    m = dl.matrix
    own, cot = dl_state_keys(m.scan)

    def find(key, readout):
        for i, p in enumerate(plans):
            full = p.kernels[-1] if p.matrix else None
            if full is None or full.role != "full" or state_key(full.matrix.scan) != key:
                continue
            f = full.matrix
            if f.p == m.n and f.n == m.p and f.heads == m.heads and set(f.c) == set(readout) and not f.side:
                return i
        return None

    at = (find(own, m.dy), find(cot, m.u))
    if None in at:
        return plans, dl
    plans = list(plans)
    names = []
    for i, factor in zip(at, (m.c, m.k)):
        p = plans[i]
        full = p.kernels[-1]
        f = full.matrix
        name = f"side_{p.group.name}"
        t = Tensor(name, (f"_P{f.p}",) + f.heads + (f.time,), "out", source=name)
        have = {x.source for x in full.tensors}
        args = tuple(_arg_tensor(n) for n in _args(list(factor)) if n.attr("name") not in have)  # the factor's own
        header = full.header + (f"note: stores sum over {f.p} of (its entry state's part) x (a decay gradient's factor), per head and step",)
        full = replace(full, tensors=full.tensors + args + (t,), matrix=replace(f, side=tuple(factor)), header=header)
        plans[i] = replace(p, kernels=p.kernels[:-1] + (full,))
        names.append(name)
    ins = tuple(Tensor(name, (d,) + m.heads + (m.time,), "in", source=name) for name, d in zip(names, ("_SO", "_SC")))
    header = dl.header + (f"note: sums per step from {plans[at[0]].kernels[-1].name} and {plans[at[1]].kernels[-1].name}",)
    return plans, replace(dl, tensors=dl.tensors + ins, size_dims=dl.size_dims + ("_SO", "_SC"), header=header)


# --- checks at launch, on the call's arguments (a tensor: its pointer, then a stride per dim) ---


def tiles_aligned(kernel: Kernel, call: list) -> bool:
    """Whether every tile of the matrix form starts at a multiple of 8 elements: each tensor with
    an N or P dim has strides along the other dims (heads, time, chunks) that are multiples of 8
    (the pointers themselves Triton finds 16-byte aligned or not)."""
    m = kernel.matrix
    return all(s % 8 == 0 for t, strides in kernel.call_strides(call) if m.n in t.dims or m.p in t.dims
               for d, s in strides if d not in (m.n, m.p))


def check_tile_offsets(name: str, kernel: Kernel, call: list, sched: Any) -> None:
    """The matrix form addresses a tile as a 64-bit base plus 32-bit offsets within the tile:
    each tensor's largest offset in a tile must stay below 2^31 elements."""
    m = kernel.matrix
    blocks = dict(sched.blocks)
    blocks[m.time] = sched.block_t
    for t, strides in kernel.call_strides(call):
        span = sum((blocks[d] - 1) * abs(s) for d, s in strides if d in blocks)
        if span >= 2**31:
            worst = max(((d, s) for d, s in strides if d in blocks), key=lambda ds: abs(ds[1]))
            raise ArgumentError(
                f"{name}: `{t.source}` has stride {worst[1]} along {worst[0]}; a tile of the matrix form spans "
                f"{span} elements of it, and tiles must span fewer than 2^31 (make it contiguous)"
            )
