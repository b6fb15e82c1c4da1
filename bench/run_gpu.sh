#!/bin/sh
# `ssmc bench` on a GPU machine with no network: python3 there has torch and triton; the peers
# travel as wheels in .whl/ and mamba-ssm's CUDA sources in .peers/ (both fetched by
# `make peers` where PyPI can be reached). Usage: sh bench/run_gpu.sh OUT_DIR [--quick]
set -e
out=${1:-bench/results/latest}
shift || true
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/ssmc-peers .whl/*.whl
    export PYTHONPATH=/tmp/ssmc-peers:$PYTHONPATH
fi
[ -d .peers/selective_scan ] && export SSMC_MAMBA_CSRC=$PWD/.peers/selective_scan
[ -f .peers/build/selective_scan_cuda.so ] && export SSMC_PEER_BUILD=$PWD/.peers/build  # built by an earlier run
export PYTHONPATH=$PWD:$PYTHONPATH PYTHONUNBUFFERED=1
exec python3 -m ssmc.cli bench --out "$out" "$@"
