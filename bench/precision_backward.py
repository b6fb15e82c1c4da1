"""Where the float32 backward of Mamba-1 on the GPU exceeds the tolerance rule (small D = N =
1, L 130 / 257, the cases hypothesis found): each output's error / bound, under variants of the
time loop's softplus (the prelude's helper patched before compiling) and of its exp2 (the
decay; the op registry's template patched). Usage on a GPU:
python bench/precision_backward.py [current,_ssmc_exp2_fma]"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
import dataclasses  # noqa: E402

from mamba1 import mamba1  # noqa: E402

import ssmc.backends.triton.prelude as prelude  # noqa: E402
import ssmc.ops.registry as registry  # noqa: E402
from ssmc.backends.triton.backward import CompiledBackward  # noqa: E402
from ssmc.testing.check import check_compiled  # noqa: E402

BASE = prelude.PRELUDE
FAST = "    e = tl.exp(-tl.abs(x))\n"
VARIANTS = {
    "current (ex2.approx of -|x| log2e)": BASE,
    "compensated exp (_ssmc_exp)": BASE.replace(FAST, "    e = _ssmc_exp(-tl.abs(x))\n"),
    "accurate exp (_ssmc_exp_accurate)": BASE.replace(FAST, "    e = _ssmc_exp_accurate(-tl.abs(x))\n"),
}
EXP2 = registry.get("exp2")
VARIANTS = {k: (v, EXP2) for k, v in VARIANTS.items()}
VARIANTS["exp2 in the loop as _ssmc_exp2_accurate"] = (BASE, dataclasses.replace(EXP2, triton="_ssmc_exp2_accurate({0})"))
VARIANTS["exp2 in the loop as _ssmc_exp2_fma"] = (BASE, dataclasses.replace(EXP2, triton="_ssmc_exp2_fma({0})"))
RUNS = [(k, v, "f32") for k, v in VARIANTS.items()] + [(k, v, "bf16") for k, v in list(VARIANTS.items())[::3]]
if len(sys.argv) > 1:  # only the variants whose names hold one of these words
    RUNS = [r for r in RUNS if any(w in r[0] for w in sys.argv[1].split(","))]
for name, (text, exp2), dtype in RUNS:
    prelude.PRELUDE = text
    registry.REGISTRY["exp2"] = exp2
    c = CompiledBackward(mamba1, unroll=4, verify=True)
    worst: dict[str, float] = {}
    fails = 0
    for seed in range(8):
        for L in (130, 257):
            for r in check_compiled(c.layer, c, dict(B=1, L=L, D=1, N=1), dtype, seed, "cuda", True, False):
                fails += not r.ok
                worst[r.name] = max(worst.get(r.name, 0.0), r.err / r.bound if r.bound else 0.0)
    print(f"{dtype} inputs, {name}: {fails} mismatches in 16 cases; worst error / bound: "
          + ", ".join(f"{k} {v:.2f}" for k, v in sorted(worst.items(), key=lambda kv: -kv[1])[:6]), flush=True)

# the forward at the same sizes (current prelude and exp2)
import ssmc  # noqa: E402

prelude.PRELUDE, registry.REGISTRY["exp2"] = BASE, EXP2
for strategy in ("sequential", "chunked"):
    f = ssmc.compile(mamba1, strategy=strategy)
    worst, fails = {}, 0
    for seed in range(8):
        for L in (130, 257):
            for r in check_compiled(f.layer, f, dict(B=1, L=L, D=1, N=1), "f32", seed, "cuda", True, False):
                fails += not r.ok
                worst[r.name] = max(worst.get(r.name, 0.0), r.err / r.bound if r.bound else 0.0)
    print(f"forward {strategy}, f32: {fails} mismatches in 16 cases; worst error / bound: "
          + ", ".join(f"{k} {v:.2f}" for k, v in worst.items()), flush=True)
