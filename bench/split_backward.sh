#!/bin/sh
# Mamba-1's (and HGRN's) backward with the main kernel's sequence split among programs:
# the default against the unsplit kernel (split_time=False) and chunk counts, backward alone;
# then per-kernel times of forward+backward at the default.
# Usage on the GPU machine: sh bench/split_backward.sh ['<configs as JSON>']
OUT=${OUT:-/tmp}
CONFIGS=${1:-'[{"split_time": false}, {"chunks": 1}, {"chunks": 2}, {"chunks": 4}, {"chunks": 8}, {"chunks": 16}]'}
python bench/sweep_backward.py "$CONFIGS" mamba1,hgrn 2>&1 | grep -v Warning | tee $OUT/sweep_split.log
python bench/profile_mamba1_bwd.py 2>&1 | grep -v -i warn | tee $OUT/profile_bwd.log
