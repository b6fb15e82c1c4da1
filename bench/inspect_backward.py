"""Compile the Mamba-1 backward's main (bidir) kernel on the GPU and report what the compiler
made of it: registers, spills, layout conversions, shared memory, and an instruction histogram
of the largest basic blocks of its SASS (phase B of a chunk is one block per unrolled chunk)."""

import os
import re
import subprocess
import sys
import tempfile
from collections import Counter

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
sys.path.insert(0, os.path.dirname(__file__))
from mamba1 import mamba1  # noqa: E402
from sweep_mamba1 import make_inputs  # noqa: E402

import ssmc.backends.triton.run as run  # noqa: E402
from ssmc.backends.triton.backward import CompiledBackward  # noqa: E402

out = os.environ.get("OUT", "/tmp")
launched = {}
orig = run.Run.launch


def keep(self, kernel, sched, extra):
    orig(self, kernel, sched, extra)
    launched[kernel.name] = self.c.last_launched


run.Run.launch = keep
for cfg in [dict(), dict(unroll=2)]:
    b = CompiledBackward(mamba1, **cfg)
    ins = make_inputs(2, 256, 256, 16, torch.bfloat16)
    b(**ins, grad_y=torch.randn(2, 256, 256, device="cuda", dtype=torch.bfloat16))
    name, k = next((n, k) for n, k in launched.items() if n.endswith("k0_bidir"))
    ttgir = k.asm["ttgir"]
    tag = "_".join(f"{a}{v}" for a, v in cfg.items()) or "defaults"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(k.asm["cubin"])
        f.flush()
        sass = subprocess.run(["cuobjdump", "-sass", f.name], capture_output=True, text=True).stdout
    open(os.path.join(out, f"bwd_{tag}.sass"), "w").write(sass)
    open(os.path.join(out, f"bwd_{tag}.ttgir"), "w").write(ttgir)
    print(tag, name, "regs", k.n_regs, "spills", k.n_spills, "shared", k.metadata.shared,
          "convert_layout", len(re.findall("convert_layout", ttgir)), "bar.sync", k.asm["ptx"].count("bar.sync"))
    print("  layouts:", [ln for ln in ttgir.splitlines() if ln.startswith("#")][:4])
    blocks, cur = [], []
    for line in sass.splitlines():
        if re.match(r"\s*\.L_x_\d+:", line) or "BRA" in line:
            blocks.append(cur)
            cur = []
        m = re.search(r"/\*[0-9a-f]{4}\*/\s+(@!?U?P\d\s+)?([A-Z][A-Z0-9_.]+)", line)
        if m:
            cur.append(m.group(2).split(".")[0])
    blocks.append(cur)
    print("  total instructions", sum(map(len, blocks)), "blocks", len(blocks))
    for big in sorted(blocks, key=len, reverse=True)[:3]:
        print("  block:", len(big), Counter(big).most_common(14))
    launched.clear()
