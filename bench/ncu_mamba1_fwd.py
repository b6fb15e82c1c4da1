"""One call of the default Mamba-1 forward at each benchmark shape inside cudaProfilerStart/Stop,
for Nsight Compute (bench/ncu_mamba1_fwd.sh): where the kernels' cycles go (issue slots, the
transcendental pipe, stall reasons), which instruction counts alone do not say."""

import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
which = sys.argv[1] if len(sys.argv) > 1 else ""
sys.argv[1:] = []  # sweep_mamba1 reads configs from the command line
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
from mamba1 import mamba1  # noqa: E402
from sweep_mamba1 import SHAPES, make_inputs  # noqa: E402

import ssmc  # noqa: E402

layer = ssmc.compile(mamba1)
shapes = [SHAPES[int(i)] for i in which.split(",")] if which else SHAPES
ins = [make_inputs(*s, torch.bfloat16) for s in shapes]
for x in ins:  # compile and warm up outside the profiled range
    layer(**x)
    layer(**x)
torch.cuda.synchronize()
torch.cuda.profiler.start()
for x in ins:
    layer(**x)
torch.cuda.synchronize()
torch.cuda.profiler.stop()
