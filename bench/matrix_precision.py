"""The states kernel's products at float32 accuracy on a GPU: the final state of simple GLA
(bf16 inputs, L 300, K = V = 128... ) under each product form, against float64 (the tolerance
rule's numbers: kernel error, float32 reference error, bound)."""

import dataclasses
import sys

import ssmc
import ssmc.backends.triton.jit as jit
from ssmc.testing.check import check_compiled

sys.path.insert(0, "examples")
from gla import simple_gla  # noqa: E402

base = jit.choose_matrix
for prec in ("bf16split", "tf32x3", "ieee"):
    def choose(kernel, *a, prec=prec, **k):
        s = base(kernel, *a, **k)
        return dataclasses.replace(s, flags=(("PREC", prec),)) if kernel.role == "states" else s

    jit.choose_matrix = choose
    for L, K in ((300, 128), (300, 32), (64, 128)):
        c = ssmc.compile(simple_gla, strategy="matrix")
        for r in check_compiled(simple_gla, c, {"B": 2, "L": L, "H": 3, "K": K, "V": 64}, "bf16", 1, "cuda", True):
            if r.name == "h_final":
                print(prec, L, K, r, flush=True)
