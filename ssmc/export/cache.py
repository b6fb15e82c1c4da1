"""The recurrent state of sequences being generated, held between calls.

A layer's state contract is read from its IR: each final-state output that continues an
initial-state argument (Mamba's ``h_final`` continues ``h0``). The cache holds one tensor per
such state, a row per sequence, in a storage dtype of the caller's choice (float32 by default;
bfloat16 or float16 halve the memory, and the kernels compute in float32 from it: the state is
rounded once per call when it is stored back). Rows can be reset (a finished sequence replaced
by a new one) and reordered or selected (beam search), in place, so that a CUDA graph captured
on the cache stays valid."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ssmc.errors import ArgumentError

STORAGE = (torch.float32, torch.bfloat16, torch.float16)


class InferenceCache:
    """States by output name (e.g. ``{"h_final": [B, D, N] tensor}``), batch first."""

    def __init__(self, layer_name: str, states: Mapping[str, torch.Tensor], continues: Mapping[str, str]) -> None:
        self.layer_name = layer_name
        self.states = dict(states)
        self.continues = dict(continues)  # state output -> the initial-state argument it feeds
        sizes = {t.shape[0] for t in self.states.values()}
        if len(sizes) != 1:
            raise ArgumentError(f"{layer_name}: cache states disagree on the batch size: {sorted(sizes)}")
        self.batch_size = sizes.pop()

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self.states.values())).dtype

    @property
    def device(self) -> torch.device:
        return next(iter(self.states.values())).device

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {list(v.shape)}" for k, v in self.states.items())
        return f"<InferenceCache of {self.layer_name}: {shapes}, {self.dtype}>"

    def _rows(self, rows) -> torch.Tensor:
        idx = torch.as_tensor(rows, dtype=torch.long).reshape(-1)
        if idx.numel() and (int(idx.min()) < -self.batch_size or int(idx.max()) >= self.batch_size):
            raise ArgumentError(
                f"{self.layer_name}: cache row out of range: rows {idx.tolist()[:8]} for a cache of "
                f"{self.batch_size} rows"
            )
        return idx.to(self.device)

    def reset(self, rows: Sequence[int] | torch.Tensor | None = None) -> None:
        """Zero the state of ``rows`` (all rows if None): new sequences start there."""
        for s in self.states.values():
            if rows is None:
                s.zero_()
            else:
                s.index_fill_(0, self._rows(rows), 0)

    def reorder(self, index: Sequence[int] | torch.Tensor) -> None:
        """Row i becomes the old row ``index[i]`` (beam search keeps, drops and copies
        hypotheses); ``index`` has one entry per row. In place."""
        idx = self._rows(index)
        if idx.numel() != self.batch_size:
            raise ArgumentError(
                f"{self.layer_name}: reorder needs one index per row ({self.batch_size}), got {idx.numel()}"
            )
        for s in self.states.values():
            s.copy_(s.index_select(0, idx))

    def __getitem__(self, rows) -> InferenceCache:
        """A new cache holding copies of ``rows``."""
        idx = self._rows(rows)
        return InferenceCache(self.layer_name, {k: v.index_select(0, idx) for k, v in self.states.items()}, self.continues)


def new_cache(module, batch: int, dtype: torch.dtype = torch.float32, device=None) -> InferenceCache:
    """Zero states for ``batch`` sequences of ``module`` (an ``SSMModule``)."""
    layer = module.layer
    if dtype not in STORAGE:
        raise ArgumentError(f"{layer.name}: cache storage dtype {dtype}; choose one of {[str(d) for d in STORAGE]}")
    if batch < 1:
        raise ArgumentError(f"{layer.name}: a cache needs at least one row, got batch={batch}")
    continues = module.state_names()
    if not continues:
        raise ArgumentError(f"{layer.name}: no final state continues an initial-state argument; nothing to cache")
    device = device if device is not None else next(iter(module.parameters()), torch.empty(0)).device
    batch_dim = layer.dim_order[0]
    sizes = {**layer.fixed_sizes, **module.sizes}  # the layer's own (a complex value's 2 parts) too
    states = {}
    for out_name, arg in continues.items():
        layout = layer.specs[arg].layout
        shape = []
        for d in layout:
            if d == batch_dim:
                shape.append(batch)
            elif d in sizes:
                shape.append(int(sizes[d]))
            else:
                raise ArgumentError(f"{layer.name}: the size of dim {d} of `{arg}` is not among the module's sizes {dict(sizes)}")
        states[out_name] = torch.zeros(shape, dtype=dtype, device=device)
    return InferenceCache(layer.name, states, continues)
