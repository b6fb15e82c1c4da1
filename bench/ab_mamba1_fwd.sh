#!/bin/sh
# The Mamba-1 forward's defaults in this tree against a base tree (a `git archive` of an earlier
# commit), interleaved in one run: two rounds of bench/sweep_mamba1.py each.
# Usage: sh bench/ab_mamba1_fwd.sh BASE.tar OUT_DIR
base=$1
out=${2:-/tmp}
mkdir -p /tmp/ab-base && tar -xf "$base" -C /tmp/ab-base
for round in 1 2; do
    for side in base new; do
        if [ $side = base ]; then pp=/tmp/ab-base; else pp=$PWD; fi
        echo "== $side, round $round"
        mkdir -p "$out/$side$round"
        OUT="$out/$side$round" PYTHONPATH=$pp python3 bench/sweep_mamba1.py '[{}]' | grep -E "copy rate|err|B[0-9]+ L"
    done
done
