# Packed batches on a GPU machine (no network): the peers' wheels from .whl/ (`make peers`),
# then bench/packed_gpu.py. Usage: sh bench/packed_gpu.sh [--also]
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/ssmc-peers .whl/*.whl 2>/dev/null
PYTHONPATH=/tmp/ssmc-peers:$PWD PYTHONUNBUFFERED=1 python3 bench/packed_gpu.py "$@"
