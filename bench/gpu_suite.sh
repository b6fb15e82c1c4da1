# On a GPU machine: the whole test suite on the GPU (conftest runs every kernel there, not in
# the interpreter), one failing case first in verbose if named. Logs in $OUT.
# Usage: [FIRST="tests/x.py -k sel"] [WORKERS=12] [LIMIT=480] sh bench/gpu_suite.sh [pytest args]
OUT=${OUT:-/tmp}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 HYPOTHESIS_PROFILE=ci
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
if [ -n "$FIRST" ]; then
    timeout 150 python3 -m pytest -x -v -p no:cacheprovider -m gpu $FIRST 2>&1 | tee "$OUT/first.log" | tail -60
fi
timeout "${LIMIT:-480}" python3 -m pytest -v -n "${WORKERS:-12}" -p no:cacheprovider --durations=15 \
    --junitxml="$OUT/suite.xml" tests "$@" > "$OUT/suite.log" 2>&1
echo "rc $?"
grep -E "FAILED|ERROR" "$OUT/suite.log" | grep -v "^E " | sort | uniq | head -40
tail -25 "$OUT/suite.log"
