"""Tracing a layer function into IR.

A layer is a Python function whose parameters are annotated ``In[...]`` (a tensor argument)
or ``Param[...]`` (a learned parameter, with an initializer); a parameter whose default is
``None`` is optional (zeros when not passed). ``@ssmc.layer`` calls the function once with
``Value`` placeholders and records every op as an IR node.
"""

from __future__ import annotations

import inspect
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ssmc.errors import DefinitionError
from ssmc.ir import dtypes
from ssmc.ir.dims import Dims, in_order, parse_dims, union
from ssmc.ir.node import Graph, Node
from ssmc.ops.registry import get


@dataclass(frozen=True)
class ArgSpec:
    """How a layer argument is declared: its kind, dims in the declared layout, initializer."""

    kind: str  # "input" or "param"
    layout: Dims
    init: Any = None

    def __repr__(self) -> str:
        name = "In" if self.kind == "input" else "Param"
        return f"{name}[{' '.join(self.layout)}]"


class In:
    """``x: In["B L D"]``: a tensor argument with named dims (in this layout).
    ``g: In["B L D", "log_sigmoid"]`` also names how random inputs are drawn for tests, fuzzing
    and benchmarks (an initializer from ``ssmc.dsl.init``; default: standard normal), for an
    input whose meaningful values are not all reals (a log gate is <= 0)."""

    def __class_getitem__(cls, spec: Any) -> ArgSpec:
        if isinstance(spec, tuple):
            dims, draw = spec
            return ArgSpec("input", parse_dims(dims), draw)
        return ArgSpec("input", parse_dims(spec))


class Param:
    """``A_log: Param["D N", "s4d_real"]``: a learned parameter and its initializer (a name
    from ``ssmc.dsl.init`` or a callable ``(shape, rng) -> array``; default ``normal``)."""

    def __class_getitem__(cls, spec: Any) -> ArgSpec:
        if isinstance(spec, tuple):
            dims, init = spec
        else:
            dims, init = spec, "normal"
        return ArgSpec("param", parse_dims(dims), init)


class _Tracer:
    def __init__(self, name: str, order: Dims, sizes: dict[str, int] | None = None) -> None:
        self.name = name
        self.order = order
        self.sizes = dict(sizes or {})  # the layer's fixed sizes
        self.nodes: list[Node] = []

    def make(self, op: str, inputs: tuple[Node, ...], **attrs: Any) -> Node:
        opdef = get(op)
        try:
            dims, dtype = opdef.shape(
                tuple(i.dims for i in inputs), tuple(i.dtype for i in inputs), attrs, self.order
            )
        except DefinitionError as e:
            raise DefinitionError(f"{self.name}: {e}") from None
        node = Node(op, inputs, tuple(dims), dtype, tuple(attrs.items()))
        self.nodes.append(node)
        return node


_state = threading.local()


def _tracer() -> _Tracer:
    t = getattr(_state, "tracer", None)
    if t is None:
        raise DefinitionError("ssmc ops can only be used inside a function decorated @ssmc.layer")
    return t


class Value:
    """A traced value: an IR node with named dims. Supports + - * / ** and comparisons."""

    __array_priority__ = 1000  # NumPy scalars defer to Value's operators

    def __init__(self, node: Node) -> None:
        self.node = node

    @property
    def dims(self) -> Dims:
        return self.node.dims

    def __repr__(self) -> str:
        return f"Value({self.node.op}, dims={list(self.dims)})"

    def __bool__(self) -> bool:
        raise DefinitionError(
            f"{_tracer().name}: a traced value has no truth value; use ssmc.where for choices"
        )

    # arithmetic
    def __add__(self, o): return apply("add", self, o)
    def __radd__(self, o): return apply("add", o, self)
    def __sub__(self, o): return apply("sub", self, o)
    def __rsub__(self, o): return apply("sub", o, self)
    def __mul__(self, o): return apply("mul", self, o)
    def __rmul__(self, o): return apply("mul", o, self)
    def __truediv__(self, o): return apply("div", self, o)
    def __rtruediv__(self, o): return apply("div", o, self)
    def __neg__(self): return apply("neg", self)

    def __pow__(self, p):
        if not isinstance(p, (int, float)):
            raise DefinitionError(f"{_tracer().name}: `**` takes a constant exponent, got {p!r}")
        return apply("pow", self, exponent=float(p))

    def __gt__(self, o): return apply("gt", self, o)
    def __lt__(self, o): return apply("lt", self, o)
    def __ge__(self, o): return apply("ge", self, o)
    def __le__(self, o): return apply("le", self, o)

    def sum(self, dim: str) -> Value:
        return apply("sum", self, dim=dim)

    def mean(self, dim: str) -> Value:
        return apply("mean", self, dim=dim)

    @property
    def final(self) -> Value:
        """The final state of a scan (its last step; the first, for a reverse scan), or of a
        conv: its window after the last step (the last K inputs)."""
        n = self.node
        if n.op == "conv":
            return Value(_tracer().make("conv_final", n.inputs, **dict(n.attrs)))
        if n.op != "scan":
            raise DefinitionError(f"{_tracer().name}: `.final` is only defined on a scan's or a conv's result")
        attrs = dict(n.attrs)
        return Value(_tracer().make("scan_final", n.inputs, **attrs, full_dims=n.dims))


