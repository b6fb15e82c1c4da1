python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/ssmc-peers .whl/*.whl
PYTHONPATH=/tmp/ssmc-peers:$PWD python3 -c "
from ssmc.benchmark import workloads as w, peers
from ssmc.benchmark.measure import Ceilings
import torch
c = Ceilings.measure(); print('copy GB/s', c.copy/1e9)
gla = peers.fla_op('fla.ops.simple_gla', 'chunk_simple_gla')
print(w.check_ssmc_small('mamba2') or 'mamba2 small check ok')
for s in [(8, 2048, 16, 128, 128), (8, 2048, 16, 64, 64)]:
    case = w.gla_case(*s, gla=gla)
    for r in w.run_case(case): print(r)
"
