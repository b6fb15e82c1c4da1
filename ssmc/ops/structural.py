"""Args, constants, reductions, discretize, gate and the scan: one registry entry each."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ssmc.errors import DefinitionError
from ssmc.ir import dtypes
from ssmc.ir.dims import Dims, union
from ssmc.ops.registry import REDUCE, SCAN, STRUCTURAL, OpDef, register

DISCRETIZE_METHODS = ("zoh", "zoh_euler", "bilinear", "euler")
GATE_ACTS = ("silu", "sigmoid", "gelu", "tanh", "relu", "identity")

# --- args and constants ------------------------------------------------------------------


def _arg_rule(dims, dts, attrs, order):
    return tuple(attrs["dims"]), dtypes.FLOAT


def _const_rule(dims, dts, attrs, order):
    if not isinstance(attrs.get("value"), float):
        raise DefinitionError(f"constant {attrs.get('value')!r} must be a float")
    return (), dtypes.FLOAT


register(
    OpDef(
        "arg",
        STRUCTURAL,
        0,
        _arg_rule,
        lambda value: np.asarray(value, dtype=np.float64),
        "structural",
        "a layer argument (input tensor or parameter), bound at call time",
        attrs=("name", "kind", "dims"),
    )
)
register(
    OpDef(
        "const",
        STRUCTURAL,
        0,
        _const_rule,
        lambda value: np.float64(value),
        "structural",
        "a scalar constant",
        attrs=("value",),
    )
)



def _prev_rule(dims, dts, attrs, order):
    axis = attrs.get("axis")
    if axis not in dims[0]:
        raise DefinitionError(f"`prev` along {axis!r}: the value's dims are {list(dims[0])}")
    if len(dims) == 2 and any(d not in dims[0] or d == axis for d in dims[1]):
        raise DefinitionError(f"`prev` fill {list(dims[1])} has dims the state {list(dims[0])} lacks")
    return dims[0], dtypes.FLOAT


def _prev_numpy(x, fill, axis, reverse):
    """The value one step before along ``axis`` in the scan's direction: x[t-1] (x[t+1] if
    ``reverse``), ``fill`` (or 0) at the first step. Of a scan's states: the state before step t."""
    x = np.moveaxis(x, axis, 0)
    out = np.empty(x.shape)
    first = np.zeros(x.shape[1:]) if fill is None else np.broadcast_to(fill, x.shape[1:])
    if x.shape[0]:
        if reverse:
            out[:-1], out[-1] = x[1:], first
        else:
            out[1:], out[0] = x[:-1], first
    return np.moveaxis(out, 0, axis)


register(
    OpDef(
        "prev",
        SCAN,
        -1,
        _prev_rule,
        _prev_numpy,
        "structural",
        "a scan's state before each step (x shifted one step along the axis, fill first): "
        "inputs (x) or (x, fill); made by autodiff, lowered only next to the scan of x",
        ("any", "any"),
        attrs=("axis", "reverse"),
    )
)

# --- reductions --------------------------------------------------------------------------


def _reduce_rule(name: str):
    def rule(dims, dts, attrs, order):
        d = attrs.get("dim")
        if d not in dims[0]:
            raise DefinitionError(f"`{name}` over {d!r}: the value's dims are {list(dims[0])}")
        if not dtypes.is_float(dts[0]):
            raise DefinitionError(f"`{name}` needs a float value, got {dts[0]}")
        return tuple(x for x in dims[0] if x != d), dtypes.FLOAT

    return rule


register(
    OpDef(
        "sum",
        REDUCE,
        1,
        _reduce_rule("sum"),
        lambda x, axis: np.sum(x, axis=axis),
        "structural",
        "sum over a named dim",
        attrs=("dim",),
    )
)
register(
    OpDef(
        "mean",
        REDUCE,
        1,
        _reduce_rule("mean"),
        lambda x, axis: np.mean(x, axis=axis),
        "structural",
        "mean over a named dim",
        attrs=("dim",),
    )
)

# --- discretize --------------------------------------------------------------------------


def _discretize_rule(dims, dts, attrs, order):
    method, part = attrs.get("method"), attrs.get("part")
    if method not in DISCRETIZE_METHODS:
        raise DefinitionError(f"discretize method {method!r}: use one of {DISCRETIZE_METHODS}")
    if part not in ("A", "B"):
        raise DefinitionError(f"discretize part {part!r}: 'A' or 'B'")
    a, b, delta = dims
    if part == "A":
        return union(order, a, delta), dtypes.FLOAT
    if method in ("zoh", "bilinear"):
        return union(order, a, b, delta), dtypes.FLOAT
    return union(order, b, delta), dtypes.FLOAT


