"""Elementwise ops: one registry entry each. Operands broadcast by dim name."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ssmc.errors import DefinitionError
from ssmc.ir import dtypes
from ssmc.ir.dims import Dims, union
from ssmc.ops.numerics import round_to
from ssmc.ops.registry import ELEMENTWISE, OpDef, register


def _float_rule(name: str):
    def rule(dims: tuple[Dims, ...], dts: tuple[str, ...], attrs: dict[str, Any], order: Dims):
        for i, dt in enumerate(dts):
            if not dtypes.is_float(dt):
                raise DefinitionError(f"`{name}` operand {i} is {dt}; it needs a float value")
        return union(order, *dims), dtypes.FLOAT

    return rule


def _compare_rule(dims, dts, attrs, order):
    for i, dt in enumerate(dts):
        if not dtypes.is_float(dt):
            raise DefinitionError(f"comparison operand {i} is {dt}; it needs a float value")
    return union(order, *dims), dtypes.BOOL


def _where_rule(dims, dts, attrs, order):
    if dts[0] != dtypes.BOOL:
        raise DefinitionError(f"`where` condition is {dts[0]}; it needs a comparison's result")
    for i in (1, 2):
        if not dtypes.is_float(dts[i]):
            raise DefinitionError(f"`where` operand {i} is {dts[i]}; it needs a float value")
    return union(order, *dims), dtypes.FLOAT


def _cast_rule(dims, dts, attrs, order):
    if attrs.get("to") not in dtypes.CAST_TARGETS:
        raise DefinitionError(f"`cast` to {attrs.get('to')!r}: use one of {dtypes.CAST_TARGETS}")
    return dims[0], attrs["to"]


_erf = np.vectorize(math.erf, otypes=[np.float64])


def _sigmoid(x):
    """1 / (1 + exp(-x)), evaluated on the side where exp does not overflow or cancel."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _exprel(x):
    with np.errstate(all="ignore"):
        return np.where(x == 0, 1.0, np.expm1(x) / np.where(x == 0, 1.0, x))


def _exprel_grad(x):
    """(x e^x - e^x + 1) / x^2: a series near 0 (where that form cancels), else expm1's."""
    with np.errstate(all="ignore"):
        x = np.asarray(x, dtype=np.float64)
        safe = np.where(np.abs(x) < 0.5, 1.0, x)
        far = (np.expm1(safe) * (safe - 1.0) + safe) / (safe * safe)
        # sum_{k>=1} k x^(k-1) / (k+1)!
        near = np.zeros_like(x)
        term_fact = 1.0
        for k in range(1, 16):
            term_fact *= k + 1
            near = near + k * x ** (k - 1) / term_fact
        return np.where(np.abs(x) < 0.5, near, far)


def _dsilu(b, x):
    s = b.sigmoid(x)
    return b.mul(s, b.add(b.c(1.0), b.mul(x, b.sub(b.c(1.0), s))))


def _dgelu(b, x):
    phi = b.mul(b.c(0.5), b.add(b.c(1.0), b.erf(b.mul(x, b.c(1.0 / math.sqrt(2.0))))))
    pdf = b.mul(b.c(1.0 / math.sqrt(2.0 * math.pi)), b.exp(b.mul(b.c(-0.5), b.square(x))))
    return b.add(phi, b.mul(x, pdf))


def _pow_numpy(x, exponent):
    return np.power(x, exponent)


def _pow_triton(args: list[str], attrs: dict[str, Any]) -> str:
    """x ** p: a chain of multiplications for small integer p, else exp2(p * log2(x))
    (defined for x > 0, NaN for x < 0 as in NumPy)."""
    (x,) = args
    p = float(attrs["exponent"])
    if p == 0.5:
        return f"tl.sqrt({x})"
    if p == -0.5:
        return f"tl.rsqrt({x})"
    if p.is_integer() and abs(p) <= 8:
        k = int(abs(p))
        body = "1.0" if k == 0 else " * ".join([x] * k)
        return f"(1.0 / ({body}))" if p < 0 else f"({body})"
    return f"tl.exp2({p!r} * tl.log2({x}))"


def _unary(name, numpy_fn, triton, doc, domain=("any",), loop_invariant=None, d=None):
    """``loop_invariant``: a second lowering for values computed once, before the time loop.
    ``d``: the derivative rule ``d(b, (x,), y, g) -> (dx,)`` (see ``ssmc.autodiff``)."""
    extra = {"loop_invariant": loop_invariant} if loop_invariant else {}
    register(OpDef(name, ELEMENTWISE, 1, _float_rule(name), numpy_fn, triton, doc, domain, d, extra=extra))


