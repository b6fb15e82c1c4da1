"""Rounding to low-precision formats in NumPy (NumPy has no bfloat16)."""

from __future__ import annotations

import numpy as np


def round_to(x: np.ndarray, dtype: str, mode: str = "rn") -> np.ndarray:
    """Round float64 ``x`` to ``dtype`` (f32, f16, bf16) and return it as float64 again.

    bf16 is float32 with the low 16 bits dropped: ``mode="rn"`` rounds to nearest even (torch,
    and GPUs), ``"rz"`` truncates toward zero (what Triton 3.6's interpreter does when a kernel
    converts float32 to bfloat16)."""
    x = np.asarray(x, dtype=np.float64)
    if dtype == "f32":
        return x.astype(np.float32).astype(np.float64)
    if dtype == "f16":
        return x.astype(np.float16).astype(np.float64)
    if dtype == "bf16":
        f = x.astype(np.float32)
        bits = f.view(np.uint32).astype(np.uint64)
        rounding = ((bits >> 16) & 1) + 0x7FFF if mode == "rn" else np.uint64(0)
        rounded = ((bits + rounding) >> 16 << 16).astype(np.uint32)
        out = rounded.view(np.float32).astype(np.float64)
        return np.where(np.isnan(x), np.nan, out)
    raise ValueError(f"cannot round to {dtype!r}")
