# On a GPU machine, at once: the matrix backward's GPU tests (and the whole of
# test_matrix_backward, test_matrix) under pytest-xdist, and Mamba-2's forward+backward at the
# benchmark size with the default precision under compute-sanitizer memcheck (SAN: the sizes;
# N 32 is session 9's faulting shape, 16-bit dk where it was: now float32-accurate by default).
# Usage: sh bench/gpu_tests_and_sanitizer.sh [pytest args]; logs in $OUT.
OUT=${OUT:-/tmp}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 HYPOTHESIS_PROFILE=ci
for s in "N=128 P=64" "N=32 P=64"; do
    tag=$(echo "$s" | tr -d ' =')
    env PLAIN=1 B=8 L=2048 H=32 $s timeout 500 compute-sanitizer --tool memcheck --print-limit 3 \
        python3 bench/debug_conv_oob.py > "$OUT/san_$tag.log" 2>&1 &
done
timeout 520 python3 -m pytest -q -n 8 -p no:cacheprovider tests/test_matrix_backward.py tests/test_matrix.py "$@" 2>&1 \
    | tee "$OUT/pytest.log" | grep -v -E "^\.+|Warning|warnings.warn" | tail -25
wait
for f in "$OUT"/san_*.log; do
    printf '%-20s %s | %s\n' "$(basename "$f" .log)" "$(grep -h 'ERROR SUMMARY' "$f" | tail -1)" "$(grep -c 'backward ok' "$f") backward ok"
done
