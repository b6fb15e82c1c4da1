"""Compiling ahead of time: every kernel variant the schedule can pick for the given dtypes and
sizes is generated, cached on disk, and (on a GPU) compiled by Triton, so the first real call
does not pay for it. Sizes that vary between calls (lengths, batch) are runtime arguments, so a
warm-up at one length serves the others; the sizes that pick block shapes (state sizes) matter.
With ``backward``, the default variant's backward kernels too (a training step's first call)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ssmc.dsl.layer import Layer


def warmup(
    layer: Layer,
    dtypes: Iterable[str] = ("bf16",),
    sizes: Iterable[Mapping[str, int]] = (),
    progress: Callable[[str], Any] | None = print,
    backward: bool = False,
    **compile_options: Any,
) -> dict[str, int]:
    """Warm the caches for ``layer``; returns counts (cases run, sources written, launches)."""
    import torch

    from ssmc.backends.triton.jit import CompiledLayer
    from ssmc.backends.triton.run import interpreting
    from ssmc.testing.check import arg_dtypes, make_inputs, to_torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not interpreting():
        raise RuntimeError("ssmc warmup: no CUDA GPU here; set TRITON_INTERPRET=1 to warm the source cache only")
    variants = [CompiledLayer(layer, **compile_options)]
    if compile_options.get("strategy") is None:
        # the default picks per call between one pass and the chunked plan: warm both
        variants.append(CompiledLayer(layer, **dict(compile_options, strategy="sequential")))
        variants.append(CompiledLayer(layer, **dict(compile_options, strategy="chunked", chunks=2)))
    totals = {"cases": 0, "disk_writes": 0, "launches": 0}
    for dtype in dtypes:
        for case in sizes:
            full = {**case, **layer.fixed_sizes}
            t0 = time.perf_counter()
            inputs = to_torch(make_inputs(layer, full, dtype), arg_dtypes(layer, dtype), device)
            for c in variants:
                c(**inputs)
            if backward:  # through autograd, as training calls it: the default variant's backward
                grads = {k: v.detach().requires_grad_(True) for k, v in inputs.items() if v is not None and v.is_floating_point()}
                out = variants[0](**{**inputs, **grads})
                torch.autograd.backward([v for v in out.values() if v.requires_grad],
                                        [torch.ones_like(v) for v in out.values() if v.requires_grad])
            if device == "cuda":
                torch.cuda.synchronize()
            totals["cases"] += 1
            compiled = variants + [c.backward_compiled() for c in variants[:1] if backward]
            writes = sum(stats(c).get("disk_writes", 0) for c in compiled)
            launches = sum(stats(c)["launches"] for c in compiled)
            if progress is not None:
                shown = ",".join(f"{d}={full[d]}" for d in layer.dim_order)
                progress(
                    f"{layer.name} {dtype} {shown}: {launches - totals['launches']} launches, "
                    f"{writes - totals['disk_writes']} new cached sources, {time.perf_counter() - t0:.1f} s"
                )
            totals["disk_writes"], totals["launches"] = writes, launches
    return totals


def stats(c: Any) -> dict[str, int]:
    """A compiled layer's counters; a matrix backward's are its parts' added up."""
    parts = [getattr(c, n) for n in ("part", "rest", "recurrent") if getattr(c, n, None) is not None]
    if not parts:
        return c.stats
    out: dict[str, int] = {}
    for p in parts:
        for k, v in stats(p).items():
            out[k] = out.get(k, 0) + v
    return out
