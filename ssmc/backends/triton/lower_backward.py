"""Lowering the main group of a backward (``fuse_backward``) with the "bidir" strategy.

One program per (grid dims, block of the tiled dim) walks the sequence in chunks of UNROLL steps
(the checkpoint interval), in the direction of the carried (cotangent) scan, whose state it
carries from chunk to chunk. In each chunk, phase A runs the forward scan over the chunk's steps
from a checkpoint (its state at the chunk's start, from the chunk-states pass and the
chunk-combine kernel), keeping each step's state in a register of its own (the chunk is
unrolled in the source); phase B then runs every other statement over the steps the other way,
reading those states (``prev`` of the forward scan is the register one step back) and
recomputing the rest (elementwise work is cheaper than holding it). Sums over time accumulate in
registers; sums over dims split among programs are added into memory (``tl.atomic_add``), so
every dim the forward split among programs keeps its place: the backward's layout is the
forward's. (A version scanning time tiles with tl.associative_scan ran 2.5x slower on an H100;
bench/NOTES.md.)
"""

from __future__ import annotations

from dataclasses import replace

from ssmc.backends.triton.kernel_ir import (
    Carry,
    Compute,
    Kernel,
    Prev,
    Reduce,
    ScanStep,
    Stmt,
    Store,
    Tensor,
    TimeSum,
)
from ssmc.backends.triton.lower import CHUNK, CKPT, bind_loads, lower_plain
from ssmc.backends.triton.lower_conv import lower_conv, plain_reads
from ssmc.errors import LoweringError
from ssmc.ir.node import Graph, Group, Node
from ssmc.ir.printer import format_node, node_names
from ssmc.ops.conv import CONV_FAMILY


def recompute_group(group: Group) -> Group | None:
    """The forward (checkpointed) scan of a backward's main group with what it needs, as a group
    of its own (for the chunk-states pass), or None when the backward needs no forward state."""
    scans = [n for n in group.nodes if n.op == "scan"]
    fwd = _checkpointed(scans, tuple(n for n in group.nodes if n.op == "scan_final"))
    if fwd is None:
        return None
    from ssmc.ir.node import topo_order

    nodes = tuple(topo_order([fwd]))
    return Group(group.name + "_ckpt", nodes, (), (), ("the forward scan's chunk states, for checkpoints",))


def _checkpointed(scans: list[Node], finals: tuple[Node, ...] = ()) -> Node | None:
    """The scan restarted from checkpoints (the other is carried across tiles): the one the
    other reads; else the one without a final state in the kernel; else the forward one.
    With a single scan, none."""
    if len(scans) <= 1:
        return None
    if len(scans) > 2:
        raise LoweringError(f"a backward kernel holds {len(scans)} scans; two expected")
    a, b = scans
    if a.attr("axis") != b.attr("axis") or bool(a.attr("reverse")) == bool(b.attr("reverse")):
        raise LoweringError("a backward kernel's two scans must run along one axis in opposite directions")
    # the carried scan is the cotangents' (it reads no value of the other's future): the one
    # whose operands depend on the other, else the second made
    from ssmc.ir.node import topo_order

    if a in set(topo_order([b])):
        return a
    if b in set(topo_order([a])):
        return b
    ends = {f.inputs for f in finals}
    if a.inputs in ends or b.inputs in ends:
        return b if a.inputs in ends else a
    return a if not a.attr("reverse") else b


def carried_group(group: Group) -> Group | None:
    """The carried (cotangent) scan of a backward's main group with what it needs, as a group of
    its own (for the chunk-states pass of a sequence split among programs), or None when the
    group has no scan, or when the carried scan reads the recomputed forward one (its chunk
    states would need the forward's states: not split), or when the carried scan runs forward
    in time (the checkpoints' spans are aligned at step 0, the chunks at the end: not split)."""
    scans = [n for n in group.nodes if n.op == "scan"]
    if not scans:
        return None
    from ssmc.ir.node import topo_order

    fwd = _checkpointed(scans, tuple(n for n in group.nodes if n.op == "scan_final"))
    carried = next(s for s in scans if s is not fwd)
    nodes = tuple(topo_order([carried]))
    if fwd is not None and (fwd in set(nodes) or fwd.attr("reverse")):
        return None
    return Group(group.name + "_carried", nodes, (), (),
                 ("the carried scan's chunk states, for each chunk's entry state",))