def lift(x: Any) -> Node:
    """A Value's node, or a constant node for a Python number."""
    if isinstance(x, Value):
        return x.node
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return _tracer().make("const", (), value=float(x))
    raise DefinitionError(f"{_tracer().name}: cannot use {type(x).__name__} {x!r} as a value")


def apply(op: str, *operands: Any, **attrs: Any) -> Value:
    return Value(_tracer().make(op, tuple(lift(o) for o in operands), **attrs))


def order_of_dims(specs: dict[str, ArgSpec]) -> Dims:
    order: list[str] = []
    for spec in specs.values():
        for d in spec.layout:
            if d not in order:
                order.append(d)
    return tuple(order)


def trace(fn: Callable[..., Any], name: str, sizes: dict[str, int] | None = None):
    """Trace ``fn`` into a ``Graph``; returns (graph, arg specs, optional names)."""
    sig = inspect.signature(fn)
    specs: dict[str, ArgSpec] = {}
    optional: set[str] = set()
    for pname, p in sig.parameters.items():
        if not isinstance(p.annotation, ArgSpec):
            raise DefinitionError(
                f"{name}: argument `{pname}` needs an annotation In[\"dims\"] or Param[\"dims\"]"
            )
        specs[pname] = p.annotation
        if p.default is None:
            optional.add(pname)
        elif p.default is not inspect.Parameter.empty:
            raise DefinitionError(f"{name}: argument `{pname}` may only default to None")
    order = order_of_dims(specs)
    tracer = _Tracer(name, order, sizes)
    for d in sizes or {}:
        if d not in order:
            raise DefinitionError(f"{name}: fixed size for dim {d!r}, which no argument has")
    arg_nodes = []
    for pname, spec in specs.items():
        init = spec.init if isinstance(spec.init, str) or spec.init is None else "custom"
        node = Node(
            "arg",
            (),
            in_order(spec.layout, order),
            dtypes.FLOAT,
            (
                ("name", pname),
                ("kind", spec.kind),
                ("dims", in_order(spec.layout, order)),
                ("layout", spec.layout),
                ("optional", pname in optional),
                ("init", init if spec.kind == "param" else None),
            ),
        )
        arg_nodes.append(node)
    prev = getattr(_state, "tracer", None)
    _state.tracer = tracer
    try:
        result = fn(*[Value(n) for n in arg_nodes])
        outputs = _outputs(name, result)
    finally:
        _state.tracer = prev
    from ssmc.ir.node import topo_order

    used = set(topo_order([v for _, v in outputs]))
    for n in arg_nodes:
        if n not in used:
            warnings.warn(
                f"{name}: argument `{n.attr('name')}` is not used by any output; it is checked "
                "when passed and otherwise ignored",
                stacklevel=3,
            )
    graph = Graph(
        name=name,
        dim_order=order,
        args=tuple(arg_nodes),
        outputs=outputs,
        nodes=tuple(tracer.nodes),
        fixed_sizes=tuple(sorted((sizes or {}).items())),
    )
    return graph, specs, optional


def _outputs(name: str, result: Any) -> tuple[tuple[str, Node], ...]:
    if isinstance(result, Value):
        items = [("y", result)]
    elif isinstance(result, tuple):
        items = [(f"y{i}", v) for i, v in enumerate(result)]
    elif isinstance(result, dict):
        items = list(result.items())
    else:
        raise DefinitionError(
            f"{name}: a layer returns a value, a tuple of values or a dict of them, "
            f"not {type(result).__name__}"
        )
    out = []
    for k, v in items:
        if not isinstance(v, Value):
            raise DefinitionError(f"{name}: output `{k}` is {type(v).__name__}, not a traced value")
        if not k.isidentifier():
            raise DefinitionError(f"{name}: output name {k!r} is not an identifier")
        out.append((k, v.node))
    return tuple(out)


def union_dims(*values: Value) -> Dims:
    return union(_tracer().order, *(v.dims for v in values))
