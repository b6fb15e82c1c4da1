"""The differential check: a compiled layer against the NumPy interpreter on random inputs.

Used by the tests (with hypothesis drawing sizes, dtypes and values) and by
``ssmc run --check``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ssmc.dsl.layer import Layer
from ssmc.ops.interpret import run
from ssmc.ops.numerics import round_to
from ssmc.testing.compare import Comparison, compare_outputs

PERTURBED_RUNS = 3  # float32 references on inputs moved by one ulp (see tolerances.py)
# the relative error of the GPU's exp2 (ex2.approx, what tl.exp2 compiles to): measured on an
# H100 (bench/exp2_error_gpu.py, 2^26 arguments per range) at most 2.05 ulps, 2^-22.7 relative,
# with a mean of -0.40 ulps over the decays' [-1, 0]; 2^-22 bounds it
GPU_EXP2_ERROR = 2.0**-22
_TORCH = {"f32": "float32", "bf16": "bfloat16", "f16": "float16", "f64": "float64"}


def arg_dtypes(layer: Layer, dtype: str) -> dict[str, str]:
    """Sequence tensors in ``dtype``; parameters and initial states (no sequence axis) in f32."""
    axis = layer.graph.scan_axis() or "L"
    out = {}
    for name, spec in layer.specs.items():
        seq = spec.kind == "input" and axis in spec.layout
        out[name] = dtype if seq else "f32"
    return out


def make_inputs(
    layer: Layer,
    sizes: Mapping[str, int],
    dtype: str,
    seed: int = 0,
    with_optional: bool = True,
    scale: float = 1.0,
) -> dict[str, np.ndarray]:
    """Random inputs (float64 arrays already rounded to the dtypes the kernel will see)."""
    raw = layer.random_inputs(sizes, seed, optional=with_optional)
    dts = arg_dtypes(layer, dtype)
    return {k: round_to(v * (scale if layer.specs[k].kind == "input" else 1.0), dts[k]) for k, v in raw.items()}


def to_torch(values: Mapping[str, np.ndarray], dtypes: Mapping[str, str], device: Any, noncontiguous: bool = False):
    import torch

    out = {}
    for k, v in values.items():
        t = torch.tensor(v, dtype=getattr(torch, _TORCH[dtypes[k]]))
        if noncontiguous and t.dim() >= 1:
            # every other element of a buffer twice as wide along the last dim: strided, no copy
            wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype)
            wide[..., ::2] = t
            t = wide[..., ::2]
        out[k] = t.to(device)
    return out


def check_compiled(
    layer: Layer,
    compiled: Any,
    sizes: Mapping[str, int],
    dtype: str = "f32",
    seed: int = 0,
    device: Any = "cpu",
    with_optional: bool = True,
    noncontiguous: bool = False,
    tol_scale: float = 1.0,
    scale: float = 1.0,
    outputs: Sequence[str] | None = None,
) -> list[Comparison]:
    """Run ``compiled`` on random inputs and compare every output (or those named in
    ``outputs``, which the call asks for alone) with the interpreter."""
    import torch

    inputs = make_inputs(layer, sizes, dtype, seed, with_optional, scale)
    dts = arg_dtypes(layer, dtype)
    tensors = to_torch(inputs, dts, device, noncontiguous)
    outs = compiled(**tensors) if outputs is None else compiled(**tensors, outputs=outputs)
    if outputs is not None and sorted(outs) != sorted(outputs):
        raise AssertionError(f"asked for {list(outputs)}, got {sorted(outs)}")
    bound = layer.bind(inputs)
    ref64 = {k: v for k, v in run(layer.graph, inputs, bound).items() if outputs is None or k in outputs}
    # the float32 reference computes what the passes made of the layer, op by op (discretize
    # expanded): a straightforward float32 computation; the float64 truth is the layer itself
    graph32 = getattr(compiled, "graph", layer.graph)
    ref32s = [run(graph32, inputs, bound, precision="f32")]
    rng = np.random.default_rng(seed + 1)
    for _ in range(PERTURBED_RUNS):
        moved = {k: v * (1.0 + rng.integers(-1, 2, v.shape) * 2.0**-23) for k, v in inputs.items()}
        ref32s.append(run(graph32, moved, bound, precision="f32"))
    if str(device).startswith("cuda"):  # the GPU's exp2 in the time loop (tolerances.py)
        ref32s += [run(graph32, inputs, bound, precision="f32", exp_error=e) for e in (GPU_EXP2_ERROR, -GPU_EXP2_ERROR)]
    names = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}
    got = {k: v.detach().to("cpu", torch.float64).numpy() for k, v in outs.items()}
    # Triton's interpreter truncates float32 -> bfloat16; GPUs round to nearest
    rounding = "rn" if str(device).startswith("cuda") else "rz"
    dts_out = {k: names[v.dtype] for k, v in outs.items()}
    # outputs stored in float32 but multiplied in the inputs' 16-bit dtype (a matrix backward's)
    if hasattr(compiled, "result_precision"):
        dts_out.update({k: d for k, d in compiled.result_precision(dtype, bound).items() if k in dts_out})
    return compare_outputs(got, ref64, ref32s, dts_out, tol_scale, rounding)
