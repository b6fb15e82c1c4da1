"""Compiled layers as ``torch.library`` operators, so models holding them run under
``torch.compile(fullgraph=True)`` without a graph break and export with ``torch.export``.

Each compiled layer defines two ops in the ``ssmc`` namespace, named after the layer, its IR
hash and a counter: the forward (the layer's arguments, ``Tensor?`` where optional, plus ``cu_seqlens``
and the names of the outputs asked for, all by default; returns those outputs in order) and the backward (the same arguments plus one cotangent per
output; returns a gradient per given argument). Both have fake implementations (shapes and
dtypes from the layer's dims), and the forward's autograd formula calls the backward op, so the
backward is traced too. The kernels behind them are the same generated Triton kernels.
"""

from __future__ import annotations

from typing import Any

import torch

from ssmc.ir.printer import graph_hash

_LIB = torch.library.Library("ssmc", "FRAGMENT")
_OPS: dict[str, Any] = {}


def _out_shapes(compiled: Any, values: dict[str, Any], cu_seqlens: Any) -> list[tuple[list[int], torch.dtype]]:
    """(shape, dtype) of each output, from the arguments' shapes (real or fake tensors)."""
    layer = compiled.layer
    sizes = layer.bind({k: v for k, v in values.items() if v is not None}, accept=("f32", "bf16", "f16"))
    if cu_seqlens is not None:  # a packed batch: sequence outputs are one row, states per sequence
        batch, axis = layer.dim_order[0], compiled.graph.scan_axis()
        seq = {**sizes, batch: cu_seqlens.shape[0] - 1}
    first = next(v for k, v in values.items() if v is not None and layer.specs[k].kind == "input")
    out = []
    for name, node in compiled.graph.outputs:
        dims = node.dims
        if cu_seqlens is not None and axis not in dims:
            shape = [seq[d] for d in dims]
        else:
            shape = [sizes[d] for d in dims]
        dtype = torch.float32 if name in compiled.finals else compiled.out_dtype(first.dtype)
        out.append((shape, dtype))
    return out


def forward_op(compiled: Any) -> Any:
    """The ``torch.ops.ssmc.<layer>_<hash>`` op of ``compiled`` (defined on first use)."""
    layer = compiled.layer
    # one op per compiled layer: two compilations of a layer may differ in their options
    name = f"{layer.name}_{graph_hash(compiled.graph)}_{len(_OPS)}"
    names = list(layer.specs)
    outs = compiled.output_names()
    params = ", ".join(f"Tensor{'?' if k in layer.optional else ''} {k}" for k in names)
    _LIB.define(f"{name}({params}, Tensor? cu_seqlens, str[] outputs) -> Tensor[]")
    grads = ", ".join(f"Tensor? grad_{k}" for k in outs)
    _LIB.define(f"{name}_backward({params}, Tensor? cu_seqlens, {grads}) -> Tensor[]")

    def split(args: tuple) -> tuple[dict[str, Any], Any, list[str]]:
        return dict(zip(names, args[: len(names)])), args[len(names)], list(args[len(names) + 1])

    def impl(*args: Any) -> list[torch.Tensor]:
        values, cu, asked = split(args)
        out = compiled.raw_call(cu_seqlens=cu, outputs=asked, **values)
        return [out[k] for k in asked]

    def fake(*args: Any) -> list[torch.Tensor]:
        values, cu, asked = split(args)
        first = next(v for v in values.values() if v is not None)
        shapes = dict(zip(outs, _out_shapes(compiled, values, cu)))
        return [first.new_empty(shapes[k][0], dtype=shapes[k][1]) for k in asked]

    def backward_impl(*args: Any) -> list[torch.Tensor]:
        n = len(names)
        values, cu = dict(zip(names, args[:n])), args[n]
        cots = {f"grad_{k}": g for k, g in zip(outs, args[n + 1 :]) if g is not None}
        from ssmc.export.autograd import gradients

        return [g for g in gradients(compiled, values, cots, cu) if g is not None]

    def backward_fake(*args: Any) -> list[torch.Tensor]:
        return [v.new_empty(v.shape) for v in args[: len(names)] if v is not None]

    for key in ("CPU", "CUDA"):
        _LIB.impl(name, impl, key)
        _LIB.impl(f"{name}_backward", backward_impl, key)
    torch.library.register_fake(f"ssmc::{name}", fake, lib=_LIB)
    torch.library.register_fake(f"ssmc::{name}_backward", backward_fake, lib=_LIB)
    backward = getattr(torch.ops.ssmc, f"{name}_backward")

    def setup_context(ctx: Any, inputs: tuple, output: Any) -> None:
        tensors = inputs[: len(names) + 1]  # the arguments and cu_seqlens (then the outputs asked)
        ctx.save_for_backward(*[v for v in tensors if v is not None])
        ctx.present = [v is not None for v in tensors]
        ctx.asked = split(inputs)[2]
        ctx.no_grad = (None,) * (len(inputs) - len(tensors))  # no gradient for the outputs' names

    def autograd_backward(ctx: Any, grads: list) -> tuple:
        saved = iter(ctx.saved_tensors)
        inputs = [next(saved) if p else None for p in ctx.present]
        cots = dict(zip(ctx.asked, grads))  # none for the outputs not asked
        got = iter(backward(*inputs, *[cots.get(k) for k in outs]))
        return tuple(next(got) if v is not None and i < len(names) else None for i, v in enumerate(inputs)) + ctx.no_grad

    torch.library.register_autograd(f"ssmc::{name}", autograd_backward, setup_context=setup_context, lib=_LIB)
    op = getattr(torch.ops.ssmc, name)
    _OPS[name] = op
    return op


def call_op(compiled: Any, values: dict[str, Any], cu_seqlens: Any, outputs: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
    """``compiled``'s op on ``values``: its outputs (those named in ``outputs``; None: all) by name."""
    if compiled.op is None:
        raise TypeError(f"{compiled.layer.name}: a compiled backward is not differentiable or traceable on its own")
    asked = list(outputs or compiled.output_names())
    return dict(zip(asked, compiled.op(*[values.get(k) for k in compiled.layer.specs], cu_seqlens, asked)))