def _discretize_numpy(A, B, delta, method, part):
    """Continuous (A, B) with step delta -> discrete (Abar, Bbar), diagonal A (DESIGN.md).
    An operand the part does not use may be None (Abar reads no B; Euler-type Bbar no A)."""
    if method in ("zoh_euler", "euler") and part == "B":
        return delta * B
    dA = delta * A
    if method == "zoh":
        if part == "A":
            return np.exp(dA)
        safe_A = np.where(A == 0, 1.0, A)
        return np.where(A == 0, delta, np.expm1(dA) / safe_A) * B
    if method == "zoh_euler":
        return np.exp(dA) if part == "A" else delta * B
    if method == "bilinear":
        if part == "A":
            return (1 + dA / 2) / (1 - dA / 2)
        return delta / (1 - dA / 2) * B
    return 1 + dA if part == "A" else delta * B  # euler


register(
    OpDef(
        "discretize",
        STRUCTURAL,
        3,
        _discretize_rule,
        _discretize_numpy,
        None,
        "continuous A, B and step delta to Abar (part A) or Bbar (part B); expanded by a pass",
        ("nonpositive", "any", "nonneg"),
        attrs=("method", "part"),
    )
)

# --- gate --------------------------------------------------------------------------------


def _gate_rule(dims, dts, attrs, order):
    if attrs.get("act") not in GATE_ACTS:
        raise DefinitionError(f"gate activation {attrs.get('act')!r}: use one of {GATE_ACTS}")
    return union(order, *dims), dtypes.FLOAT


def _gate_numpy(y, z, act):
    erf = np.vectorize(math.erf, otypes=[np.float64])
    e = np.exp(-np.abs(z))
    sig = np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    f = {
        "silu": lambda: z * sig,
        "sigmoid": lambda: sig,
        "gelu": lambda: 0.5 * z * (1.0 + erf(z / math.sqrt(2.0))),
        "tanh": lambda: np.tanh(z),
        "relu": lambda: np.maximum(z, 0.0),
        "identity": lambda: z,
    }[act]()
    return y * f


register(
    OpDef(
        "gate",
        STRUCTURAL,
        2,
        _gate_rule,
        _gate_numpy,
        None,
        "y * act(z); expanded into elementwise ops by canonicalize",
        attrs=("act",),
    )
)

# --- scan --------------------------------------------------------------------------------


def _scan_dims(dims: tuple[Dims, ...], attrs: dict[str, Any], order: Dims, name: str) -> Dims:
    axis = attrs.get("axis")
    out = union(order, dims[0], dims[1])
    if axis not in out:
        raise DefinitionError(
            f"`{name}` along {axis!r}: neither a {list(dims[0])} nor b {list(dims[1])} has it"
        )
    if len(dims) == 3:
        state = tuple(d for d in out if d != axis)
        extra = [d for d in dims[2] if d not in state]
        if extra:
            raise DefinitionError(
                f"`{name}` initial state has dims {extra} that the state {list(state)} lacks"
            )
    return out


def _complex_check(dims: tuple[Dims, ...], attrs: dict[str, Any], name: str) -> None:
    """A complex scan (attribute ``complex``: the dim of size 2 holding the real and imaginary
    parts) needs that dim on every operand and not as the axis."""
    c = attrs.get("complex")
    if c is None:
        return
    if c == attrs.get("axis"):
        raise DefinitionError(f"`{name}`: the complex parts' dim {c!r} cannot be the scan axis")
    for what, ds in zip(("a", "b", "h0"), dims):
        if c not in ds:
            raise DefinitionError(
                f"`{name}` is complex along {c!r} but {what} {list(ds)} lacks it (give both parts)"
            )


def _scan_rule(dims, dts, attrs, order):
    if any(not dtypes.is_float(d) for d in dts):
        raise DefinitionError("`scan` operands must be float values")
    _complex_check(dims, attrs, "scan")
    return _scan_dims(dims, attrs, order, "scan"), dtypes.FLOAT


def _scan_final_rule(dims, dts, attrs, order):
    _complex_check(dims, attrs, "scan_final")
    out = _scan_dims(dims, attrs, order, "scan_final")
    if tuple(attrs.get("full_dims", ())) != out:
        raise DefinitionError(f"`scan_final` full_dims {attrs.get('full_dims')} != {list(out)}")
    return tuple(d for d in out if d != attrs["axis"]), dtypes.FLOAT