def lower_bidir(graph: Graph, group: Group, layout: tuple, unroll: int = 2, hoist_loads: bool = False,
                prefetch: bool = False, chunked: bool = False, held: dict[str, int] | None = None,
                time_tile: bool = False) -> Kernel:
    """Chunks of ``unroll`` steps (the checkpoint interval), one step at a time, the chunk's
    forward states in registers. ``hoist_loads``: phase B issues every step's loads first.
    ``prefetch``: each chunk's loads are issued during the chunk before it (in the loop's order).
    ``chunked``: the sequence split among programs too (grid dim ``_C``, ``chunk_len`` steps
    each, counted in the carried scan's direction): each starts its carried scan from the state
    the chunk-states pass and the combine left in ``hin``; its sums over time are its chunk's
    terms, added across programs (``FuseBackward`` counts the time axis among the split dims, so
    nothing else reads them in this kernel). ``held``: the sizes of the dims held whole, to hold
    them as registers (one variable per index, as the forward's register-held kernels).
    ``time_tile``: a group with no scan, no ``prev`` and no conv (elementwise work and sums
    only) takes its steps a tile of BLOCK_T at a time, time one axis of every value
    (``Kernel.time_tile``); elsewhere the steps are unrolled one after another as before."""
    names = node_names(graph)
    layer = graph.name
    grid_l, tiled_l, full_l = layout
    scans = [n for n in group.nodes if n.op == "scan"]
    finals = [n for n in group.nodes if n.op == "scan_final"]
    fwd = _checkpointed(scans, tuple(finals))
    carried = next((s for s in scans if s is not fwd), None)
    for f in finals:
        if carried is None or f.inputs != carried.inputs:
            raise LoweringError(f"{layer}: the final state of a recomputed scan in a backward kernel")
    time_dim = graph.scan_axis() or ("L" if "L" in graph.dim_order else None)
    reverse = bool(carried.attr("reverse")) if carried is not None else True
    align_end = fwd is not None and bool(fwd.attr("reverse"))

    all_dims: set[str] = set()
    for n in list(group.nodes) + list(group.loads):
        all_dims.update(n.dims)
    if time_dim not in all_dims:  # an epilogue over values without the sequence axis
        time_dim = None
    size_dims = tuple(d for d in graph.dim_order if d in all_dims)
    taps = {n.attr("taps") for n in group.nodes if n.op in CONV_FAMILY}  # held whole: a conv sums over them
    full = tuple(d for d in size_dims if (d in full_l or d in taps) and d in all_dims)
    tiled = tiled_l if tiled_l in all_dims else None
    grid = tuple(d for d in size_dims if d not in full and d != tiled and d != time_dim)
    split = set(grid) | ({tiled} if tiled else set())
    if chunked:
        if carried is None and scans:
            raise LoweringError(f"{layer}: kernel {group.name}: only a backward's carried scan splits the sequence")
        if fwd is not None and (align_end or not reverse):
            raise LoweringError(f"{layer}: kernel {group.name}: a sequence split with a recomputed forward scan "
                                "needs that scan forward in time and the carried one reverse")
        grid = (CHUNK,) + grid
        size_dims = (CHUNK,) + size_dims

    def kind(n: Node) -> str:
        if n.op == "conv_dw":  # the conv weights' gradient: a sum over time
            return "time_sum"
        if n.op != "sum":
            return n.op
        d = n.attr("dim")
        return "time_sum" if d == time_dim else ("partial" if d in split else "sum")

    phase: dict[Node, str] = {n: ("loop" if time_dim in n.dims else "pre") for n in group.loads}
    for n in group.nodes:
        if n.op == "scan_final" or kind(n) == "time_sum" or any(phase.get(i) == "post" for i in n.inputs):
            p = "post"
        elif (time_dim in n.dims) or n.op in ("scan", "prev"):
            p = "loop"
        else:
            p = "pre"
        if p == "post" and time_dim in n.dims:
            raise LoweringError(f"{layer}: {names[n]} uses a value summed over time along the sequence")
        phase[n] = p

    # the dims a partial sum's value already varies over (its chain's origin)
    origin: dict[Node, frozenset] = {}
    for n in group.nodes:
        k = kind(n)
        origin[n] = origin[n.inputs[0]] if k == "partial" else frozenset(n.inputs[0].dims if k == "time_sum" else n.dims)

    tensors: list[Tensor] = []
    var: dict[Node, str] = {}
    stmts: dict[str, list[Stmt]] = {"pre": [], "loop": [], "post": []}
    carries: list[Carry] = []
    scan_carry: dict[Node, str] = {}

    def value(n: Node) -> str:
        if n.op == "const":
            return f"{float(n.attr('value'))!r}"
        return var[n]

    def comment(n: Node) -> str:
        return format_node(n, names)

    _, windowed = plain_reads(group.nodes)  # read by conv ops only, from memory
    tensor_of: dict[Node, str] = {}
    bind_loads(group, names, phase, windowed, tensors, tensor_of, var, stmts)  # sums across programs
    for n in group.nodes:
        if n.op == "const":
            continue
        v = f"v{names[n][1:]}"
        var[n] = v
        k = kind(n)
        plain = lower_plain(layer, names, n, v, phase[n], value, windowed, tensors, tensor_of)
        if plain is not None:
            stmts[phase[n]] += plain
        elif n.op in CONV_FAMILY:
            where = "loop" if n.op == "conv_dw" else phase[n]
            stmts[where] += lower_conv(n, names, value, tensor_of, size_dims, layer, group.name, time_sums=True)
        elif k == "time_sum":
            stmts["loop"].append(TimeSum(v, value(n.inputs[0]), n.dims, comment(n)))
        elif k == "partial":
            d = n.attr("dim")
            if d == tiled:
                stmts[phase[n]].append(Reduce(v, value(n.inputs[0]), d, "partial", comment(n)))
            else:  # over a grid dim: this program's term; the store adds the terms
                stmts[phase[n]].append(Compute(v, value(n.inputs[0]), comment(n) + "  (this program's term)", n.dims))
        elif n.op == "sum":
            stmts[phase[n]].append(Reduce(v, value(n.inputs[0]), n.attr("dim"), "sum", comment(n)))
        elif n.op == "scan":
            state_dims = tuple(d for d in n.dims if d != time_dim)
            carry = f"h{names[n][1:]}"
            scan_carry[n] = carry
            init = value(n.inputs[2]) if len(n.inputs) == 3 else None
            carries.append(Carry(carry, state_dims, init))
            if n is fwd:  # its checkpoints (_K: one per span) and the span's chunk entry states
                tensors.append(Tensor("hin", (CKPT,) + state_dims, "in", source="hin"))
                chunk = (CHUNK,) if chunked else ()  # split: a scratch buffer per chunk
                tensors.append(Tensor("scr", chunk + ("_Q",) + state_dims, "in", source="scr"))
            elif chunked:  # each chunk's entry state (chunk-states pass and combine)
                entry = "hin_carried" if fwd is not None else "hin"
                tensors.append(Tensor(entry, (CHUNK,) + state_dims, "in", source=entry))
            stmts["loop"].append(
                ScanStep(v, value(n.inputs[0]), value(n.inputs[1]), carry, comment(n),
                         reverse=bool(n.attr("reverse")), checkpointed=n is fwd, complex=n.attr("complex"))
            )
        elif n.op == "prev":
            src = n.inputs[0]
            if src not in scan_carry:
                raise LoweringError(f"{layer}: `prev` of a value that is not a scan in this kernel ({names[n]})")
            stmts["loop"].append(Prev(v, var[src], scan_carry[src], comment(n)))
        elif n.op == "scan_final":
            stmts["post"].append(Compute(v, scan_carry[carried], comment(n), n.dims))
        else:
            raise LoweringError(f"{layer}: no Triton lowering for op `{n.op}` ({names[n]}) in a backward kernel")

    outputs: dict[Node, list[str]] = {}
    for name, node in graph.outputs:
        outputs.setdefault(node, []).append(name)
    read_elsewhere = {n for g in (graph.groups or ()) if g is not group for n in g.loads}
    for n in group.stores:
        # a sum across programs; with the sequence split, a sum over time too (chunks' terms)
        atomic = kind(n) == "partial" or (chunked and kind(n) == "time_sum")
        targets = [Tensor(f"o_{name}", n.dims, "out", source=name, accumulate=atomic) for name in outputs.get(n, [])]
        if n in read_elsewhere or not targets:
            targets.append(Tensor(f"t{names[n][1:]}", n.dims, "out", source=names[n], accumulate=atomic))
        same = tuple(d for d in sorted(split) if d not in n.dims and d not in origin[n]) if atomic else ()
        if atomic and chunked and time_dim not in n.dims and time_dim not in origin[n]:
            same = (CHUNK,) + same  # the same in every chunk: the first adds it
        # split: the carried scan's final state is the last chunk's (in its direction) to store
        # (programs past a shorter sequence's last chunk start from its final state too)
        last = (CHUNK,) if chunked and not atomic and phase[n] == "post" else ()
        for t in targets:
            tensors.append(t)
            stmts[phase[n]].append(Store(t.name, value(n), n.dims, f"{t.source} <- {names[n]}", atomic, same, last))

    time_tile = time_tile and time_dim is not None and not scans and not held and not taps and not any(
        n.op in ("prev", *CONV_FAMILY) for n in group.nodes)
    header = (
        f"layer: {layer}   kernel: {group.name}   strategy: bidir (" + (
            "no scan: time tiles of BLOCK_T steps, time one axis of every value)" if time_tile else
            f"time tiles {'from the end' if reverse else 'from the start'}; forward scan from checkpoints)"),
        f"grid: {list(grid)} x blocks of {tiled or '-'}   time: {time_dim}   held whole: {list(full)}"
        + ("   (_C: chunks of the sequence, each from its entry state)" if chunked else ""),
        *[f"note: {x}" for x in group.notes],
    )
    return Kernel(
        name=f"{layer}_{group.name}_bidir",
        layer=layer,
        strategy="bidir",
        unroll=unroll,
        tensors=tuple(tensors),
        size_dims=size_dims,
        time_dim=time_dim,
        reverse=reverse,
        grid_dims=grid,
        tiled_dim=tiled,
        full_dims=full,
        carries=tuple(carries),
        pre=tuple(stmts["pre"]),
        loop=tuple(stmts["loop"]),
        post=tuple(stmts["post"]),
        header=header,
        batch_dim=next((d for d in grid if d != CHUNK), None) if time_dim else None,
        chunked=chunked,
        align_end=align_end,
        hoist_loads=hoist_loads,
        prefetch=prefetch,
        taps=tuple(d for d in full if d in taps),
        held=tuple((d, n) for d, n in (held or {}).items() if d in full),
        time_tile=time_tile,
    )


