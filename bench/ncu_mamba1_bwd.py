"""One forward+backward of the default Mamba-1 at B8 L2048 D2048 N16 (bf16) inside
cudaProfilerStart/Stop, for Nsight Compute (``SCRIPT=bench/ncu_mamba1_bwd.py REGEX=bidir sh
bench/ncu_mamba1_fwd.sh OUT``): whether the backward's main kernel (~3.0 ms of the 4.05 ms
fwd+bwd, issue 5) is held by issue slots, by latency at its 8 warps an SM, or by a pipe. Its
sm_90 compile (bench/aot_new_kernels.py mamba1_backward) issues ~1270 warp-instructions per two
steps of a [16 N, 16 D] tile: ~2.5 per (step, channel, state) element, ~1.4 ms at full issue.
Env SCHEDULE: a JSON dict of CompiledBackward options (e.g. '{"block": 8}'), MAXNREG the main
kernel's register cap."""

import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.argv[1:] = []
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
from mamba1 import mamba1  # noqa: E402
from sweep_mamba1 import make_inputs  # noqa: E402

import ssmc  # noqa: E402
from ssmc.backends.triton import schedule  # noqa: E402
from ssmc.backends.triton.backward import CompiledBackward  # noqa: E402

schedule.MAXNREG["bidir"] = int(os.environ.get("MAXNREG", "0"))
fwd = ssmc.compile(mamba1)
bwd = CompiledBackward(mamba1, forward=fwd, **json.loads(os.environ.get("SCHEDULE", "{}")))
ins = make_inputs(8, 2048, 2048, 16, torch.bfloat16)
dy = torch.randn_like(ins["x"])
for _ in range(2):  # compile and warm up outside the profiled range
    bwd(**ins, grad_y=dy)
torch.cuda.synchronize()
torch.cuda.profiler.start()
bwd(**ins, grad_y=dy)
torch.cuda.synchronize()
torch.cuda.profiler.stop()
