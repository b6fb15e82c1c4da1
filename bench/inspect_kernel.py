"""Compile one schedule of a layer on the GPU and report what the compiler made of it:
registers, spills, layout conversions and shared-memory use in the TTGIR."""

import os
import re
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
sys.path.insert(0, os.path.dirname(__file__))
from mamba1 import mamba1  # noqa: E402
from sweep_mamba1 import make_inputs  # noqa: E402

import ssmc  # noqa: E402

out = os.environ.get("OUT", "/tmp")
for cfg in [dict(strategy="sequential", unroll=4, block=32, num_warps=1),
            dict(strategy="sequential", unroll=4, block=8, num_warps=1)]:
    layer = ssmc.compile(mamba1, **cfg)
    layer(**make_inputs(2, 64, 256, 16, torch.bfloat16))
    k = layer.last_launched
    ttgir = k.asm["ttgir"]
    name = "_".join(f"{a}{b}" for a, b in cfg.items())
    open(os.path.join(out, f"{name}.ttgir"), "w").write(ttgir)
    open(os.path.join(out, f"{name}.ptx"), "w").write(k.asm["ptx"])
    print(cfg, "regs", k.n_regs, "spills", k.n_spills, "shared", k.metadata.shared,
          "convert_layout", len(re.findall("convert_layout", ttgir)),
          "local_alloc", len(re.findall("local_alloc", ttgir)),
          "bar.sync", k.asm["ptx"].count("bar.sync"))
    print("  layouts:", [ln for ln in ttgir.splitlines() if ln.startswith("#")][:8])
