"""Lowering a fused group (see ``ssmc.passes.fuse``) to the kernel IR.

Decides which dims index programs (grid), which is blocked across programs (tiled), which are
held whole (reduced inside the kernel), and in which phase each value is computed: before the
time loop (no time dim), in it, or after it (depends on a final state)."""

from __future__ import annotations

from ssmc.backends.triton.kernel_ir import (
    Carry,
    Compute,
    Kernel,
    Load,
    Reduce,
    ScanStep,
    Stmt,
    Store,
    Tensor,
)
from ssmc.backends.triton.lower_conv import lower_conv, plain_reads
from ssmc.errors import LoweringError
from ssmc.ir.node import Graph, Group, Node, topo_order
from ssmc.ir.printer import format_node, node_names
from ssmc.ops.conv import CONV_FAMILY
from ssmc.ops.registry import ELEMENTWISE, get
from ssmc.passes.fuse import recurrence_key


def sequence_axis(graph: Graph) -> str | None:
    """The time axis of a kernel without a scan: the layer's scan axis, else a dim named L."""
    return graph.scan_axis() or ("L" if "L" in graph.dim_order else None)


CHUNK = "_C"  # the chunk index of the chunked strategy: a grid dim of its kernels
CKPT = "_K"  # a backward's checkpoints of its recomputed forward scan: one per span of steps


def chunkable(graph: Graph, group: Group) -> str | None:
    """Why ``group`` cannot use the chunked strategy, or None if it can. A group without a
    recurrence splits its sequence with nothing to pass between chunks (a conv reads the steps
    before a chunk from memory)."""
    scans = [n for n in group.nodes if n.op in ("scan", "scan_final")]
    if not scans:
        axis = sequence_axis(graph)
        return None if any(axis in n.dims for n in group.nodes) else "no sequence axis to split"
    outputs = {v for _, v in graph.outputs}
    for n in group.nodes:
        if n.op == "scan_final" and n not in outputs:
            return "a value computed from the final state (needs the last chunk's state in-kernel)"
    return None


