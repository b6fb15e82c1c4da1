"""Reverse-mode differentiation of an IR graph, each op's rule taken from the op registry.

The scan is differentiated here (it is the one op whose rule needs its own state):
for ``h[t] = a[t] * h[t-1] + b[t]`` (from ``h0``) with cotangents ``c`` of every ``h[t]`` and
``gf`` of the final state, let ``R`` be the reverse scan ``R[t] = a[t] * (c[t] + R[t+1])``
started from ``gf``; then the total cotangent of ``h[t]`` is ``G[t] = c[t] + R[t+1]``
(``prev`` of R), and ``db = G``, ``da = G * h[t-1]`` (``prev`` of h, from ``h0``),
``dh0 = R[0]`` (R's final state). Written with ``prev`` rather than ``a[t+1]``, the backward
needs no value at another time step except the two scans' own states, which a kernel holds.
"""

from __future__ import annotations

from typing import Any

from ssmc.dsl.trace import ArgSpec
from ssmc.errors import DefinitionError, LoweringError
from ssmc.ir import dtypes
from ssmc.ir.node import Graph, Node, topo_order
from ssmc.ops.registry import get
from ssmc.passes.base import build, const
from ssmc.passes.fuse import recurrence_key

GRAD = "grad_"  # prefix of cotangent arguments and gradient outputs
RECURRENCES = ("scan", "scan_final", "matrix_scan", "matrix_scan_final")


class Builder:
    """``b.mul(x, y)`` builds a node of op ``mul`` with dims and dtype from its shape rule."""

    def __init__(self, order: tuple[str, ...]) -> None:
        self.order = order

    def c(self, value: float) -> Node:
        return const(value)

    def __getattr__(self, op: str) -> Any:
        def make(*inputs: Node, **attrs: Any) -> Node:
            return build(self.order, op, tuple(inputs), **attrs)

        return make


def _cotangent_arg(name: str, dims: tuple[str, ...]) -> Node:
    attrs = {"name": name, "kind": "input", "dims": dims, "layout": dims, "optional": True, "init": None}
    return Node("arg", (), dims, dtypes.FLOAT, tuple(attrs.items()))


def backward_graph(fwd: Graph) -> Graph:
    """The backward of ``fwd`` (a graph after the rewrite passes: no ``gate`` or
    ``discretize`` left). Raises ``LoweringError`` naming what it cannot differentiate. With
    several recurrences side by side (a bidirectional layer), the sum of ``backward_parts``."""
    parts = [g for _, g in backward_parts(fwd)]
    if len(parts) == 1:
        return parts[0]
    b = Builder(fwd.dim_order)
    sums: dict[str, Node] = {}
    for g in parts:
        for name, v in g.outputs:
            sums[name] = b.add(sums[name], v) if name in sums else v
    arg_order = {a.attr("name"): i for i, a in enumerate(fwd.args)}
    outputs = tuple(sorted(sums.items(), key=lambda kv: arg_order[kv[0][len(GRAD):]]))
    return Graph(name=f"{fwd.name}_backward", dim_order=fwd.dim_order, args=parts[0].args, outputs=outputs,
                 nodes=tuple(topo_order([v for _, v in outputs])), fixed_sizes=fwd.fixed_sizes)


def backward_parts(fwd: Graph) -> list[tuple[tuple | None, Graph]]:
    """The backward of ``fwd`` as one graph per recurrence (one, for a layer with one scan),
    each with its recurrence's key (``fuse.recurrence_key``; None for a layer without one).
    Several recurrences must be side by side (none reads another's states: a bidirectional
    layer's forward and reverse scans). Each path from an output to an argument passes through
    at most one recurrence's rule; part k holds the paths through recurrence k and the paths
    through none that leave the values downstream of k (``dC`` of a readout ``h * C``) (and
    part 0 those that touch no recurrence), so the gradients are the parts' sums, each part
    one backward scan and the forward scan it recomputes, as one recurrence's backward. A part
    may read values of the other recurrences (``dz`` of a gate after both): forward values,
    which the compiled backward reads from a forward pass (``MultiBackward``)."""
    live = topo_order([v for _, v in fwd.outputs])
    keys = list(dict.fromkeys(recurrence_key(n) for n in live if n.op in RECURRENCES))
    if len(keys) <= 1:
        return [(keys[0] if keys else None, _backward(fwd, keys[0] if keys else None, keys))]
    member = {n: recurrence_key(n) for n in live if n.op in RECURRENCES}
    for n, k in member.items():
        upstream = {member[m] for m in topo_order(list(n.inputs)) if m in member}
        if upstream - {k}:
            raise LoweringError(
                f"{fwd.name}: the backward of a layer with {len(keys)} recurrences, one reading another's "
                "states (chained), is not supported yet (chain two layers instead)"
            )
    parts = []
    for k in keys:
        try:
            g = _backward(fwd, k, keys)
            parts.append((k, g.replace(name=f"{g.name}_r{keys.index(k)}")))  # r<k>: through recurrence k
        except LoweringError as e:
            if "nothing to differentiate" not in str(e):
                raise
    return parts


