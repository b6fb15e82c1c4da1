#!/bin/sh
# One GPU call for what session 12 built without a GPU (ran in session 13, in two calls with
# shorter limits: bench/NOTES.md "2026-12-06 (13)"; the peer's wheel is installed as
# bench/run_gpu.sh does): (1) the GPU-marked tests of the
# register-held backward main kernel and of complex recurrences (LRU), (2) the backward alone
# with the main kernel held as registers (its dB / dC sums joined into one reduction) against
# the default tensor form (at unroll 2 it spills on sm_90: NOTES.md; unroll 1 too), Mamba-1 at the three bench shapes and HGRN, gradients checked
# against the default first (bench/sweep_backward.py); (3) LRU and the bidirectional layer
# timed (bench/new_layers_gpu.py: bimamba's two forms and mamba-ssm's CUDA scan run both ways).
# Usage on the GPU machine: sh bench/held_bidir_gpu.sh   (results under $OUT)
OUT=${OUT:-/tmp}
export PYTHONPATH=$PWD:$PYTHONPATH PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then  # the peers' wheels (make peers), as bench/run_gpu.sh
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/ssmc-peers .whl/*.whl
    export PYTHONPATH=/tmp/ssmc-peers:$PYTHONPATH
fi
[ -d .peers/selective_scan ] && export SSMC_MAMBA_CSRC=$PWD/.peers/selective_scan
timeout 240 python3 -m pytest -q -x tests/test_complex.py "tests/test_backward.py::test_register_held_main_kernel" 2>&1 | tail -15 | tee $OUT/gpu_tests.log
timeout 300 python3 bench/sweep_backward.py '[{"held_bidir": true}, {"held_bidir": true, "unroll": 1}, {"held_bidir": true, "chunks": 1}]' mamba1,hgrn 2>&1 | grep -v Warning | tee $OUT/sweep_held.log
timeout 300 python3 bench/new_layers_gpu.py 2>&1 | grep -v Warning | tee $OUT/new_layers.log
