#!/bin/sh
# Nsight Compute on Mamba-2's forward+backward (bench/ncu_mamba2_bwd.py), clocks left alone: the
# matrix-scan kernels' throughputs, occupancy and stall reasons. Usage: sh bench/ncu_mamba2_bwd.sh OUT_DIR
out=${1:-/tmp}
export PYTHONPATH=$PWD:$PYTHONPATH
ncu --clock-control none --profile-from-start off --kernel-name regex:mamba2 \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats \
    --section Occupancy --section LaunchStats --section ComputeWorkloadAnalysis \
    --metrics smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_short_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_math_pipe_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_mio_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_wait_per_issue_active.ratio,smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio,smsp__average_warps_issue_stalled_lg_throttle_per_issue_active.ratio,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_fma.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_lsu.avg.pct_of_peak_sustained_active,dram__bytes_read.sum,dram__bytes_write.sum,smsp__inst_executed.sum,launch__registers_per_thread,lts__t_sector_hit_rate.pct \
    --page details --csv python3 bench/ncu_mamba2_bwd.py > "$out/ncu_mamba2_bwd.csv" 2> "$out/ncu_mamba2_bwd.err"
echo "ncu exit $?"
tail -3 "$out/ncu_mamba2_bwd.err"
python3 - "$out/ncu_mamba2_bwd.csv" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
hdr = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
ix = {h: i for i, h in enumerate(rows[hdr])}
want = ("Duration", "Issue Slots Busy", "No Eligible", "Achieved Occupancy", "Theoretical Occupancy",
        "Registers Per Thread", "Compute (SM) Throughput", "Memory Throughput", "DRAM Throughput", "Grid Size",
        "Block Size", "Dynamic Shared Memory Per Block", "Static Shared Memory Per Block", "Block Limit")
for r in rows[hdr + 1:]:
    if len(r) < len(ix):
        continue
    name, metric, unit, val = r[ix["Kernel Name"]], r[ix["Metric Name"]], r[ix["Metric Unit"]], r[ix["Metric Value"]]
    if any(x in metric for x in want) or metric.startswith(("smsp__", "sm__", "dram__", "lts__", "launch__")):
        print(f"{r[ix['ID']]:>3} {name[-26:]:26s} {metric[:50]:50s} {val:>14} {unit}")
PY
