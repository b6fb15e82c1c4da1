"""A layer as a ``torch.nn.Module``: parameters registered under their DSL names and
initialized by the layer's initializers; ``forward`` runs the generated kernels.

Gradients flow through the generated backward kernels (``ssmc.export.autograd``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ssmc.dsl.layer import Layer
from ssmc.errors import ArgumentError


class SSMModule(torch.nn.Module):
    """``forward(**inputs, cu_seqlens=None)`` takes the layer's input tensors (batch first,
    declared layouts) and returns its named outputs as a dict."""

    def __init__(self, layer: Layer, sizes: Mapping[str, int], seed: int = 0, **compile_options: Any) -> None:
        super().__init__()
        from ssmc.backends.triton.jit import CompiledLayer

        self.layer = layer
        self.sizes = dict(sizes)
        self.compiled = CompiledLayer(layer, **compile_options)
        for name, value in layer.init_params(sizes, seed).items():
            self.register_parameter(name, torch.nn.Parameter(torch.tensor(value, dtype=torch.float32)))

    def extra_repr(self) -> str:
        return f"layer={self.layer.name}"

    def forward(self, *args: Any, cu_seqlens: torch.Tensor | None = None, outputs: Any = None,
                **inputs: Any) -> dict[str, torch.Tensor]:
        """The layer's outputs by name (``outputs``: only those named, e.g. ``("y",)`` where the
        final state is not needed: the kernels may then do less)."""
        params = {name: p for name, p in self.named_parameters(recurse=False)}
        clash = sorted(set(params) & set(inputs))
        if clash:
            raise TypeError(f"{self.layer.name}: {clash} are the module's parameters, not inputs")
        return self.compiled(*args, **inputs, **params, cu_seqlens=cu_seqlens, outputs=outputs)


    # --- generation: one step at a time ----------------------------------------------------

    def state_names(self) -> dict[str, str]:
        """{final-state output: the initial-state argument it continues}: the layer's recurrent
        state, read from the IR (a scan's ``h0`` argument and its final state; a conv's window
        and its final window)."""
        out = {}
        for name, node in self.compiled.graph.outputs:
            if node.op in ("scan_final", "conv_final") and len(node.inputs) == 3 and node.inputs[2].op == "arg":
                out[name] = node.inputs[2].attr("name")
        return out

    def step(self, state: dict[str, torch.Tensor] | None = None, **inputs: torch.Tensor):
        """One time step: ``inputs`` are the layer's sequence inputs without the sequence axis
        (or with it, of length 1), ``state`` the previous step's state (None: zeros). Returns
        (outputs without the sequence axis, the new state). Stepping through a sequence gives
        what ``forward`` gives on the whole of it; the kernels are the forward's, at L = 1."""
        layer = self.layer
        names = self.state_names()
        if not names:
            raise TypeError(f"{layer.name}: no final state is an output continuing an initial-state argument; nothing to step")
        args, _ = self._with_axis(inputs)
        for out_name, arg_name in names.items():
            if state is not None and state.get(out_name) is not None:
                args[arg_name] = state[out_name]
        out = self(**args)
        new_state = {k: out[k] for k in names}
        return self._without_axis({k: v for k, v in out.items() if k not in names}), new_state

    def _with_axis(self, inputs: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], set[str]]:
        """The layer's inputs with the sequence axis, added where one token came without it;
        and the names of those that came without it."""
        layer = self.layer
        axis = self.compiled.graph.scan_axis()
        args, single = {}, set()
        for k, v in inputs.items():
            spec = layer.specs.get(k)
            if spec is None or spec.kind != "input":
                raise TypeError(f"{layer.name}: `{k}` is not an input of the layer")
            if axis in spec.layout and v.dim() == len(spec.layout) - 1:
                v = v.unsqueeze(spec.layout.index(axis))
                single.add(k)
            args[k] = v
        return args, single

    def _without_axis(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Outputs of one token with the sequence axis dropped."""
        axis = self.compiled.graph.scan_axis()
        dims = {k: v.dims for k, v in self.compiled.graph.outputs}
        return {k: (v.squeeze(dims[k].index(axis)) if axis in dims[k] else v) for k, v in outputs.items()}

    # --- generation from a cache -----------------------------------------------------------

    def new_cache(self, batch: int, dtype: torch.dtype = torch.float32, device: Any = None):
        """Zero recurrent states for ``batch`` sequences (``ssmc.export.InferenceCache``),
        stored in ``dtype`` (float32, bfloat16 or float16; the kernels compute in float32)."""
        from ssmc.export.cache import new_cache

        return new_cache(self, batch, dtype, device)

    def decode(self, cache, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """The next tokens of every sequence in ``cache``: ``inputs`` with the sequence axis (k
        tokens, one kernel call) or without it (one token). Continues from the cache's states
        and stores the new ones back (rounded to its storage dtype); returns the outputs, with
        the sequence axis where the inputs had it. Inference only (no autograd)."""
        layer = self.layer
        axis = self.compiled.graph.scan_axis()
        batch_dim = layer.dim_order[0]
        passed = [k for k in inputs if k in cache.continues.values()]
        if passed:
            raise TypeError(f"{layer.name}: `{passed[0]}` comes from the cache; do not pass it")
        args, single = self._with_axis(inputs)
        sequences = {k for k in args if axis in layer.specs[k].layout}
        if single and single != sequences:
            raise ArgumentError(f"{layer.name}: some inputs have the sequence axis {axis} and some do not")
        for k, v in args.items():
            layout = layer.specs[k].layout
            if batch_dim in layout and v.shape[layout.index(batch_dim)] != cache.batch_size:
                raise ArgumentError(
                    f"{layer.name}: input `{k}` has {batch_dim}={v.shape[layout.index(batch_dim)]} "
                    f"but the cache holds {cache.batch_size} sequences"
                )
        for out_name, arg in cache.continues.items():
            args[arg] = cache.states[out_name]
        with torch.no_grad():
            out = self(**args)
            for out_name in cache.continues:
                cache.states[out_name].copy_(out[out_name])
        out = {k: v for k, v in out.items() if k not in cache.continues}
        return self._without_axis(out) if single else out


def to_module(layer: Layer, sizes: Mapping[str, int], seed: int = 0, **compile_options: Any) -> SSMModule:
    """``layer`` as an ``nn.Module`` whose parameters have the shapes ``sizes`` gives."""
    return SSMModule(layer, sizes, seed, **compile_options)
