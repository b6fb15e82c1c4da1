# Session 23's second device call (planned; no machine was lent after the first hour): the
# tile-alignment hint's decision and Mamba-2 at the long shape. Usage: sh bench/session23_gpu_2.sh
OUT=${OUT:-/tmp}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
# 1. the whole suite with the hint on: name session 22's failure; if the hint is not its cause,
#    run.ALIGN_BASES goes on by default
SSMC_ALIGN_BASES=1 WORKERS=14 LIMIT=200 sh bench/gpu_suite.sh > "$OUT/suite_aligned.log" 2>&1; tail -14 "$OUT/suite_aligned.log"; grep -E "^E  " "$OUT/suite.log" | head -20
# 2. the hint off and on in one run (all six cases)
timeout 100 python3 bench/aligned_ab_gpu.py > "$OUT/aligned_ab.log" 2>&1; tail -8 "$OUT/aligned_ab.log"
# 3. Mamba-2 B4 L8192 H80 fwd+bwd: chunks of 128 / 256 steps against 64, the backward's, both,
#    the forward's (chunk states stored half / a quarter as often: by the byte count the states'
#    traffic is ~4x the inputs' at 64)
SHAPE=4,8192,80 TIMED="matrix default,chunks of 128,chunks of 128 fwd+bwd,fwd chunks of 256" timeout 250 sh bench/dl_gpu.sh > "$OUT/dl_long.log" 2>&1; tail -12 "$OUT/dl_long.log"