def _backward(fwd: Graph, active: tuple | None, keys: list[tuple]) -> Graph:
    """The backward through recurrence ``active`` (see ``backward_parts``); every path where
    ``active`` is the only recurrence, or there is none."""
    order = fwd.dim_order
    b = Builder(order)
    axis = fwd.scan_axis()
    live = topo_order([v for _, v in fwd.outputs])
    member = {n: recurrence_key(n) for n in live if n.op in RECURRENCES}
    # desc[k]: the values downstream of recurrence k (not its own nodes); owner: the first
    # recurrence a value is downstream of, whose part takes the paths that leave it
    desc: dict[tuple, set[Node]] = {k: set() for k in keys}
    for n in live:
        if n in member:
            continue
        for i in n.inputs:
            for k in keys:
                if member.get(i) == k or i in desc[k]:
                    desc[k].add(n)
    owner = {n: next(k for k in keys if n in desc[k]) for n in live if any(n in d for d in desc.values())}

    def allowed(consumer: Node | None, i: Node) -> bool:
        """Whether the cotangent flowing from ``consumer`` (None: an output's) into ``i`` is
        on a path this part holds."""
        if active is None:
            return True
        if i in member:
            return member[i] == active
        if i in owner:
            return i in desc[active]
        if consumer is not None and consumer in owner:
            return owner[consumer] == active
        return consumer is not None or active == keys[0]

    cot: dict[Node, Node] = {}

    def unbroadcast(g: Node, dims: tuple[str, ...]) -> Node:
        # the scan axis first (a kernel sums it over its time loop), then the others, last first
        extra = [d for d in g.dims if d not in dims]
        extra.sort(key=lambda d: (d != axis, -order.index(d)))
        for d in extra:
            g = b.sum(g, dim=d)
        return g

    def accum(n: Node, g: Node | None) -> None:
        if g is None or n.op == "const" or n.dtype == dtypes.BOOL:
            return
        g = unbroadcast(g, n.dims)
        cot[n] = b.add(cot[n], g) if n in cot else g

    cot_args = []
    for name, v in fwd.outputs:
        ga = _cotangent_arg(GRAD + name, v.dims)
        cot_args.append(ga)
        if allowed(None, v):
            accum(v, ga)

    members = {k: [n for n in live if n.op in RECURRENCES and recurrence_key(n) == k] for k in keys}
    seen: dict[tuple, int] = {}
    for n in reversed(live):
        if n.op in ("arg", "const"):
            continue
        if n.op in RECURRENCES:
            k = recurrence_key(n)
            seen[k] = seen.get(k, 0) + 1
            if seen[k] == len(members[k]) and active in (None, k):  # every user of the scan and its final state is done
                (_scan_vjp if n.op in ("scan", "scan_final") else matrix_vjp)(b, members[k], cot, accum)
            continue
        g = cot.get(n)
        if g is None:
            continue
        op = get(n.op)
        if n.op == "sum":
            if allowed(n, n.inputs[0]):
                accum(n.inputs[0], g)  # constant along the summed dim
            continue
        if op.derivative is None:
            raise LoweringError(f"{fwd.name}: op `{n.op}` has no derivative rule yet; its backward cannot be built")
        outs = op.derivative(b, n.inputs, n, g, **{k: n.attr(k) for k in op.attrs})
        for i, gi in zip(n.inputs, outs):
            if allowed(n, i):
                accum(i, gi)

    outputs = tuple((GRAD + a.attr("name"), cot[a]) for a in fwd.args if a in cot)
    if not outputs:
        raise LoweringError(f"{fwd.name}: no output depends on a float argument; nothing to differentiate")
    return Graph(
        name=f"{fwd.name}_backward",
        dim_order=order,
        args=tuple(fwd.args) + tuple(cot_args),
        outputs=outputs,
        nodes=tuple(topo_order([v for _, v in outputs])),
        fixed_sizes=fwd.fixed_sizes,
    )


