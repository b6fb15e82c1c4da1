# The matrix backward's 16-bit products for dk and dq (MODE=low: low_precision=True, wherever
# no float32 accuracy is needed) under compute-sanitizer memcheck, several shapes at once: where
# they run clean, MatrixBackward's default may take them (_MatrixPart.LOW_*); N 32 at P 64 is
# the known fault (session 9, at B8 L2048 H32), the positive control: at B2 L1024 H8 it ran
# clean (session 14, H200), so smaller sizes prove nothing; SIZES sets them. Usage on a GPU
# machine: sh bench/sanitize_matrix_low.sh; logs in $OUT/san_*.log, a summary printed.
OUT=${OUT:-/tmp}  # (the lent machine brings back 8 files a call: read the printed summary)
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
run() {  # name, then env assignments
    name=$1; shift
    env "$@" ${SIZES:-B=8 L=2048 H=32} compute-sanitizer --tool memcheck --print-limit 3 python3 bench/debug_conv_oob.py > "$OUT/san_$name.log" 2>&1 &
}
run control_N32_P64 PLAIN=1 MODE=low N=32 P=64
run N48_P64 PLAIN=1 MODE=low N=48 P=64
run N64_P32 PLAIN=1 MODE=low N=64 P=32
run N64_P64 PLAIN=1 MODE=low N=64 P=64
run N64_P128 PLAIN=1 MODE=low N=64 P=128
run N128_P32 PLAIN=1 MODE=low N=128 P=32
run N128_P64 PLAIN=1 MODE=low N=128 P=64
run N128_P128 PLAIN=1 MODE=low N=128 P=128
run N256_P64 PLAIN=1 MODE=low N=256 P=64
run conv_N64_P64 MODE=low N=64 P=64
run conv_N128_P64 MODE=low N=128 P=64
run conv_strided_N128_P64 STRIDED=1 MODE=low N=128 P=64
wait
for f in "$OUT"/san_*.log; do
    printf '%-40s %s | %s\n' "$(basename "$f" .log)" "$(grep -h 'ERROR SUMMARY' "$f" | tail -1)" "$(grep -c 'backward ok' "$f") backward ok"
done
