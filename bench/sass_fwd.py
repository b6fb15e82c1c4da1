"""SASS summary of the generated Mamba-1 forward kernels (GPU): registers, spills, and the
instruction mix of the main loop, for the schedules given as JSON on the command line."""

import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
sys.path.insert(0, HERE)
from exp_fwd_variants import sass_of  # noqa: E402
from mamba1 import mamba1  # noqa: E402
from sweep_mamba1 import make_inputs  # noqa: E402

import ssmc  # noqa: E402

for cfg in json.loads(sys.argv[1]):
    layer = ssmc.compile(mamba1, **cfg)
    layer(**make_inputs(8, 2048, 2048, 16, torch.bfloat16))
    k = layer.last_launched
    n, hist = sass_of(k)
    print(cfg, f"regs {k.n_regs} spills {k.n_spills}; main block {n} instructions: {hist}", flush=True)
