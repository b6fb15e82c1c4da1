"""``@ssmc.layer``: a traced layer, its argument checking, and running it in the interpreter."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ssmc.dsl import init as initializers
from ssmc.dsl.trace import ArgSpec, trace
from ssmc.errors import ArgumentError
from ssmc.ir.dims import Dims
from ssmc.ir.node import Graph
from ssmc.ir.printer import format_graph

_DTYPE_NAMES = {
    "float64": "f64",
    "torch.float64": "f64",
    "float32": "f32",
    "torch.float32": "f32",
    "bfloat16": "bf16",
    "torch.bfloat16": "bf16",
    "float16": "f16",
    "torch.float16": "f16",
}
_LONG = {"f64": "float64", "f32": "float32", "bf16": "bfloat16", "f16": "float16"}


def dtype_name(x: Any) -> str:
    """Canonical short name of an array's or tensor's dtype ('f32', 'bf16', ...; else its str)."""
    s = str(x.dtype)
    return _DTYPE_NAMES.get(s, s)


class Layer:
    """A traced SSM layer. ``graph`` is its IR; calling it runs the NumPy interpreter."""

    def __init__(self, fn: Callable[..., Any], name: str, sizes: dict[str, int] | None) -> None:
        self.fn = fn
        self.name = name
        self.graph: Graph
        self.graph, self.specs, self.optional = trace(fn, name, sizes)
        self.fixed_sizes = dict(sizes or {})
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    @classmethod
    def from_graph(cls, graph: Graph, specs: dict, optional: set, fixed_sizes: dict | None = None) -> Layer:
        """A layer from an IR graph made by the compiler (a backward), not traced from Python."""
        self = cls.__new__(cls)
        self.fn = None
        self.name = graph.name
        self.graph, self.specs, self.optional = graph, dict(specs), set(optional)
        self.fixed_sizes = dict(fixed_sizes or {})
        self.__doc__ = f"generated layer {graph.name}"
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}: {v!r}" for k, v in self.specs.items())
        return f"<ssmc layer {self.name}({args})>"

    @property
    def dim_order(self) -> Dims:
        return self.graph.dim_order

    @property
    def inputs(self) -> list[str]:
        return [k for k, s in self.specs.items() if s.kind == "input"]

    @property
    def params(self) -> list[str]:
        return [k for k, s in self.specs.items() if s.kind == "param"]

    def show(self) -> str:
        return format_graph(self.graph)

    # --- arguments -------------------------------------------------------------------------

    def collect(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Positional and keyword arguments -> {name: value}; missing/extra ones are errors."""
        names = list(self.specs)
        if len(args) > len(names):
            raise ArgumentError(f"{self.name}: takes {len(names)} arguments, got {len(args)}")
        out = dict(zip(names, args))
        for k, v in kwargs.items():
            if k not in self.specs:
                raise ArgumentError(
                    f"{self.name}: unexpected argument `{k}`; the layer takes {', '.join(names)}"
                )
            if k in out:
                raise ArgumentError(f"{self.name}: argument `{k}` given twice")
            out[k] = v
        for k in names:
            if out.get(k) is None:
                if k in self.optional:
                    out[k] = None
                else:
                    raise ArgumentError(
                        f"{self.name}: missing argument `{k}` {list(self.specs[k].layout)}"
                    )
        return out

    def bind(self, values: Mapping[str, Any], accept: tuple[str, ...] = ("f64", "f32", "bf16", "f16")) -> dict[str, int]:
        """Check every argument's rank, sizes and dtype; return the size of every dim."""
        sizes: dict[str, int] = dict(self.fixed_sizes)
        where: dict[str, str] = {d: "the layer's fixed sizes" for d in sizes}
        # parameters first: they fix the model's sizes, so a message names the input that
        # disagrees with them ("argument `B` has N=17 but `A_log` has N=16")
        ordered = sorted(self.specs.items(), key=lambda kv: kv[1].kind != "param")
        for name, spec in ordered:
            v = values.get(name)
            if v is None:
                continue
            shape = getattr(v, "shape", None)
            if shape is None:
                raise ArgumentError(
                    f"{self.name}: argument `{name}` is a {type(v).__name__}, not an array/tensor"
                )
            if len(shape) != len(spec.layout):
                raise ArgumentError(
                    f"{self.name}: argument `{name}` has rank {len(shape)} (shape "
                    f"{tuple(shape)}) but is declared {list(spec.layout)}"
                )
            dt = dtype_name(v)
            if dt not in accept:
                ok = ", ".join(_LONG[a] for a in accept)
                raise ArgumentError(
                    f"{self.name}: argument `{name}` has dtype {v.dtype}; accepted: {ok}"
                )
            for d, n in zip(spec.layout, shape):
                n = int(n)
                if d in sizes and sizes[d] != n:
                    raise ArgumentError(
                        f"{self.name}: argument `{name}` has {d}={n} but {where[d]} has "
                        f"{d}={sizes[d]}"
                    )
                if d not in sizes:
                    sizes[d] = n
                    where[d] = f"`{name}`"
        missing = [d for d in self.dim_order if d not in sizes]
        if missing:
            raise ArgumentError(
                f"{self.name}: the size of dims {missing} is not given by any passed argument"
            )
        return sizes

    # --- running ---------------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, np.ndarray]:
        """Run the NumPy interpreter (float64). Arrays or CPU tensors in; float64 arrays out,
        each output's axes in the layer's canonical dim order."""
        from ssmc.ops.interpret import run

        values = self.collect(args, kwargs)
        sizes = self.bind(values)
        arrays = {k: _to_numpy(v) for k, v in values.items() if v is not None}
        return run(self.graph, arrays, sizes)

    def output_dims(self) -> dict[str, Dims]:
        return {k: v.dims for k, v in self.graph.outputs}

    def init_params(self, sizes: Mapping[str, int], seed: int = 0) -> dict[str, np.ndarray]:
        """Initial values of every parameter (float64, declared layout) for these sizes."""
        rng = np.random.default_rng(seed)
        out = {}
        for name, spec in self.specs.items():
            if spec.kind == "param":
                shape = tuple(_size(self, sizes, d, name) for d in spec.layout)
                out[name] = np.asarray(initializers.resolve(spec.init)(shape, rng), dtype=np.float64)
        return out

    def random_inputs(
        self, sizes: Mapping[str, int], seed: int = 0, optional: bool = False
    ) -> dict[str, np.ndarray]:
        """Random inputs (float64, declared layout; N(0, 1) unless the input names its draw)
        plus initialised parameters;
        optional arguments too when ``optional``."""
        rng = np.random.default_rng(seed)
        out = {}
        for name, spec in self.specs.items():
            if spec.kind == "input" and (optional or name not in self.optional):
                shape = tuple(_size(self, sizes, d, name) for d in spec.layout)
                draw = initializers.resolve(spec.init) if spec.init is not None else None
                out[name] = rng.standard_normal(shape) if draw is None else np.asarray(draw(shape, rng), dtype=np.float64)
        out.update(self.init_params(sizes, seed + 1))
        return out


def _size(layer: Layer, sizes: Mapping[str, int], d: str, name: str) -> int:
    if d in layer.fixed_sizes:
        return layer.fixed_sizes[d]
    if d not in sizes:
        raise ArgumentError(f"{layer.name}: no size given for dim {d} of `{name}`")
    return int(sizes[d])


def _to_numpy(v: Any) -> np.ndarray:
    if isinstance(v, np.ndarray):
        return v.astype(np.float64)
    if hasattr(v, "detach"):  # a torch tensor
        return v.detach().to("cpu").double().numpy()
    return np.asarray(v, dtype=np.float64)


def layer(fn: Callable[..., Any] | None = None, *, name: str | None = None, sizes: dict[str, int] | None = None):
    """Decorator: trace ``fn`` into an ssmc ``Layer``.

    ``sizes`` fixes some dims' sizes (e.g. ``{"N": 16}``); the others are bound at call time."""

    def deco(f: Callable[..., Any]) -> Layer:
        return Layer(f, name or f.__name__, sizes)

    return deco(fn) if fn is not None else deco


__all__ = ["ArgSpec", "Layer", "dtype_name", "layer"]
