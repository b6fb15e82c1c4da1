#!/bin/sh
# Nsight Compute on the default Mamba-1 forward (bench/ncu_mamba1_fwd.py), clocks left alone;
# SCRIPT and REGEX pick another script and kernels (the backward: SCRIPT=bench/ncu_mamba1_bwd.py
# REGEX=bidir). Usage: [SCRIPT=..] [REGEX=..] sh bench/ncu_mamba1_fwd.sh OUT_DIR [SHAPE_INDEXES]
out=${1:-/tmp}
name=$(basename ${SCRIPT:-bench/ncu_mamba1_fwd.py} .py)
export PYTHONPATH=$PWD:$PYTHONPATH
ncu --clock-control none --profile-from-start off --kernel-name regex:${REGEX:-mamba1} \
    --section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats \
    --section SchedulerStats --section Occupancy --section InstructionStats --section LaunchStats \
    --metrics smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_short_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_math_pipe_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_mio_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_wait_per_issue_active.ratio,smsp__average_warps_issue_stalled_not_selected_per_issue_active.ratio,smsp__average_warps_issue_stalled_selected_per_issue_active.ratio,smsp__average_warps_issue_stalled_dispatch_stall_per_issue_active.ratio,smsp__average_warps_issue_stalled_no_instruction_per_issue_active.ratio,smsp__average_warps_issue_stalled_lg_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio,smsp__average_warps_issue_stalled_branch_resolving_per_issue_active.ratio,smsp__average_warps_issue_stalled_drain_per_issue_active.ratio,smsp__average_warps_issue_stalled_imc_miss_per_issue_active.ratio,sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_alu.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_fma.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_fmaheavy.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_lsu.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_uniform.avg.pct_of_peak_sustained_active,sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active,sm__pipe_xu_cycles_active.avg.pct_of_peak_sustained_active,smsp__inst_executed.sum,sm__cycles_elapsed.avg.per_second \
    --page details --csv python3 ${SCRIPT:-bench/ncu_mamba1_fwd.py} $2 > "$out/$name.csv" 2> "$out/$name.err"
echo "ncu exit $?"
tail -3 "$out/$name.err"
python3 - "$out/$name.csv" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
hdr = rows[0]
ix = {h: i for i, h in enumerate(hdr)}
want = ("Duration", "Issue Slots Busy", "Issued Warp Per Scheduler", "No Eligible", "Active Warps Per Scheduler",
        "Eligible Warps Per Scheduler", "Warp Cycles Per Issued Instruction", "Executed Ipc Active", "Achieved Occupancy",
        "Registers Per Thread", "SM Busy", "Compute (SM) Throughput", "Memory Throughput", "Grid Size", "Block Size")
for r in rows[1:]:
    if len(r) < len(hdr):
        continue
    name, metric, unit, val = r[ix["Kernel Name"]], r[ix["Metric Name"]], r[ix["Metric Unit"]], r[ix["Metric Value"]]
    if any(w in metric for w in want) or metric.startswith(("smsp__", "sm__")):
        print(f"{r[ix['ID']]:>3} {name[:28]:28s} {metric[:45]:45s} {val:>12} {unit}")
PY
