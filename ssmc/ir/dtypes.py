"""The dtypes a value can have in the IR.

``float`` is the compute precision (float64 in the NumPy interpreter, float32 in kernels);
``f32``/``bf16``/``f16`` are the result of an explicit ``cast`` (rounded to that format, then
computed on in the compute precision); ``bool`` is the result of a comparison.
"""

from __future__ import annotations

FLOAT = "float"
BOOL = "bool"
CAST_TARGETS = ("f32", "bf16", "f16")
ALL = (FLOAT, BOOL, *CAST_TARGETS)

# Storage dtypes a layer's tensor arguments may have, by canonical name.
INPUT_DTYPES = ("f64", "f32", "bf16", "f16")


def is_float(dtype: str) -> bool:
    return dtype in (FLOAT, *CAST_TARGETS)
