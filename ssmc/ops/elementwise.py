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


def _unary(name, numpy_fn, triton, doc, domain=("any",), loop_invariant=None):
    """``loop_invariant``: a second lowering for values computed once, before the time loop."""
    extra = {"loop_invariant": loop_invariant} if loop_invariant else {}
    register(OpDef(name, ELEMENTWISE, 1, _float_rule(name), numpy_fn, triton, doc, domain, extra=extra))


def _binary(name, numpy_fn, triton, doc, domain=("any", "any")):
    register(OpDef(name, ELEMENTWISE, 2, _float_rule(name), numpy_fn, triton, doc, domain))


_binary("add", np.add, "({0} + {1})", "x + y")
_binary("sub", np.subtract, "({0} - {1})", "x - y")
_binary("mul", np.multiply, "({0} * {1})", "x * y")
# IEEE division (Triton's `/` is div.full.f32, 2 ulp: bilinear's Abar is raised to the L-th
# power, so those ulps compound; seen 4.5x the float32 reference's error at L=61 on an H100)
_binary("div", np.divide, "tl.div_rn({0}, {1})", "x / y", ("any", "nonzero"))
_binary(
    "maximum",
    np.maximum,
    "tl.maximum({0}, {1}, propagate_nan=tl.PropagateNan.ALL)",
    "elementwise max (NaN if either is NaN)",
)
_binary(
    "minimum",
    np.minimum,
    "tl.minimum({0}, {1}, propagate_nan=tl.PropagateNan.ALL)",
    "elementwise min (NaN if either is NaN)",
)

_unary("neg", np.negative, "(-{0})", "-x")
# in the time loop: the GPU's ex2.approx (what mamba-ssm's kernels use); before it: accurate
_unary("exp", np.exp, "_ssmc_exp({0})", "e ** x", loop_invariant="_ssmc_exp_accurate({0})")
_unary("exp2", np.exp2, "tl.exp2({0})", "2 ** x", loop_invariant="_ssmc_exp2_accurate({0})")
_unary("log", np.log, "tl.log({0})", "natural log", ("positive",))
_unary("log1p", np.log1p, "_ssmc_log1p({0})", "log(1 + x), accurate near 0", ("gt_minus1",))
_unary("expm1", np.expm1, "_ssmc_expm1({0})", "exp(x) - 1, accurate near 0")
_unary("exprel", _exprel, "_ssmc_exprel({0})", "(exp(x) - 1) / x, 1 at x = 0 (exact ZOH)")
_unary("softplus", lambda x: np.logaddexp(0.0, x), "_ssmc_softplus({0})", "log(1 + exp(x))")
_unary("sigmoid", _sigmoid, "tl.sigmoid({0})", "1 / (1 + exp(-x))")
_unary("silu", lambda x: x * _sigmoid(x), "({0} * tl.sigmoid({0}))", "x * sigmoid(x)")
_unary("tanh", np.tanh, "_ssmc_tanh({0})", "hyperbolic tangent")
_unary("relu", lambda x: np.where(np.isnan(x), x, np.maximum(x, 0.0)), "_ssmc_relu({0})", "max(x, 0)")
_unary(
    "gelu",
    lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))),
    "(0.5 * {0} * (1.0 + tl.erf({0} * 0.7071067811865476)))",
    "x * Phi(x) (exact, erf form)",
)
_unary("square", np.square, "({0} * {0})", "x * x")
_unary("sqrt", np.sqrt, "tl.sqrt({0})", "square root", ("nonneg",))
_unary("rsqrt", lambda x: 1.0 / np.sqrt(x), "tl.rsqrt({0})", "1 / sqrt(x)", ("positive",))
_unary("abs", np.abs, "tl.abs({0})", "|x|")

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
        OpDef(_name, ELEMENTWISE, 2, _compare_rule, _np, f"({{0}} {_sym} {{1}})", f"x {_sym} y")
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
    )
)
