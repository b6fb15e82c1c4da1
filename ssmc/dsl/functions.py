"""The DSL's functions. Each builds one IR node (see the op registry for its meaning)."""

from __future__ import annotations

from typing import Any

from ssmc.dsl.trace import Value, _tracer, apply, lift
from ssmc.errors import DefinitionError


def _unary(op: str):
    def f(x: Any) -> Value:
        return apply(op, x)

    f.__name__ = op
    f.__doc__ = f"Elementwise `{op}` (see ssmc.ops.REGISTRY[{op!r}].doc)."
    return f


exp = _unary("exp")
exp2 = _unary("exp2")
log = _unary("log")
log1p = _unary("log1p")
expm1 = _unary("expm1")
softplus = _unary("softplus")
sigmoid = _unary("sigmoid")
silu = _unary("silu")
tanh = _unary("tanh")
relu = _unary("relu")
gelu = _unary("gelu")
square = _unary("square")
sqrt = _unary("sqrt")
rsqrt = _unary("rsqrt")
cos = _unary("cos")
sin = _unary("sin")
abs = _unary("abs")  # noqa: A001  (the DSL's abs, like numpy's)
neg = _unary("neg")


def add(x: Any, y: Any) -> Value: return apply("add", x, y)
def sub(x: Any, y: Any) -> Value: return apply("sub", x, y)
def mul(x: Any, y: Any) -> Value: return apply("mul", x, y)
def div(x: Any, y: Any) -> Value: return apply("div", x, y)
def maximum(x: Any, y: Any) -> Value: return apply("maximum", x, y)
def minimum(x: Any, y: Any) -> Value: return apply("minimum", x, y)
def eq(x: Any, y: Any) -> Value: return apply("eq", x, y)


def power(x: Any, p: float) -> Value:
    """x ** p for a constant p."""
    return apply("pow", x, exponent=float(p))


def where(cond: Value, x: Any, y: Any) -> Value:
    """``x`` where ``cond`` (a comparison) holds, else ``y``."""
    return apply("where", cond, x, y)


def cast(x: Any, to: str) -> Value:
    """Round ``x`` to ``"f32"``, ``"bf16"`` or ``"f16"`` (then compute on in full precision)."""
    return apply("cast", x, to=to)


def sum(x: Value, dim: str) -> Value:  # noqa: A001
    """Sum over the named dim ``dim``."""
    return apply("sum", x, dim=dim)


def mean(x: Value, dim: str) -> Value:
    """Mean over the named dim ``dim``."""
    return apply("mean", x, dim=dim)


def discretize(A: Any, B: Any, delta: Any, method: str = "zoh") -> tuple[Value, Value]:
    """Continuous diagonal ``A``, input matrix ``B`` and step ``delta`` -> ``(Abar, Bbar)``.

    Methods (DESIGN.md): ``zoh`` (exact), ``zoh_euler`` (Mamba's), ``bilinear``, ``euler``."""
    ops = (lift(A), lift(B), lift(delta))
    t = _tracer()
    return (
        Value(t.make("discretize", ops, method=method, part="A")),
        Value(t.make("discretize", ops, method=method, part="B")),
    )


def scan(a: Any, b: Any, *, axis: str = "L", reverse: bool = False, h0: Any = None,
         complex: str | None = None) -> Value:  # noqa: A002  (the DSL's word for it)
    """The linear recurrence ``h[t] = a[t] * h[t-1] + b[t]`` along ``axis``, ``h[-1] = h0``.

    ``a`` and ``b`` broadcast by name to the state's dims (their union); ``h0`` has the state's
    dims without ``axis`` (zeros when None). Returns every ``h[t]``; ``.final`` on the result
    is the state after the last step. ``complex``: a dim of size 2 (declare it:
    ``@ssmc.layer(sizes={"R": 2})``) holding real and imaginary parts, which a, b and h0 all
    have; the products are then complex (LRU's diagonal recurrence)."""
    if not isinstance(reverse, bool):
        raise DefinitionError(f"{_tracer().name}: scan `reverse` must be True or False")
    ops = (lift(a), lift(b)) + ((lift(h0),) if h0 is not None else ())
    extra = {}
    if complex is not None:
        _parts_dim(complex, "scan")
        extra["complex"] = complex
    return Value(_tracer().make("scan", ops, axis=axis, reverse=reverse, **extra))


def _parts_dim(dim: str, what: str) -> None:
    t = _tracer()
    if t.sizes.get(dim) != 2:
        raise DefinitionError(
            f"{t.name}: `{what}` uses {dim!r} as a complex value's parts: declare its size, "
            f"@ssmc.layer(sizes={{{dim!r}: 2}})"
        )


def stack(re: Any, im: Any, dim: str) -> Value:
    """The complex value with real part ``re`` and imaginary part ``im``: a new dim ``dim``
    of size 2 (declared in the layer's sizes) holding the two."""
    _parts_dim(dim, "stack")
    return apply("stack", re, im, dim=dim)


def part(x: Value, dim: str, index: int) -> Value:
    """The real (``index`` 0) or imaginary (1) part of the complex value ``x`` (parts along ``dim``)."""
    return apply("part", x, dim=dim, index=index)


def final_state(h: Value) -> Value:
    """The final state of the scan ``h`` (same as ``h.final``)."""
    return h.final


def gate(y: Any, z: Any, act: str = "silu") -> Value:
    """``y * act(z)``, act in silu / sigmoid / gelu / tanh / relu / identity."""
    return apply("gate", y, z, act=act)


def conv(x: Any, w: Any, axis: str, window0: Any = None) -> Value:
    """Short causal depthwise convolution along ``axis``: ``y[t] = sum_k w[k] * x[t-(K-1)+k]``,
    the taps ``k`` along ``w``'s one dim that ``x`` lacks (size K, up to 8 in Mamba's blocks).
    The K inputs before the first step come from ``window0`` (the taps dim and ``x``'s other
    dims; zeros when None); ``.final`` of the result is the window after the last step, which
    a later call continues from (chunked prefill, decoding)."""
    xs, ws = lift(x), lift(w)
    taps = [d for d in ws.dims if d not in xs.dims and d != axis]
    if len(taps) != 1:
        raise DefinitionError(
            f"{_tracer().name}: `conv` weights {list(ws.dims)} need exactly one dim the input "
            f"{list(xs.dims)} lacks (the taps); found {taps}"
        )
    ops = (xs, ws) + ((lift(window0),) if window0 is not None else ())
    return Value(_tracer().make("conv", ops, axis=axis, taps=taps[0]))
