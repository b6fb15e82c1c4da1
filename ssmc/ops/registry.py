"""The op registry: one entry per op, carrying every rule the compiler needs for it.

An entry holds
- ``shape``: the result's dims and dtype from the operands' (broadcast by name, reduce a dim);
- ``numpy``: the op's meaning, on float64 NumPy arrays (the interpreter calls it);
- ``triton``: its lowering: an expression template over the operands (``"tl.exp({0})"``) for
  elementwise ops, or ``"structural"`` for ops the code generator lowers by name (scan, sum);
- ``derivative``: the vector-Jacobian rule as IR (filled in by the autograd work; ``None`` until
  then, and the registry test says which ops still lack one);
- ``domain``: per operand, the inputs on which the op is defined (``"any"``, ``"positive"``,
  ``"nonneg"``, ``"nonzero"``), so fuzzers draw valid values.

The NumPy rules and the Triton templates are written separately and share no code, so one bug
cannot pass both sides of a differential test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ssmc.errors import DefinitionError
from ssmc.ir.dims import Dims

# Op groups, as named sets (filled as ops register).
ELEMENTWISE = "elementwise"  # result dims = union of operand dims, computed pointwise
REDUCE = "reduce"  # removes one named dim
SCAN = "scan"  # linear recurrence along a named axis
STRUCTURAL = "structural"  # args, constants, discretize, gate, final state

ShapeRule = Callable[[tuple[Dims, ...], tuple[str, ...], dict[str, Any], Dims], tuple[Dims, str]]


@dataclass(frozen=True)
class OpDef:
    name: str
    group: str
    arity: int  # -1: variable
    shape: ShapeRule
    numpy: Callable[..., Any]
    triton: str | None
    doc: str
    domain: tuple[str, ...] = ()
    derivative: Callable[..., Any] | None = None
    attrs: tuple[str, ...] = ()  # attribute names the op requires
    extra: dict[str, Any] = field(default_factory=dict)


REGISTRY: dict[str, OpDef] = {}
GROUPS: dict[str, set[str]] = {ELEMENTWISE: set(), REDUCE: set(), SCAN: set(), STRUCTURAL: set()}


def register(op: OpDef) -> OpDef:
    if op.name in REGISTRY:
        raise ValueError(f"op {op.name!r} registered twice")
    REGISTRY[op.name] = op
    GROUPS[op.group].add(op.name)
    return op


def get(name: str) -> OpDef:
    try:
        return REGISTRY[name]
    except KeyError:
        raise DefinitionError(f"unknown op `{name}`: not in the op registry") from None
