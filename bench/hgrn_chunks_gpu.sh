# bench/hgrn_chunks_gpu.py on a GPU machine (no network): the peers' wheels from .whl/ (`make peers`).
# Usage: sh bench/hgrn_chunks_gpu.sh
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/ssmc-peers .whl/*.whl 2>/dev/null
PYTHONPATH=/tmp/ssmc-peers:$PWD PYTHONUNBUFFERED=1 python3 bench/hgrn_chunks_gpu.py "$@"
