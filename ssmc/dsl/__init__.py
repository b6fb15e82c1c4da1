"""The DSL: declare a layer as a Python function over values with named dims."""

from ssmc.dsl.functions import (
    abs,
    add,
    cast,
    conv,
    discretize,
    div,
    eq,
    exp,
    exp2,
    expm1,
    final_state,
    gate,
    gelu,
    log,
    log1p,
    maximum,
    mean,
    minimum,
    mul,
    neg,
    power,
    relu,
    rsqrt,
    scan,
    sigmoid,
    silu,
    softplus,
    sqrt,
    square,
    sub,
    sum,
    tanh,
    where,
)
from ssmc.dsl.layer import Layer, layer
from ssmc.dsl.trace import In, Param, Value

__all__ = [
    "In", "Layer", "Param", "Value", "abs", "add", "cast", "conv", "discretize", "div", "eq", "exp",
    "exp2", "expm1", "final_state", "gate", "gelu", "layer", "log", "log1p", "maximum", "mean",
    "minimum", "mul", "neg", "power", "relu", "rsqrt", "scan", "sigmoid", "silu", "softplus",
    "sqrt", "square", "sub", "sum", "tanh", "where",
]
