"""A layer as a ``torch.nn.Module``: parameters registered under their DSL names and
initialized by the layer's initializers; ``forward`` runs the generated kernels.

Forward only for now: gradients need generated backward kernels (issue 5). Calling backward
through the module raises an error that says so; it never returns made-up gradients."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ssmc.dsl.layer import Layer


class _NoBackward(torch.autograd.Function):
    """Identity on the outputs that refuses to differentiate through the kernels."""

    @staticmethod
    def forward(ctx, name: str, *tensors: torch.Tensor):
        ctx.layer_name = name
        return tuple(t.view_as(t) for t in tensors)

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError(
            f"ssmc: {ctx.layer_name}: gradients through generated kernels are not built yet "
            "(backward kernels are issue 5's work); use the module under torch.no_grad()"
        )


class SSMModule(torch.nn.Module):
    """``forward(**inputs, cu_seqlens=None)`` takes the layer's input tensors (batch first,
    declared layouts) and returns its named outputs as a dict."""

    def __init__(self, layer: Layer, sizes: Mapping[str, int], seed: int = 0, **compile_options: Any) -> None:
        super().__init__()
        from ssmc.backends.triton.jit import CompiledLayer

        self.layer = layer
        self.compiled = CompiledLayer(layer, **compile_options)
        for name, value in layer.init_params(sizes, seed).items():
            self.register_parameter(name, torch.nn.Parameter(torch.tensor(value, dtype=torch.float32)))

    def extra_repr(self) -> str:
        return f"layer={self.layer.name}"

    def forward(self, *args: Any, cu_seqlens: torch.Tensor | None = None, **inputs: Any) -> dict[str, torch.Tensor]:
        params = {name: p for name, p in self.named_parameters(recurse=False)}
        clash = sorted(set(params) & set(inputs))
        if clash:
            raise TypeError(f"{self.layer.name}: {clash} are the module's parameters, not inputs")
        with torch.no_grad():
            out = self.compiled(*args, **inputs, **{k: p.detach() for k, p in params.items()}, cu_seqlens=cu_seqlens)
        needs_grad = torch.is_grad_enabled() and (
            any(p.requires_grad for p in params.values())
            or any(isinstance(v, torch.Tensor) and v.requires_grad for v in list(inputs.values()) + list(args))
        )
        if not needs_grad:
            return out
        names = list(out)
        tracked = [p for p in params.values() if p.requires_grad]
        wrapped = _NoBackward.apply(self.layer.name, *[out[k] for k in names], *tracked)
        return dict(zip(names, wrapped[: len(names)]))


def to_module(layer: Layer, sizes: Mapping[str, int], seed: int = 0, **compile_options: Any) -> SSMModule:
    """``layer`` as an ``nn.Module`` whose parameters have the shapes ``sizes`` gives."""
    return SSMModule(layer, sizes, seed, **compile_options)
