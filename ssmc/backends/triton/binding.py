"""Binding one call's tensors before any kernel runs: a packed batch's sizes and per-sequence
proxies (``cu_seqlens`` checked), the arguments whose rows load two at a time, and the one
device every tensor must be on. Each error names the argument and the rule."""

from __future__ import annotations

from typing import Any, NamedTuple

from ssmc.dsl.layer import Layer
from ssmc.errors import ArgumentError

KERNEL_DTYPES = ("f32", "bf16", "f16")  # what compiled kernels take


# Packed batches: programs take sequences longest first (False: in the caller's order; for
# measuring what the order buys). A module constant so benchmarks can take both paths.
LONGEST_FIRST = True


class Packed(NamedTuple):
    """A packed batch as its kernels see it."""

    batch: str  # the batch dim, sized to the number of sequences
    cu_seqlens: Any  # int32 [S + 1] offsets, on the device
    longest: int  # steps of the longest sequence (chunking follows it)
    order: Any  # int32 [S] on the device: the sequence each batch slot of the grid takes,
    # longest first: with more programs than the GPU holds at once, the long sequences start in
    # the first wave and the short ones fill the gaps behind them (longest-processing-time
    # order); in the caller's order a long sequence drawn late runs alone at the end


class _Shape:
    """Shape and dtype only: lets a packed batch's per-sequence states be bound like batch rows."""

    def __init__(self, shape, dtype) -> None:
        self.shape, self.dtype = tuple(shape), dtype


def bind_packed(c: Any, values, cu, device):
    """Check a packed batch and its offsets; sizes with the batch dim = number of sequences."""
    import torch

    layer = c.layer
    name = layer.name
    batch = layer.dim_order[0]
    axis = c.graph.scan_axis()
    if axis is None or batch == axis:
        raise ArgumentError(f"{name}: cu_seqlens needs a layer with a batch dim before its scan axis")
    if not isinstance(cu, torch.Tensor) or cu.dtype != torch.int32 or cu.dim() != 1 or cu.numel() < 2:
        got = f"{cu.dtype} {tuple(cu.shape)}" if isinstance(cu, torch.Tensor) else type(cu).__name__
        raise ArgumentError(f"{name}: cu_seqlens must be a 1-D int32 tensor of sequences + 1 offsets, got {got}")
    if cu.device != device:
        raise ArgumentError(f"{name}: cu_seqlens is on {cu.device} but the inputs are on {device}")
    host = cu.tolist()
    n_seq = len(host) - 1
    proxies = {}
    for k, v in values.items():
        if v is None:
            continue
        spec = layer.specs[k]
        if axis in spec.layout:
            if batch in spec.layout and v.shape[spec.layout.index(batch)] != 1:
                raise ArgumentError(
                    f"{name}: with cu_seqlens, argument `{k}` must be one packed row: {batch}=1, "
                    f"got {batch}={v.shape[spec.layout.index(batch)]}"
                )
            proxies[k] = v
        elif batch in spec.layout:
            i = spec.layout.index(batch)
            if v.shape[i] != n_seq:
                raise ArgumentError(
                    f"{name}: argument `{k}` has {batch}={v.shape[i]} but cu_seqlens holds {n_seq} sequences"
                )
            proxies[k] = _Shape(v.shape[:i] + (1,) + v.shape[i + 1 :], v.dtype)
        else:
            proxies[k] = v
    sizes = layer.bind(proxies, accept=KERNEL_DTYPES)
    T = sizes[axis]
    if host[0] != 0 or host[-1] != T or any(b < a for a, b in zip(host, host[1:])):
        raise ArgumentError(
            f"{name}: cu_seqlens must start at 0, never decrease and end at the packed length "
            f"{axis}={T}; got {host[:4]}{'...' if len(host) > 4 else ''}{host[-1:] if len(host) > 4 else ''}"
        )
    sizes[batch] = n_seq
    lengths = [b - a for a, b in zip(host, host[1:])]
    order = sorted(range(n_seq), key=lambda i: -lengths[i]) if LONGEST_FIRST else list(range(n_seq))
    return sizes, Packed(batch, cu, max(lengths), torch.tensor(order, dtype=torch.int32, device=device))


def pairable(layer: Layer, tensors: dict[str, Any]) -> frozenset:
    """(``a_<arg>``, its innermost dim) for each argument whose innermost dim is contiguous and
    every row of which starts aligned to two elements: its rows along that dim can be loaded
    two elements per load (16-bit pairs as int32, fp32 pairs as int64)."""
    import torch

    out = set()
    for k, t in tensors.items():
        if t.dtype not in (torch.bfloat16, torch.float16, torch.float32) or t.dim() == 0:
            continue
        inner = layer.specs[k].layout[-1]
        i = layer.specs[k].layout.index(inner)
        pair = 2 * t.element_size()
        if t.stride(i) == 1 and t.data_ptr() % pair == 0 and all(t.stride(j) % 2 == 0 for j in range(t.dim()) if j != i):
            out.add((f"a_{k}", inner))
    return frozenset(out)


def common_device(name: str, tensors: dict[str, Any]):
    devices = {k: t.device for k, t in tensors.items()}
    first_name, first = next(iter(devices.items()))
    for k, d in devices.items():
        if d != first:
            raise ArgumentError(f"{name}: argument `{k}` is on {d} but `{first_name}` is on {first}")
    return first


__all__ = ["bind_packed", "common_device", "pairable"]