def lower_group(
    graph: Graph,
    group: Group,
    strategy: str,
    unroll: int = 4,
    role: str = "full",
    layout: tuple | None = None,
    held: dict[str, int] | None = None,
    pairs: tuple[str, ...] = (),
) -> Kernel:
    """Lower ``group``. ``strategy`` "chunked" lowers the sequential kernel with a chunk grid
    dim; with ``role="states"``, only what the recurrence needs, storing each chunk's final
    state (from zero, or from h0 for the first chunk) and the product of its decays.
    ``layout`` = (grid, tiled, full dims) of another kernel to follow (``layout_of``).
    ``held``: the sizes of the dims held whole, to hold them as registers (sequential only);
    ``pairs``: arguments whose rows are loaded two elements at a time (see ``Kernel``)."""
    chunked = strategy == "chunked"
    if chunked:
        why = chunkable(graph, group)
        if why:
            raise LoweringError(f"{graph.name}: kernel {group.name} cannot be chunked: {why}")
        strategy = "sequential"
    whole = group  # the dims are classified on the whole group, so both passes tile alike
    if role == "states":
        rec = next(n for n in group.nodes if n.op in ("scan", "scan_final"))
        needed = set(topo_order(list(rec.inputs)))
        keep = tuple(n for n in group.nodes if n in needed or n is rec)
        group = Group(group.name, keep, tuple(n for n in group.loads if n in needed), (), group.notes)
    names = node_names(graph)
    layer = graph.name
    outputs: dict[Node, list[str]] = {}
    for k, v in graph.outputs:
        outputs.setdefault(v, []).append(k)  # after CSE one value may be several outputs
    read_elsewhere = {n for g in (graph.groups or ()) if g is not group for n in g.loads}
    scans = [n for n in group.nodes if n.op in ("scan", "scan_final")]
    keys = {recurrence_key(n) for n in scans}
    if len(keys) > 1:
        raise LoweringError(f"{layer}: kernel {group.name} holds {len(keys)} recurrences; one expected")
    time_dim = scans[0].attr("axis") if scans else sequence_axis(graph)
    reverse = bool(scans[0].attr("reverse")) if scans else False

    all_dims: set[str] = set()
    for n in list(whole.nodes) + list(whole.loads):
        all_dims.update(n.dims)
        if n.op == "scan_final":
            all_dims.update(n.attr("full_dims"))
    if time_dim not in all_dims:
        time_dim = None
    size_dims = tuple(d for d in graph.dim_order if d in all_dims)
    taps = {n.attr("taps") for n in whole.nodes if n.op in CONV_FAMILY}  # a conv sums over them: held whole
    full = set(taps)
    full |= complex_parts(whole.nodes)  # held whole (as registers): each value's two parts in one thread
    for n in whole.nodes:
        if n.op in ("sum", "mean"):
            d = n.attr("dim")
            if d == time_dim:
                raise LoweringError(
                    f"{layer}: cannot lower `{n.op}` over the sequence axis {d!r} ({names[n]}): "
                    "reductions over time are not supported by the Triton backend yet"
                )
            full.add(d)
    if layout is not None:  # the classification of another kernel (the forward's): keep it
        if full - set(layout[2]) - taps:  # (a conv's taps are local to this kernel)
            raise LoweringError(f"{layer}: kernel {group.name} reduces {sorted(full)} inside; the layout holds {list(layout[2])}")
        full = {d for d in layout[2] if d in all_dims} | (taps & all_dims)
    rest = [d for d in size_dims if d != time_dim and d not in full]
    tiled = rest[-1] if rest else None
    if layout is not None and layout[1] in rest:
        tiled = layout[1]
    grid = tuple(d for d in rest if d != tiled)
    if chunked:
        grid = (CHUNK,) + grid
        size_dims = (CHUNK,) + size_dims
    full_dims = tuple(d for d in size_dims if d in full)
    if held:
        if strategy != "sequential" or set(held) != set(full_dims):
            raise LoweringError(
                f"{layer}: registers can hold the dims held whole {list(full_dims)} of the sequential "
                f"strategy only (asked: {sorted(held)} with strategy {strategy})"
            )
        held_dims = tuple((d, int(held[d])) for d in full_dims)
    else:
        held_dims = ()

    # phases
    phase: dict[Node, str] = {}
    for n in group.nodes:
        if n.op == "scan_final" or any(phase.get(i) == "post" for i in n.inputs):
            p = "post"
        elif time_dim in n.dims or n.op == "scan":
            p = "loop"
        else:
            p = "pre"
        if p == "post" and time_dim in n.dims:
            raise LoweringError(
                f"{layer}: {names[n]} = {n.op} uses a final state and the sequence; that needs "
                "a second pass over time, which the Triton backend does not do"
            )
        phase[n] = p
    for n in group.loads:
        phase[n] = "loop" if time_dim in n.dims else "pre"

    tensors: list[Tensor] = []
    var: dict[Node, str] = {}
    stmts: dict[str, list[Stmt]] = {"pre": [], "loop": [], "post": []}
    carries: list[Carry] = []
    carry_of: dict[tuple, str] = {}

    def comment(n: Node) -> str:
        return format_node(n, names)

    def value(n: Node) -> str:
        if n.op == "const":
            return f"{float(n.attr('value'))!r}"
        return var[n]

    # values conv ops read at other steps (from memory): loaded plainly only if read so too
    _, windowed = plain_reads(group.nodes)
    tensor_of: dict[Node, str] = {}

    bind_loads(group, names, phase, windowed, tensors, tensor_of, var, stmts)

    for n in group.nodes:
        if n.op == "const":
            continue
        v = f"v{names[n][1:]}"
        var[n] = v
        plain = lower_plain(layer, names, n, v, phase[n], value, windowed, tensors, tensor_of)
        if plain is not None:
            stmts[phase[n]] += plain
        elif n.op in CONV_FAMILY:
            stmts[phase[n]] += lower_conv(n, names, value, tensor_of, size_dims, layer, group.name)
        elif n.op in ("sum", "mean"):
            stmts[phase[n]].append(Reduce(v, value(n.inputs[0]), n.attr("dim"), n.op, comment(n)))
        elif n.op in ("scan", "scan_final"):
            key = recurrence_key(n)
            state_dims = tuple(d for d in (n.dims if n.op == "scan" else n.attr("full_dims")) if d != time_dim)
            if key not in carry_of:
                carry = f"h{names[n][1:]}"
                carry_of[key] = carry
                init = value(n.inputs[2]) if len(n.inputs) == 3 else None
                carries.append(Carry(carry, state_dims, init))
                target = v if n.op == "scan" else None
                product = f"p{names[n][1:]}" if role == "states" else None
                part = n.attr("complex")
                log = _log_decay(n.inputs[0], phase, time_dim) if role == "states" and not part else None
                if role == "states":
                    target = None
                stmts["loop"].append(
                    ScanStep(target, value(n.inputs[0]), value(n.inputs[1]), carry, comment(n), None if log else product,
                             complex=part)
                )
                if log:  # the decay is exp2(u * c), c loop-invariant: its product is exp2(c * sum u)
                    u, c = log
                    acc = f"s{names[n][1:]}"
                    carries.append(Carry(acc, tuple(d for d in u.dims if d != time_dim), None))
                    stmts["loop"].append(ScanStep(None, "1.0", value(u), acc, f"sum of {names[u]} over the chunk"))
                    stmts["post"].append(Compute(product, f"tl.exp2({acc} * {value(c)})", "the chunk's decay product", state_dims))
                if role == "states":
                    for name, var_ in (("st_S", carry), ("st_P", product)):
                        t = Tensor(name, (CHUNK,) + state_dims, "out", source=name)
                        tensors.append(t)
                        stmts["post"].append(Store(name, var_, t.dims, f"chunk {'state' if name == 'st_S' else 'decay product'}"))
                if chunked and role == "full":
                    hin = Tensor("hin", (CHUNK,) + state_dims, "in", source="hin")
                    tensors.append(hin)
            else:
                if n.op == "scan":
                    raise LoweringError(f"{layer}: two scans with one recurrence in {group.name}")
            if n.op == "scan_final" and role == "full":
                stmts["post"].append(Compute(v, carry_of[key], comment(n), tuple(n.attr("full_dims"))))
        else:
            raise LoweringError(f"{layer}: no Triton lowering for op `{n.op}` ({names[n]})")

    for n in group.stores:
        if role == "states" and n.op == "scan_final":
            continue  # the states pass stores chunk states only
        targets = [Tensor(f"o_{name}", n.dims, "out", source=name) for name in outputs.get(n, [])]
        if n in read_elsewhere or not targets:
            # float32, for the kernels that read it: not the output's (maybe bf16) rounding
            targets.append(Tensor(f"t{names[n][1:]}", n.dims, "out", source=names[n]))
        # a chunked kernel's values outside the time loop are the same in every chunk: the first stores them
        first = (CHUNK,) if chunked and phase[n] != "loop" and n.op != "scan_final" else ()
        # a final state: the last chunk's (the states pass then skips the last chunk)
        last = (CHUNK,) if chunked and n.op == "scan_final" else ()
        for t in targets:
            tensors.append(t)
            stmts[phase[n]].append(Store(t.name, value(n), n.dims, f"{t.source} <- {names[n]}", only_first=first, only_last=last))

    # a scan_final-only recurrence still needs its scan target to be the scan's loop step
    header = (
        f"layer: {layer}   kernel: {group.name}{'' if role == 'full' else ' (chunk states)'}"
        f"   strategy: {'chunked' if chunked else strategy}"
        + (f" (unroll {unroll})" if strategy == "sequential" else ""),
        f"grid: {list(grid)} x blocks of {tiled or '-'}   time: {time_dim or '-'}"
        f"{' (reverse)' if reverse else ''}   held whole: {list(full_dims)}"
        + (f" as registers ({', '.join(f'{d}={n}' for d, n in held_dims)})" if held_dims else ""),
        *[f"note: {x}" for x in group.notes],
    )
    suffix = {"full": "", "states": "_states"}[role] if chunked else ""
    return Kernel(
        name=f"{layer}_{group.name}{'_chunked' if chunked else ''}{suffix}",
        layer=layer,
        strategy=strategy,
        tensors=tuple(tensors),
        size_dims=size_dims,
        time_dim=time_dim,
        reverse=reverse,
        grid_dims=grid,
        tiled_dim=tiled,
        full_dims=full_dims,
        carries=tuple(carries),
        pre=tuple(stmts["pre"]),
        loop=tuple(stmts["loop"]),
        post=tuple(stmts["post"]),
        header=header,
        chunked=chunked,
        batch_dim=next((d for d in grid if d != CHUNK), None) if time_dim else None,
        role=role,
        unroll=unroll if strategy == "sequential" else 1,
        held=held_dims,
        pairs=tuple(pairs) if held_dims else (),
        prefetch=bool(held_dims) and unroll > 1,
        taps=tuple(d for d in full_dims if d in taps),
    )


