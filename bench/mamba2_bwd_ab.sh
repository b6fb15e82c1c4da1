# On a GPU machine: Mamba-2's forward+backward timed against mamba-ssm by bench/dl_gpu.py in this
# tree (TIMED: its variants) and, with OLD (a directory holding an earlier commit's ssmc/,
# bench/, examples/, tests/, e.g. `git archive COMMIT ssmc bench examples tests | tar x -C
# old_tree`), in that one right after on the same warm GPU (an A/B of two commits); then the
# matrix backward's GPU tests (the benchmark kind of sizes). Logs and JSON in $OUT.
# Usage: [OLD=old_tree] [TIMED=...] [ACC="2048"] sh bench/mamba2_bwd_ab.sh
OUT=${OUT:-/tmp}
export HYPOTHESIS_PROFILE=ci PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name --format=csv,noheader
mkdir -p "$OUT/new"
OUT="$OUT/new" TIMED="${TIMED:-matrix default,rest on 1 warp,f32 results,chunks of 128}" timeout 210 sh bench/dl_gpu.sh $ACC > "$OUT/new.log" 2>&1
grep -v -E "Warn|warn" "$OUT/new.log" | cut -c1-120 | tail -60
if [ -n "$OLD" ]; then
    mkdir -p "$OUT/old"
    (cd "$OLD" && ln -sf ../.whl .whl && OUT="$OUT/old" TIMED="matrix default" timeout 130 sh bench/dl_gpu.sh > "$OUT/old.log" 2>&1)
    grep -v -E "Warn|warn" "$OUT/old.log" | cut -c1-120 | tail -25
fi
PYTHONPATH=$PWD timeout 120 python3 -m pytest -v -p no:cacheprovider -m gpu tests/test_matrix_backward.py -k benchmark_kind \
    > "$OUT/gpu_tests.log" 2>&1
grep -E "PASSED|FAILED|^E  " "$OUT/gpu_tests.log" | cut -c1-200 | head -24
