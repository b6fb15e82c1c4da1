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
for cfg in [dict(strategy="chunked", unroll=4, block=32, num_warps=1, chunks=16)]:
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
    print("  layouts:", [ln for ln in ttgir.splitlines() if ln.startswith("#")][:4])
    # instruction histogram of the SASS of the unrolled main loop (the largest basic block)
    sass = k.asm.get("sass") or ""
    if not sass:
        import subprocess
        import tempfile
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(k.asm["cubin"])
            f.flush()
            sass = subprocess.run(["cuobjdump", "-sass", f.name], capture_output=True, text=True).stdout
    open(os.path.join(out, f"{name}.sass"), "w").write(sass)
    blocks, cur = [], []
    for line in sass.splitlines():
        if re.match(r"\s*\.L_x_\d+:", line) or "BRA" in line:
            blocks.append(cur)
            cur = []
        m = re.search(r"/\*[0-9a-f]{4}\*/\s+(@!?U?P\d\s+)?([A-Z][A-Z0-9_.]+)", line)
        if m:
            cur.append(m.group(2).split(".")[0])
    blocks.append(cur)
    big = max(blocks, key=len)
    from collections import Counter
    print("  main block:", len(big), "instructions (4 steps):", Counter(big).most_common(18))