def _to_complex(x: np.ndarray, part_axis: int) -> np.ndarray:
    """The complex array whose real and imaginary parts are ``x``'s two slices along ``part_axis``."""
    x = np.moveaxis(x, part_axis, -1)
    return x[..., 0] + 1j * x[..., 1]


def _from_complex(z: np.ndarray, part_axis: int) -> np.ndarray:
    return np.moveaxis(np.stack([z.real, z.imag], axis=-1), -1, part_axis)


def _scan_numpy(a, b, h0, axis, reverse, complex_axis=None):
    """h[t] = a[t] * h[t-1] + b[t] along ``axis`` (from the end if ``reverse``), h[-1] = h0.

    a, b: broadcast to the state's full shape; h0: the state without ``axis`` (or None = 0).
    ``complex_axis``: the axis (of a, b) of size 2 holding real and imaginary parts; the
    products are then complex (h0's parts on the same dim). Returns every h[t]."""
    a, b = np.broadcast_arrays(a, b)
    if complex_axis is not None:
        if h0 is not None:  # h0 lacks ``axis``: its parts' axis is one less past it
            state = a.shape[:axis] + a.shape[axis + 1 :]
            h0 = _to_complex(np.broadcast_to(h0, state), complex_axis - (complex_axis > axis))
        a, b = _to_complex(a, complex_axis), _to_complex(b, complex_axis)
        out = _scan_numpy(a, b, h0, axis - (axis > complex_axis), reverse)
        return _from_complex(out, complex_axis)
    a = np.moveaxis(a, axis, 0)
    b = np.moveaxis(b, axis, 0)
    h = np.zeros(a.shape[1:], a.dtype) if h0 is None else np.broadcast_to(h0, a.shape[1:]).astype(a.dtype)
    out = np.empty(a.shape, a.dtype)
    steps = range(a.shape[0] - 1, -1, -1) if reverse else range(a.shape[0])
    for t in steps:
        h = a[t] * h + b[t]
        out[t] = h
    return np.moveaxis(out, 0, axis)


def _scan_final_numpy(a, b, h0, axis, reverse, complex_axis=None):
    """The state after the last step of the scan (h0, or 0, when the axis is empty)."""
    a, b = np.broadcast_arrays(a, b)
    shape = a.shape[:axis] + a.shape[axis + 1 :]
    if a.shape[axis] == 0:
        return np.zeros(shape) if h0 is None else np.broadcast_to(h0, shape).astype(float)
    h = _scan_numpy(a, b, h0, axis, reverse, complex_axis)
    return np.take(h, 0 if reverse else a.shape[axis] - 1, axis=axis)


register(
    OpDef(
        "scan",
        SCAN,
        -1,
        _scan_rule,
        _scan_numpy,
        "structural",
        "h[t] = a[t] * h[t-1] + b[t] along a named axis; inputs (a, b) or (a, b, h0)",
        ("unit", "any", "any"),
        attrs=("axis", "reverse"),
    )
)
register(
    OpDef(
        "scan_final",
        SCAN,
        -1,
        _scan_final_rule,
        _scan_final_numpy,
        "structural",
        "the final state of the scan with the same operands and attributes",
        ("unit", "any", "any"),
        attrs=("axis", "reverse", "full_dims"),
    )
)

# --- complex values: a dim of two parts -------------------------------------------------------
# A complex value is a real one with a dim of size 2 (real part, imaginary part), the layout of
# torch.view_as_real; ``stack`` builds one from its parts, ``part`` takes one out. With them and
# the elementwise ops, complex products are written out (autodiff's rule for complex scans).


def _stack_rule(dims, dts, attrs, order):
    d = attrs.get("dim")
    if d not in order:
        raise DefinitionError(f"`stack` along {d!r}: not one of the layer's dims {list(order)}")
    for i, ds in enumerate(dims):
        if d in ds:
            raise DefinitionError(f"`stack` along {d!r}: operand {i} {list(ds)} already has it")
    if any(not dtypes.is_float(t) for t in dts):
        raise DefinitionError("`stack` operands must be float values")
    return union(order, *dims, (d,)), dtypes.FLOAT


def _part_rule(dims, dts, attrs, order):
    d, i = attrs.get("dim"), attrs.get("index")
    if d not in dims[0]:
        raise DefinitionError(f"`part` {i} along {d!r}: the value's dims are {list(dims[0])}")
    if i not in (0, 1):
        raise DefinitionError(f"`part` index {i!r}: 0 (real) or 1 (imaginary)")
    return tuple(x for x in dims[0] if x != d), dtypes.FLOAT


