"""Named dims and their symbolic sizes.

A dim is a name (``"B"``, ``"L"``, ``"D"``, ``"N"``). Its size is a sympy symbol of the same
name, bound to an integer when a layer is called. A layer keeps one canonical order of its dims
(the order in which they first appear in its declared arguments); every value's dims are listed
in that order, so broadcasting by name is alignment to one order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import sympy

Dims = tuple[str, ...]


def size_symbol(dim: str) -> sympy.Symbol:
    """The symbolic size of ``dim``: a positive integer symbol named after it."""
    return sympy.Symbol(dim, integer=True, positive=True)


def parse_dims(spec: str | Iterable[str]) -> Dims:
    """``"B L D"`` or ``"B, L, D"`` or ``["B", "L", "D"]`` -> ``("B", "L", "D")``."""
    if isinstance(spec, str):
        names = spec.replace(",", " ").split()
    else:
        names = [str(d) for d in spec]
    for n in names:
        if not n.isidentifier() or n.startswith("_"):
            raise ValueError(f"dim name {n!r} must be an identifier not starting with '_'")
    if len(set(names)) != len(names):
        raise ValueError(f"dims {names} repeat a name")
    return tuple(names)


def in_order(dims: Iterable[str], order: Dims) -> Dims:
    """The dims of ``dims`` listed in the canonical ``order``."""
    s = set(dims)
    missing = s - set(order)
    if missing:
        raise ValueError(f"dims {sorted(missing)} are not in the layer's dims {order}")
    return tuple(d for d in order if d in s)


def union(order: Dims, *dim_sets: Iterable[str]) -> Dims:
    """Union of dim sets, in canonical order (broadcasting by name)."""
    s: set[str] = set()
    for ds in dim_sets:
        s.update(ds)
    return in_order(s, order)


def numel(dims: Dims, sizes: Mapping[str, int] | None = None) -> sympy.Expr | int:
    """Number of elements of a value with ``dims``: symbolic, or an int when sizes are given."""
    expr = sympy.Mul(*[size_symbol(d) for d in dims]) if dims else sympy.Integer(1)
    if sizes is None:
        return expr
    return int(expr.subs({size_symbol(d): sizes[d] for d in dims}))
