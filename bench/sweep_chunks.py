"""Chunk counts of the chunked Mamba-1 forward at the two shapes that chunk, in one run
(fractions of the copy rate measured in the same run). python bench/sweep_chunks.py"""

import os
import sys

import torch
import triton

HERE = os.path.dirname(os.path.abspath(__file__))
sys.argv[1:] = []
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
from mamba1 import mamba1  # noqa: E402
from sweep_mamba1 import bytes_moved, copy_rate_gbs, make_inputs  # noqa: E402

import ssmc  # noqa: E402

copy = copy_rate_gbs()
print(f"copy rate {copy:.0f} GB/s")
for shape, counts in (((8, 2048, 2048, 16), [None, 6, 7, 8, 10, 12]), ((2, 8192, 2048, 16), [None, 20, 22, 26, 28, 36, 40])):
    ins = make_inputs(*shape, torch.bfloat16)
    for c in counts:
        layer = ssmc.compile(mamba1) if c is None else ssmc.compile(mamba1, strategy="chunked", chunks=c)
        ms = triton.testing.do_bench(lambda: layer(**ins), warmup=10, rep=100, return_mode="median")
        frac = bytes_moved(*shape, 2) / (ms * 1e-3) / 1e9 / copy
        print(f"B{shape[0]} L{shape[1]} chunks {c or 'default'}: {ms:.3f} ms  {frac:.3f} of copy", flush=True)