def _binary(name, numpy_fn, triton, doc, domain=("any", "any"), d=None):
    register(OpDef(name, ELEMENTWISE, 2, _float_rule(name), numpy_fn, triton, doc, domain, d))


# Derivative rules: ``rule(b, xs, y, g)`` returns one cotangent (an IR node, or None: no
# gradient flows there) per operand, given the operands ``xs``, the op's own node ``y`` and the
# cotangent ``g`` of ``y``. ``b`` builds nodes (``b.mul(g, x)``, ``b.c(0.5)``); a cotangent may
# lack dims its operand has (constant along them) or have more (autodiff sums them out).
def _d_maxmin(cmp):
    return lambda b, xs, y, g: (
        b.where(getattr(b, cmp)(xs[0], xs[1]), g, b.c(0.0)),
        b.where(getattr(b, cmp)(xs[0], xs[1]), b.c(0.0), g),
    )


_binary("add", np.add, "({0} + {1})", "x + y", d=lambda b, xs, y, g: (g, g))
_binary("sub", np.subtract, "({0} - {1})", "x - y", d=lambda b, xs, y, g: (g, b.neg(g)))
_binary("mul", np.multiply, "({0} * {1})", "x * y", d=lambda b, xs, y, g: (b.mul(g, xs[1]), b.mul(g, xs[0])))
# IEEE division (Triton's `/` is div.full.f32, 2 ulp: bilinear's Abar is raised to the L-th
# power, so those ulps compound; seen 4.5x the float32 reference's error at L=61 on an H100)
_binary(
    "div",
    np.divide,
    "tl.div_rn({0}, {1})",
    "x / y",
    ("any", "nonzero"),
    d=lambda b, xs, y, g: (b.div(g, xs[1]), b.neg(b.mul(b.div(g, xs[1]), y))),
)
_binary(
    "maximum",
    np.maximum,
    "tl.maximum({0}, {1}, propagate_nan=tl.PropagateNan.ALL)",
    "elementwise max (NaN if either is NaN)",
    d=_d_maxmin("ge"),
)
_binary(
    "minimum",
    np.minimum,
    "tl.minimum({0}, {1}, propagate_nan=tl.PropagateNan.ALL)",
    "elementwise min (NaN if either is NaN)",
    d=_d_maxmin("le"),
)

_unary("neg", np.negative, "(-{0})", "-x", d=lambda b, xs, y, g: (b.neg(g),))
# in the time loop: the GPU's ex2.approx (what mamba-ssm's kernels use); before it: accurate
_unary("exp", np.exp, "_ssmc_exp({0})", "e ** x", loop_invariant="_ssmc_exp_accurate({0})",
       d=lambda b, xs, y, g: (b.mul(g, y),))
_unary("exp2", np.exp2, "tl.exp2({0})", "2 ** x", loop_invariant="_ssmc_exp2_accurate({0})",
       d=lambda b, xs, y, g: (b.mul(b.mul(g, y), b.c(math.log(2.0))),))
_unary("log", np.log, "tl.log({0})", "natural log", ("positive",), d=lambda b, xs, y, g: (b.div(g, xs[0]),))
_unary("log1p", np.log1p, "_ssmc_log1p({0})", "log(1 + x), accurate near 0", ("gt_minus1",),
       d=lambda b, xs, y, g: (b.div(g, b.add(b.c(1.0), xs[0])),))
_unary("expm1", np.expm1, "_ssmc_expm1({0})", "exp(x) - 1, accurate near 0",
       d=lambda b, xs, y, g: (b.mul(g, b.add(y, b.c(1.0))),))
_unary("exprel", _exprel, "_ssmc_exprel({0})", "(exp(x) - 1) / x, 1 at x = 0 (exact ZOH)",
       d=lambda b, xs, y, g: (b.mul(g, b.exprel_grad(xs[0])),))
_unary("softplus", lambda x: np.logaddexp(0.0, x), "_ssmc_softplus({0})", "log(1 + exp(x))",
       d=lambda b, xs, y, g: (b.mul(g, b.sigmoid(xs[0])),))
_unary("sigmoid", _sigmoid, "tl.sigmoid({0})", "1 / (1 + exp(-x))",
       d=lambda b, xs, y, g: (b.mul(g, b.mul(y, b.sub(b.c(1.0), y))),))
_unary("silu", lambda x: x * _sigmoid(x), "({0} * tl.sigmoid({0}))", "x * sigmoid(x)", d=lambda b, xs, y, g: (b.mul(g, _dsilu(b, xs[0])),))
_unary("tanh", np.tanh, "_ssmc_tanh({0})", "hyperbolic tangent",
       d=lambda b, xs, y, g: (b.mul(g, b.sub(b.c(1.0), b.square(y))),))