def bind_loads(group: Group, names: dict, phase: dict, windowed: set, tensors: list, tensor_of: dict,
               var: dict, stmts: dict) -> None:
    """The tensors of the values ``group`` reads from another kernel (``group.loads``), and
    their loads, except those only conv ops read (from memory, at other steps)."""
    for n in group.loads:
        t = Tensor(f"t{names[n][1:]}", n.dims, "in", source=names[n])
        tensors.append(t)
        tensor_of[n] = t.name
        var[n] = f"v{names[n][1:]}"
        if n not in windowed:
            stmts[phase[n]].append(Load(var[n], t.name, n.dims, f"{names[n]} (computed by another kernel)"))


def lower_plain(layer: str, names: dict, n: Node, v: str, where: str, value, windowed: set, tensors: list,
                tensor_of: dict) -> list[Stmt] | None:
    """The statements of an argument (its tensor, and its load unless only conv ops read it),
    an elementwise op or a stack / part, the same in every lowering; None for any other op."""
    comment = format_node(n, names)
    if n.op == "arg":
        t = Tensor(f"a_{n.attr('name')}", n.dims, "in", bool(n.attr("optional")), n.attr("name"))
        tensors.append(t)
        tensor_of[n] = t.name
        return [] if n in windowed else [Load(v, t.name, n.dims, comment)]
    if get(n.op).group == ELEMENTWISE:
        return [Compute(v, elementwise_expr(layer, n, [value(i) for i in n.inputs], where == "pre"), comment, n.dims)]
    if n.op in ("stack", "part"):
        return [Compute(v, parts_expr(n, value), comment, n.dims)]
    return None