def _scan_vjp(b: Builder, members: list[Node], cot: dict[Node, Node], accum) -> None:
    s0 = members[0]
    a, bb = s0.inputs[0], s0.inputs[1]
    h0 = s0.inputs[2] if len(s0.inputs) == 3 else None
    axis, rev = s0.attr("axis"), bool(s0.attr("reverse"))
    scan = next((m for m in members if m.op == "scan"), None)
    final = next((m for m in members if m.op == "scan_final"), None)
    c = cot.get(scan) if scan is not None else None
    gf = cot.get(final) if final is not None else None
    if c is None and gf is None:
        return
    part = s0.attr("complex")
    cx = {"complex": part} if part else {}
    if scan is None:
        scan = b.scan(*s0.inputs, axis=axis, reverse=rev, **cx)
    fill = (gf,) if gf is not None else ()
    # complex (parts along ``part``): the cotangent flows back through conj(a) and the decay's
    # cotangent is G * conj(h[t-1]) (the real case's rule, a holomorphic product's)
    mul = (lambda x, y: _cmul(b, x, y, part)) if part else b.mul
    a_back = _conj(b, a, part) if part else a
    # R[t] = a[t] * (c[t] + R[t+1]); with no c, zeros shaped like the final state's cotangent
    beta = mul(a_back, c) if c is not None else b.mul(b.c(0.0), gf)
    if gf is not None and any(d not in beta.dims and d not in a.dims for d in gf.dims):
        # the final state's cotangent varies along dims a and c do not (c summed over them
        # downstream): 0 * gf gives R the state's full dims
        beta = b.add(beta, b.mul(b.c(0.0), gf))
    R = b.scan(a_back, beta, *fill, axis=axis, reverse=not rev, **cx)
    r_next = b.prev(R, *fill, axis=axis, reverse=not rev)
    G = b.add(c, r_next) if c is not None else r_next
    accum(bb, G)
    h_before = b.prev(scan, *((h0,) if h0 is not None else ()), axis=axis, reverse=rev)
    accum(a, mul(G, _conj(b, h_before, part)) if part else b.mul(G, h_before))
    if h0 is not None:
        accum(h0, b.scan_final(a_back, beta, *fill, axis=axis, reverse=not rev, full_dims=R.dims, **cx))


def _conj(b: Builder, x: Node, part: str) -> Node:
    """The complex conjugate of ``x`` (parts along ``part``)."""
    return b.stack(b.part(x, dim=part, index=0), b.neg(b.part(x, dim=part, index=1)), dim=part)


def _cmul(b: Builder, x: Node, y: Node, part: str) -> Node:
    """The complex product of ``x`` and ``y`` (parts along ``part``), written out."""
    xr, xi = b.part(x, dim=part, index=0), b.part(x, dim=part, index=1)
    yr, yi = b.part(y, dim=part, index=0), b.part(y, dim=part, index=1)
    return b.stack(b.sub(b.mul(xr, yr), b.mul(xi, yi)), b.add(b.mul(xr, yi), b.mul(xi, yr)), dim=part)