_unary("relu", lambda x: np.where(np.isnan(x), x, np.maximum(x, 0.0)), "_ssmc_relu({0})", "max(x, 0)",
       d=lambda b, xs, y, g: (b.where(b.gt(xs[0], b.c(0.0)), g, b.c(0.0)),))
_unary(
    "gelu",
    lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))),
    "(0.5 * {0} * (1.0 + tl.erf({0} * 0.7071067811865476)))",
    "x * Phi(x) (exact, erf form)",
    d=lambda b, xs, y, g: (b.mul(g, _dgelu(b, xs[0])),),
)
_unary("cos", np.cos, "tl.cos({0})", "cosine", d=lambda b, xs, y, g: (b.neg(b.mul(g, b.sin(xs[0]))),))
_unary("sin", np.sin, "tl.sin({0})", "sine", d=lambda b, xs, y, g: (b.mul(g, b.cos(xs[0])),))
_unary("square", np.square, "({0} * {0})", "x * x", d=lambda b, xs, y, g: (b.mul(g, b.mul(b.c(2.0), xs[0])),))
_unary("sqrt", np.sqrt, "tl.sqrt({0})", "square root", ("nonneg",),
       d=lambda b, xs, y, g: (b.div(b.mul(g, b.c(0.5)), y),))
_unary("rsqrt", lambda x: 1.0 / np.sqrt(x), "tl.rsqrt({0})", "1 / sqrt(x)", ("positive",),
       d=lambda b, xs, y, g: (b.mul(b.mul(g, b.c(-0.5)), b.mul(y, b.square(y))),))
_unary(
    "abs",
    np.abs,
    "tl.abs({0})",
    "|x|",
    d=lambda b, xs, y, g: (b.where(b.gt(xs[0], b.c(0.0)), g, b.where(b.lt(xs[0], b.c(0.0)), b.neg(g), b.c(0.0))),),
)
_unary(
    "erf",
    _erf,
    "tl.erf({0})",
    "the error function",
    d=lambda b, xs, y, g: (b.mul(g, b.mul(b.c(2.0 / math.sqrt(math.pi)), b.exp(b.neg(b.square(xs[0]))))),),
)
_unary(
    "exprel_grad",
    _exprel_grad,
    "_ssmc_exprel_grad({0})",
    "d/dx exprel(x) = (x e^x - e^x + 1) / x^2, 1/2 at x = 0 (the derivative of exact ZOH)",
)

register(
    OpDef(
        "pow",
        ELEMENTWISE,
        1,
        _float_rule("pow"),
        _pow_numpy,
        None,
        "x ** p for a constant p (x > 0 unless p is an integer)",
        ("positive",),
        derivative=lambda b, xs, y, g, exponent: (
            b.mul(g, b.mul(b.c(exponent), b.pow(xs[0], exponent=exponent - 1.0))),
        ),
        attrs=("exponent",),
        extra={"lower": _pow_triton},
    )
)
register(
    OpDef(
        "cast",
        ELEMENTWISE,
        1,
        _cast_rule,
        lambda x, to: round_to(x, to),
        None,
        "round to f32 / bf16 / f16, then compute on in the compute precision",
        derivative=lambda b, xs, y, g, to: (g,),  # rounding passes the gradient straight through
        attrs=("to",),
        extra={
            "lower": lambda a, attrs: {
                "f32": "{0}",
                "bf16": "_ssmc_round_bf16({0})",
                "f16": "{0}.to(tl.float16).to(tl.float32)",
            }[attrs["to"]].format(*a)
        },
    )
)

for _name, _np, _sym in (
    ("gt", np.greater, ">"),
    ("lt", np.less, "<"),
    ("ge", np.greater_equal, ">="),
    ("le", np.less_equal, "<="),
    ("eq", np.equal, "=="),
):
    register(
        OpDef(
            _name, ELEMENTWISE, 2, _compare_rule, _np, f"({{0}} {_sym} {{1}})", f"x {_sym} y",
            derivative=lambda b, xs, y, g: (None, None),  # piecewise constant
        )
    )

register(
    OpDef(
        "where",
        ELEMENTWISE,
        3,
        _where_rule,
        lambda c, x, y: np.where(c, x, y),
        "tl.where({0}, {1}, {2})",
        "x where cond else y",
        ("any", "any", "any"),
        derivative=lambda b, xs, y, g: (None, b.where(xs[0], g, b.c(0.0)), b.where(xs[0], b.c(0.0), g)),
    )
)
