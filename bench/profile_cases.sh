# per-kernel profiles on a GPU machine (no network): the peers' wheels from .whl/ (`make peers`),
# then bench/profile_cases.py. Usage: sh bench/profile_cases.sh CASE...
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/ssmc-peers .whl/*.whl 2>/dev/null
PYTHONPATH=/tmp/ssmc-peers:$PWD PYTHONUNBUFFERED=1 python3 bench/profile_cases.py "$@"