register(
    OpDef(
        "stack",
        STRUCTURAL,
        2,
        _stack_rule,
        lambda x0, x1, axis: np.concatenate([x0, x1], axis=axis),
        "structural",
        "the value whose dim ``dim`` (size 2) holds x0 then x1: a complex value from its parts",
        ("any", "any"),
        derivative=lambda b, xs, y, g, dim: (b.part(g, dim=dim, index=0), b.part(g, dim=dim, index=1)),
        attrs=("dim",),
    )
)
register(
    OpDef(
        "part",
        STRUCTURAL,
        1,
        _part_rule,
        lambda x, axis, index: np.take(x, index, axis=axis),
        "structural",
        "x at index ``index`` of its dim ``dim``: the real (0) or imaginary (1) part",
        ("any",),
        derivative=lambda b, xs, y, g, dim, index: (
            b.stack(*((g, b.mul(b.c(0.0), g)) if index == 0 else (b.mul(b.c(0.0), g), g)), dim=dim),
        ),
        attrs=("dim", "index"),
    )
)

# --- the matrix scan (made by a pass, not written by users) --------------------------------


def _matrix_dims(dims, attrs, name: str) -> Dims:
    """The full state's dims (``full_dims``: with the axis) after checking the operands."""
    axis, kd, vd = attrs.get("axis"), attrs.get("kdim"), attrs.get("vdim")
    full = tuple(attrs.get("full_dims", ()))
    ld, v, k, q = dims[:4]
    if axis not in full or kd not in full or vd not in full or kd == vd:
        raise DefinitionError(f"`{name}`: full_dims {list(full)} must hold the axis {axis!r}, kdim {kd!r} and vdim {vd!r}")
    if set(union(full, *dims[:4])) != set(full):
        raise DefinitionError(f"`{name}`: operands have dims outside full_dims {list(full)}")
    if kd in ld or vd in ld or kd in v or vd in k or vd in q:
        raise DefinitionError(
            f"`{name}`: the log-decay lacks {kd!r} and {vd!r}, v lacks {kd!r}, k and q lack {vd!r}; "
            f"got {list(ld)}, {list(v)}, {list(k)}, {list(q)}"
        )
    if len(dims) == 5 and any(d not in full or d == axis for d in dims[4]):
        raise DefinitionError(f"`{name}` initial state has dims {list(dims[4])} outside the state {list(full)}")
    return full


def _matrix_scan_rule(dims, dts, attrs, order):
    full = _matrix_dims(dims, attrs, "matrix_scan")
    summed = tuple(attrs.get("sum_dims", ()))
    heads = [d for d in full if d not in (attrs["axis"], attrs["kdim"], attrs["vdim"])]
    if any(d not in heads for d in summed) or len(set(summed)) != len(summed):
        raise DefinitionError(f"`matrix_scan`: sum_dims {list(summed)} must be distinct head dims, of {heads}")
    return tuple(d for d in full if d != attrs["kdim"] and d not in summed), dtypes.FLOAT


def _matrix_final_rule(dims, dts, attrs, order):
    full = _matrix_dims(dims, attrs, "matrix_scan_final")
    return tuple(d for d in full if d != attrs["axis"]), dtypes.FLOAT


def _matrix_states(ld, v, k, h0, axis, reverse):
    """Every state S[t] of the matrix scan (operands broadcast to the full state, axis
    ``axis``) and the final one. Forward: S[t] = exp(ld[t]) S[t-1] + v[t] k[t], S[-1] = h0.
    Reverse: S[t] = exp(ld[t+1]) S[t+1] + v[t] k[t] from the end, h0 entering the last step
    undecayed; its final state is exp(ld[0]) S[0] (the state one step before the start)."""
    ld, vk = np.broadcast_arrays(ld, v * k)
    ld, vk = np.moveaxis(ld, axis, 0), np.moveaxis(vk, axis, 0)
    T = ld.shape[0]
    S = np.zeros(ld.shape[1:]) if h0 is None else np.broadcast_to(h0, ld.shape[1:]).astype(float)
    out = np.empty(ld.shape)
    if not reverse:
        for t in range(T):
            S = np.exp(ld[t]) * S + vk[t]
            out[t] = S
    else:
        for t in range(T - 1, -1, -1):
            S = (np.exp(ld[t + 1]) * S if t + 1 < T else S) + vk[t]
            out[t] = S
        if T:
            S = np.exp(ld[0]) * S
    return np.moveaxis(out, 0, axis), S


