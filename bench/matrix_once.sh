# The matrix form (lower_matrix) on the GPU: a small check against the interpreter, then
# Mamba-2 and simple GLA forward against mamba-ssm / fla in one run (bench rows, copy rate).
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/ssmc-peers .whl/*.whl
PYTHONPATH=/tmp/ssmc-peers:$PWD python3 -c "
from ssmc.benchmark import workloads as w, peers
from ssmc.benchmark.measure import Ceilings
import json, os, torch
c = Ceilings.measure(); print('copy GB/s', round(c.copy/1e9))
print(w.check_ssmc_small('mamba2') or 'mamba2 small check ok')
ssd = peers.mamba_triton('mamba_chunk_scan_combined')
gla = peers.fla_op('fla.ops.simple_gla', 'chunk_simple_gla')
rows = []
for s in [(8, 2048, 32, 64, 128), (4, 8192, 80, 64, 128)]:
    rows += w.run_case(w.mamba2_case(*s, backward=False, ssd=ssd))
for s in [(8, 2048, 16, 128, 128), (8, 2048, 16, 64, 64)]:
    rows += w.run_case(w.gla_case(*s, gla=gla))
json.dump(dict(copy_gbs=c.copy/1e9, rows=rows), open(os.environ['OUT'] + '/matrix.json', 'w'), indent=1)
"