def deterministic(kernel: Kernel) -> Kernel:
    """``kernel`` with every sum across programs (an atomic add, whose order varies run to run)
    stored instead into a slot of its own per program: the tensor gains leading dims
    ``_P<dim>``, one per split dim the sum runs over (grid dims, and blocks of the tiled dim),
    which the caller sums away after the kernel in a fixed order (``Tensor.partial``). Outputs
    are then bitwise the same run to run; the cost is the slots' memory and one reduction."""
    split = tuple(kernel.grid_dims) + ((kernel.tiled_dim,) if kernel.tiled_dim else ())
    partial: dict[str, tuple[str, ...]] = {}

    def store(s):
        if not (isinstance(s, Store) and s.atomic):
            return s
        dims = tuple(f"_P{d}" for d in split if d not in s.dims and d not in s.only_first)
        if partial.setdefault(s.tensor, dims) != dims:  # pragma: no cover (one store per tensor)
            raise LoweringError(f"{kernel.name}: tensor {s.tensor} is summed over different programs")
        return replace(s, atomic=False, dims=dims + s.dims)

    pre, loop, post = (tuple(store(s) for s in part) for part in (kernel.pre, kernel.loop, kernel.post))
    if not partial:
        return kernel
    tensors = tuple(
        replace(t, dims=partial[t.name] + t.dims, partial=partial[t.name]) if t.name in partial else t
        for t in kernel.tensors
    )
    return replace(kernel, name=kernel.name + "_det", tensors=tensors, pre=pre, loop=loop, post=post,
                   header=kernel.header + ("deterministic: sums across programs stored per program, summed after",))
