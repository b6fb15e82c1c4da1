"""Gradients through generated kernels: the backward layer's kernels (``ssmc.autodiff``), which
recompute the states from the arguments instead of saving them."""

from __future__ import annotations

from typing import Any

import torch


def to_layout(g: torch.Tensor, dims: tuple[str, ...], layout: tuple[str, ...], shape: torch.Size, order: tuple[str, ...]) -> torch.Tensor:
    """A gradient with ``dims`` (canonical order; maybe fewer: it is constant along the missing
    ones) as a tensor of the argument's declared ``layout`` and ``shape``."""
    canon = sorted(layout, key=order.index)
    for i, d in enumerate(canon):
        if d not in dims:
            g = g.unsqueeze(i)
    return g.permute([canon.index(d) for d in layout]).expand(shape)


def gradients(compiled: Any, values: dict[str, Any], cots: dict[str, Any], cu_seqlens: Any) -> list[Any]:
    """One gradient per argument of the layer (None where the argument is not given), each in
    the argument's layout, shape and dtype; zeros where no output depends on the argument."""
    layer = compiled.layer
    bwd = compiled.backward_compiled()
    given = {k: v for k, v in values.items() if v is not None}
    # 16-bit arguments' gradients stored as such where the kernels can (Run.result_dtype)
    res = bwd.raw_call(cu_seqlens=cu_seqlens, grads_as_inputs=True, **given, **cots) if cots else {}
    dims = {k: v.dims for k, v in bwd.graph.outputs}
    out = []
    for k in layer.specs:
        v = values.get(k)
        if v is None:
            out.append(None)
            continue
        g = res.get(f"grad_{k}")
        if g is None:
            out.append(torch.zeros_like(v))
        else:
            out.append(to_layout(g, dims[f"grad_{k}"], layer.specs[k].layout, v.shape, layer.dim_order).to(v.dtype).contiguous())
    return out
