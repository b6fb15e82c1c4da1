# Session 23's measurements in one device call, most wanted first, each under its own timeout
# and logged to $OUT (what a cut call leaves still comes back). Usage: sh bench/session23_gpu.sh
OUT=${OUT:-/tmp}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
# 1. float32 rows of B / C (issue 3's B2 L8192 at the bar's edge); the compiler's own widening
timeout 230 python3 bench/wide_rows_gpu.py > "$OUT/wide_rows.log" 2>&1; tail -16 "$OUT/wide_rows.log"
# 2. Mamba-1's backward main kernel at B8 L2048 (issue 5): register caps, channel blocks, unroll,
#    time split; gradients checked against the default's
#    (sm_90 compiles, bench/aot_new_kernels.py mamba1_backward: the default 255 registers + 80 B
#    of stack, 8 warps an SM; unroll 1 233; unroll 1 blocks of 8 channels 161 at a cap of 168, no
#    stack, 56 B at 128; unroll 1 at 168 104 B; phase A0's loads a chunk ahead: its loop 294 -> 321
#    instructions, stack 72 -> 104 B)
SHAPES=0,2 timeout 210 python3 bench/sweep_backward.py '[{"prefetch_a0": true}, {"unroll": 1}, {"unroll": 1, "main_block": 8, "maxnreg": 128}, {"unroll": 1, "main_block": 8, "maxnreg": 168}, {"chunks": 2, "unroll": 1, "maxnreg": 168}, {"unroll": 1, "main_block": 8, "maxnreg": 128, "chunks": 2}]' mamba1 > "$OUT/sweep_backward.log" 2>&1; tail -13 "$OUT/sweep_backward.log"
# 3. where the main kernel's cycles go (stall reasons)
SCRIPT=bench/ncu_mamba1_bwd.py REGEX=bidir timeout 110 sh bench/ncu_mamba1_fwd.sh "$OUT" > "$OUT/ncu_bwd.log" 2>&1; grep -E "Duration|Issue Slots|Eligible|No Eligible|Warp Cycles Per Issued|stalled_(long|short|barrier|math|mio|wait|not_sel|lg)|Occupancy|Registers" "$OUT/ncu_bwd.log" | head -30
