"""``ssmc.compile(layer)``: the JIT. Runs the passes once, lowers each fused group to a kernel,
generates and caches Triton source, and launches the kernels on torch tensors.

Specialization: the generated source depends only on the layer and the strategy; dtypes and
block sizes are Triton's specialization (dtypes of pointers, constexpr blocks), and sizes that
vary (lengths, batch) are runtime arguments."""

from __future__ import annotations

import math
import os
from typing import Any

from ssmc.backends.triton import cache
from ssmc.backends.triton.codegen import GENERATOR_VERSION, generate
from ssmc.backends.triton.kernel_ir import Kernel
from ssmc.backends.triton.lower import lower_group
from ssmc.backends.triton.schedule import Schedule, choose
from ssmc.dsl.layer import Layer, dtype_name
from ssmc.errors import ArgumentError
from ssmc.ir.printer import graph_hash
from ssmc.passes import pipeline_name, run_passes

KERNEL_DTYPES = ("f32", "bf16", "f16")


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def versions() -> dict[str, str]:
    import triton

    import ssmc

    return {"ssmc": f"{ssmc.__version__}/g{GENERATOR_VERSION}", "triton": triton.__version__}


class CompiledLayer:
    """A layer compiled to Triton kernels. Call it with torch tensors (batch-first, any strides);
    it returns a dict of output tensors, dims in the layer's canonical order. Outputs are in the
    dtype of the layer's first input argument, final states in float32."""

    def __init__(
        self,
        layer: Layer,
        strategy: str | None = None,
        block_t: int | None = None,
        block: int | None = None,
        num_warps: int | None = None,
        num_stages: int | None = None,
        layout: str = "tiled_last",
        unroll: int = 8,
        verify: bool = False,
    ) -> None:
        self.layout = layout
        self.unroll = unroll
        self.layer = layer
        self.graph = run_passes(layer.graph, verify_each=verify)
        self.options = {"strategy": strategy, "block_t": block_t, "block_tiled": block, "num_warps": num_warps, "num_stages": num_stages}
        self.stats: dict[str, int] = {"launches": 0}
        self._kernels: dict[str, list[Kernel]] = {}
        self._modules: dict[str, list[Any]] = {}

    def __repr__(self) -> str:
        return f"<ssmc compiled {self.layer.name}: {len(self.graph.groups or ())} kernel(s)>"

    # --- generation ------------------------------------------------------------------------

    def kernels(self, strategy: str) -> list[Kernel]:
        if strategy not in self._kernels:
            assert self.graph.groups is not None
            self._kernels[strategy] = [lower_group(self.graph, g, strategy, self.layout, self.unroll) for g in self.graph.groups]
        return self._kernels[strategy]

    def sources(self, strategy: str = "tiled") -> list[str]:
        """The generated Triton source of each kernel (what ``ssmc show --stage kernel`` prints)."""
        h, p, v = graph_hash(self.graph), pipeline_name(), versions()
        return [generate(k, h, p, v) for k in self.kernels(strategy)]

    def _module_kernels(self, strategy: str) -> list[Any]:
        if strategy not in self._modules:
            mods = [cache.load_source(src, self.stats) for src in self.sources(strategy)]
            self._modules[strategy] = [getattr(m, k.name) for m, k in zip(mods, self.kernels(strategy))]
        return self._modules[strategy]

    # --- calling ---------------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        import torch

        layer = self.layer
        values = layer.collect(args, kwargs)
        for k, v in values.items():
            if v is not None and not isinstance(v, torch.Tensor):
                raise ArgumentError(f"{layer.name}: argument `{k}` is a {type(v).__name__}; compiled layers take torch tensors")
        sizes = layer.bind(values, accept=KERNEL_DTYPES)
        tensors = {k: v for k, v in values.items() if v is not None}
        device = _common_device(layer.name, tensors)
        on_gpu = device.type == "cuda"
        if not on_gpu and not interpreting():
            raise ArgumentError(
                f"{layer.name}: tensors are on {device}; compiled kernels run on a CUDA GPU, "
                "or on the CPU under TRITON_INTERPRET=1"
            )
        first = next(t for k, t in tensors.items() if layer.specs[k].kind == "input")
        out_dtype = first.dtype
        opts = dict(self.options)
        strategy = opts.pop("strategy")
        results: dict[str, Any] = {}
        buffers: dict[str, Any] = {}
        kernels = self.kernels(strategy or "tiled")
        for kernel in kernels:
            sched = choose(kernel, sizes, on_gpu, strategy, **opts)
            if sched.strategy != (strategy or "tiled"):
                kernel = self.kernels(sched.strategy)[kernels.index(kernel)]
            fn = self._module_kernels(sched.strategy)[kernels.index(kernel)]
            self._launch(fn, kernel, sched, sizes, tensors, buffers, results, out_dtype, device)
        return results

    def _launch(self, fn, kernel: Kernel, sched: Schedule, sizes, tensors, buffers, results, out_dtype, device) -> None:
        import torch

        layer = self.layer
        call: list[Any] = []
        flags: dict[str, bool] = {}
        final_names = {k for k, v in self.graph.outputs if v.op == "scan_final"}
        dummy = next(iter(tensors.values()))
        for t in kernel.tensors:
            if t.role == "out":
                shape = [sizes[d] for d in t.dims]
                if t.name.startswith("o_"):
                    dt = torch.float32 if t.source in final_names else out_dtype
                    buf = torch.empty(shape, dtype=dt, device=device)
                    results[t.source] = buf
                else:
                    buf = torch.empty(shape, dtype=torch.float32, device=device)
                    buffers[t.name] = buf
                call.append(buf)
                call.extend(buf.stride(i) for i in range(len(t.dims)))
            elif t.name.startswith("t"):
                buf = buffers[t.name]
                call.append(buf)
                call.extend(buf.stride(i) for i in range(len(t.dims)))
            else:
                arg = tensors.get(t.source)
                if t.optional:
                    flags[f"HAS_{t.name}"] = arg is not None
                if arg is None:
                    call.append(dummy)
                    call.extend(0 for _ in t.dims)
                    continue
                layout = layer.specs[t.source].layout
                call.append(arg)
                call.extend(arg.stride(layout.index(d)) for d in t.dims)
        call.extend(sizes[d] for d in kernel.size_dims)
        blocks = dict(sched.blocks)
        n_programs = math.prod(sizes[d] for d in kernel.grid_dims)
        if kernel.tiled_dim is not None:
            n_programs *= -(-sizes[kernel.tiled_dim] // blocks[kernel.tiled_dim])
        if n_programs == 0:
            return
        self.last_launched = fn[(n_programs,)](*call, **flags, **sched.constexprs(), num_warps=sched.num_warps)
        self.stats["launches"] += 1


def _common_device(name: str, tensors: dict[str, Any]):
    devices = {k: t.device for k, t in tensors.items()}
    first_name, first = next(iter(devices.items()))
    for k, d in devices.items():
        if d != first:
            raise ArgumentError(f"{name}: argument `{k}` is on {d} but `{first_name}` is on {first}")
    return first


__all__ = ["CompiledLayer", "dtype_name"]
