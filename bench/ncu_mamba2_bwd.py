"""One forward+backward of Mamba-2 (B8 L2048 H32 P64 N128, bf16, autograd as in `ssmc bench`)
inside cudaProfilerStart/Stop, for Nsight Compute (bench/ncu_mamba2_bwd.sh): why the backward's
matrix-scan kernels differ (session 14's profile: m0's outputs kernel 723 us, m1's 417, with
the same tiles), which the per-kernel times alone do not say."""

import torch

from ssmc.benchmark import workloads as w

case = w.mamba2_case(8, 2048, 32, 64, 128, True, "no peer")
c = case.candidates[0]


def call():
    for g in c.grads:
        g.grad = None
    c.run()


for _ in range(2):  # compile and warm up outside the profiled range
    call()
torch.cuda.synchronize()
torch.cuda.profiler.start()
call()
torch.cuda.synchronize()
torch.cuda.profiler.stop()