def matrix_vjp(b: Builder, members: list[Node], cot: dict[Node, Node], accum) -> None:
    """The derivative of a matrix scan ``y[t] = S[t] . q[t]`` (S[t] = exp(l[t]) S[t-1] +
    v[t] k[t]^T, from h0; final state F) given cotangents ``dy`` of y and ``gf`` of F. With
    ``G`` the reverse scan of ``dy q^T`` from ``gf`` (the cotangent of every state), each
    gradient is a matrix scan again, so tensor cores run the backward too:
    ``dv = G k`` and ``dk = G^T v`` (reverse scans), ``dq = S^T dy`` (the forward state, read
    out along v's dim), ``dh0 = exp(l[0]) G[0]`` (the reverse scan's final state). For the
    decay: y[t] depends on l[i] for s < i <= t through exp(L[t] - L[s]) (L the running sum of
    l), so dl[i] sums the pairs (s, t) that cross i, ``exp(l[i]) <S[i-1], G[i]>`` (the
    ``matrix_scan_dl`` op; h0 and gf as the pairs' ends before the start and after the end).
    Written as ``sum_{t >= i} (dy[t] . y[t] - v[t] . dv[t])`` it would be a running sum of
    differences that mostly cancel (the pairs with i <= s <= t), float32 products or not. An
    operand shared by heads (Mamba-2's B and C by a group's heads) gets a gradient scan summed
    over those heads (``sum_dims``): no per-head result is stored."""
    m0 = members[0]
    ld, v, k, q = m0.inputs[:4]
    h0 = m0.inputs[4] if len(m0.inputs) == 5 else None
    at = m0.attr_dict
    axis, kd, vd, rev = at["axis"], at["kdim"], at["vdim"], bool(at["reverse"])
    if any(m.attr("sum_dims") for m in members):
        raise DefinitionError("a matrix scan summed over heads (a derivative's) has no derivative rule")
    heads = [d for d in at["full_dims"] if d not in (axis, kd, vd)]

    def summed(x: Node) -> dict:
        """The head dims operand ``x`` is broadcast along (not the batch, the graph's first dim:
        a packed batch's sequences), summed in the gradient scan's own kernel, which loops over
        them, instead of stored per head and summed after it."""
        dims = tuple(d for d in heads if d not in x.dims and d != b.order[0])
        return {"sum_dims": dims} if dims else {}
    M = next((m for m in members if m.op == "matrix_scan"), None)
    F = next((m for m in members if m.op == "matrix_scan_final"), None)
    dy = cot.get(M) if M is not None else None
    gf = cot.get(F) if F is not None else None
    if dy is None and gf is None:
        return

    def ms(op: str, *ins: Node, h: Node | None, kdim: str, vdim: str, reverse: bool, **more: Any) -> Node:
        return getattr(b, op)(*ins, *((h,) if h is not None else ()), axis=axis, kdim=kdim, vdim=vdim,
                              reverse=reverse, full_dims=at["full_dims"], **more)

    if dy is None:  # only the final state is used: y's cotangent is zero (along v's dims)
        dy = b.mul(b.c(0.0), v)
    accum(v, ms("matrix_scan", ld, dy, q, k, h=gf, kdim=kd, vdim=vd, reverse=not rev, **summed(v)))
    accum(k, ms("matrix_scan", ld, q, dy, v, h=gf, kdim=vd, vdim=kd, reverse=not rev, **summed(k)))
    accum(q, ms("matrix_scan", ld, k, v, dy, h=h0, kdim=vd, vdim=kd, reverse=rev, **summed(q)))
    if h0 is not None:
        accum(h0, ms("matrix_scan_final", ld, dy, q, k, h=gf, kdim=kd, vdim=vd, reverse=not rev))
    # the decay: each step's, as products of the state it decays and the cotangent of the
    # state it makes (no sum of differences that cancel; see the op)
    ins = (ld, v, k, q, dy) + ((h0,) if h0 is not None else ()) + ((gf,) if gf is not None else ())
    dl = b.matrix_scan_dl(*ins, axis=axis, kdim=kd, vdim=vd, reverse=rev, full_dims=at["full_dims"],
                          with_h0=h0 is not None, with_gf=gf is not None)
    accum(ld, dl)


def backward_layer(layer: Any, matrix: bool = False) -> Any:
    """The backward of ``layer`` as a layer: arguments = the forward's + ``grad_<output>``
    (optional: zero when not given); outputs = ``grad_<argument>``. ``matrix``: derived after
    ``form_matrix_scans`` (scans in the matrix form differentiated as matrix scans)."""
    from ssmc.dsl.layer import Layer
    from ssmc.passes import REWRITES, run_passes
    from ssmc.passes.matrix_scans import FormMatrixScans

    passes = list(REWRITES) + ([FormMatrixScans()] if matrix else [])
    rewritten = run_passes(layer.graph, passes)
    graph = backward_graph(rewritten)
    specs = dict(layer.specs)
    for a in graph.args[len(rewritten.args):]:
        specs[a.attr("name")] = ArgSpec("input", a.dims)
    optional = set(layer.optional) | {a.attr("name") for a in graph.args[len(rewritten.args):]}
    return Layer.from_graph(graph, specs, optional, layer.fixed_sizes)