def parts_expr(n: Node, value) -> str:
    """The expression of ``stack`` / ``part`` (complex values' parts along a dim held as
    registers): ``_pick_R(re, im)`` / ``v7[R=1]`` (see ``Compute``)."""
    d = n.attr("dim")
    if n.op == "stack":
        return f"_pick_{d}({value(n.inputs[0])}, {value(n.inputs[1])})"
    return f"{value(n.inputs[0])}[{d}={n.attr('index')}]"


def complex_parts(nodes) -> set[str]:
    """The dims of complex values' parts among ``nodes`` (a complex scan's, stack's, part's)."""
    return {n.attr("complex") or n.attr("dim") for n in nodes
            if n.op in ("stack", "part") or (n.op in ("scan", "scan_final") and n.attr("complex"))}


def _log_decay(a: Node, phase: dict[Node, str], time_dim: str | None) -> tuple[Node, Node] | None:
    """(u, c) if the decay ``a`` is exp2(u * c) with c loop-invariant and u per step: the product
    of the decays over a chunk is then exp2(c * sum of u), a sum of u (which lacks c's dims:
    for Mamba, delta [B, L, D] against A [D, N]) instead of a product per state element."""
    if a.op != "exp2" or a.inputs[0].op != "mul":
        return None
    x, y = a.inputs[0].inputs
    for u, c in ((x, y), (y, x)):
        if u.op != "const" and c.op != "const" and phase.get(u) == "loop" and phase.get(c) == "pre" and time_dim not in c.dims:
            return u, c
    return None


def layout_of(kernel: Kernel) -> tuple:
    """(grid dims, tiled dim, dims held whole): how ``kernel`` splits its dims across programs."""
    return (kernel.grid_dims, kernel.tiled_dim, kernel.full_dims)


def elementwise_expr(layer: str, n: Node, args: list[str], loop_invariant: bool) -> str:
    """The Triton expression of elementwise node ``n`` over operand expressions ``args``: the
    op's accurate form for values computed once before the time loop, else its template."""
    op = get(n.op)
    if loop_invariant and "loop_invariant" in op.extra:
        return op.extra["loop_invariant"].format(*args)
    if op.triton is not None:
        return op.triton.format(*args)
    if "lower" in op.extra:
        return op.extra["lower"](args, n.attr_dict)
    raise LoweringError(f"{layer}: no Triton lowering for op `{n.op}`")