def _matrix_scan_numpy(ld, v, k, q, h0, axis, kaxis, reverse, sum_axes=()):
    """y[t] = sum over kdim (axis ``kaxis`` of the full state) of S[t] * q[t]; then summed
    over the head axes ``sum_axes`` (of the full state)."""
    states, _ = _matrix_states(ld, v, k, h0, axis, reverse)
    return np.sum(states * q, axis=(kaxis, *sum_axes))


def _matrix_final_numpy(ld, v, k, q, h0, axis, kaxis, reverse):
    return _matrix_states(ld, v, k, h0, axis, reverse)[1]


_MATRIX_ATTRS = ("axis", "kdim", "vdim", "reverse", "full_dims")
register(
    OpDef(
        "matrix_scan",
        SCAN,
        -1,
        _matrix_scan_rule,
        _matrix_scan_numpy,
        "structural",
        "a scan whose decay is exp(ld) along the axis (ld lacks kdim and vdim), whose input is "
        "v (lacking kdim) times k (lacking vdim), read out by a sum over kdim of the state times "
        "q: inputs (ld, v, k, q) or (ld, v, k, q, h0); made by the form_matrix_scans pass (the "
        "chunked matrix form's op, and its derivative's); optional attribute sum_dims: head dims "
        "the result is summed over (a derivative's, for an operand broadcast along them)",
        ("any", "any", "any", "any", "any"),
        attrs=_MATRIX_ATTRS,
    )
)
register(
    OpDef(
        "matrix_scan_final",
        SCAN,
        -1,
        _matrix_final_rule,
        _matrix_final_numpy,
        "structural",
        "the final state of the matrix scan with the same operands and attributes",
        ("any", "any", "any", "any", "any"),
        attrs=_MATRIX_ATTRS,
    )
)


# --- the decay's gradient of a matrix scan (made by autodiff's matrix_vjp) ---------------------


def _matrix_dl_rule(dims, dts, attrs, order):
    if len(dims) != 5 + bool(attrs.get("with_h0")) + bool(attrs.get("with_gf")):
        raise DefinitionError("`matrix_scan_dl`: inputs (ld, v, k, q, dy), then h0 if with_h0, then gf if with_gf")
    full = _matrix_dims(dims[:4], attrs, "matrix_scan_dl")
    if any(d not in full or d == attrs["kdim"] for d in dims[4]):
        raise DefinitionError(f"`matrix_scan_dl`: dy has dims {list(dims[4])}; it lacks kdim, within {list(full)}")
    return tuple(d for d in full if d not in (attrs["kdim"], attrs["vdim"])), dtypes.FLOAT


def _matrix_dl_numpy(ld, v, k, q, dy, h0, gf, axis, kaxis, vaxis, reverse):
    """The derivative of sum(dy * y) + sum(gf * F) (y, F: the matrix scan's outputs and final
    state) with respect to each step's log-decay: the step's decay times the inner product of
    the state it decays and the cotangent of the state it makes. Forward: dl[i] = exp(ld[i])
    <S[i-1], G[i]> with S[-1] = h0 and G the cotangents of the states, the reverse scan of
    dy q from gf; reverse: dl[i] = exp(ld[i]) <S[i], G[i-1]>, G the forward scan of dy q from
    gf (G[-1] = gf, the final state's, which the decay of step 0 makes)."""
    S, _ = _matrix_states(ld, v, k, h0, axis, reverse)
    G, _ = _matrix_states(ld, dy, q, gf, axis, not reverse)
    ld = np.broadcast_to(ld, S.shape)
    S, G, ld = (np.moveaxis(x, axis, 0) for x in (S, G, ld))

    def shifted(x, first):  # x one step later in time: first (zero if None), x[0], .., x[-2]
        head = np.zeros_like(x[:1]) if first is None else np.broadcast_to(first, x.shape[1:])[None].astype(float)
        return np.concatenate([head, x[:-1]])

    pair = shifted(S, h0) * G if not reverse else S * shifted(G, gf)
    out = np.exp(ld) * pair
    out = np.moveaxis(out, 0, axis)
    return np.sum(out, axis=(kaxis, vaxis))


register(
    OpDef(
        "matrix_scan_dl",
        SCAN,
        -1,
        _matrix_dl_rule,
        _matrix_dl_numpy,
        "structural",
        "the gradient of a matrix scan's log-decay, per step: inputs (ld, v, k, q) and attributes "
        "as the matrix scan's, dy (the outputs' cotangent), h0 (with_h0), gf (with_gf, the final "
        "state's cotangent); summed as products of states, with no cancellation (matrix_vjp)",
        ("any",) * 7,
        attrs=_MATRIX_ATTRS + ("with_h0", "with_gf"),
    )
)
