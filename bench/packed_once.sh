# Packed batches (64 sequences, 64..4096 steps) against padding and mamba-ssm's seq_idx, one run.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/ssmc-peers .whl/*.whl 2>/dev/null
PYTHONPATH=/tmp/ssmc-peers:$PWD python3 -c "
from ssmc.benchmark import workloads as w, peers
from ssmc.benchmark.measure import Ceilings
import json, os, torch
c = Ceilings.measure(); print('copy GB/s', round(c.copy/1e9), 'lengths', sum(w.packed_lengths()), 'tokens, longest', max(w.packed_lengths()))
ssd = peers.mamba_triton('mamba_chunk_scan_combined')
rows = []
for name in ('mamba2', 'mamba1'):
    for b in (False, True):
        rows += w.run_case(w.packed_case(name, b, ssd=ssd))
        torch.cuda.empty_cache()
json.dump(dict(copy_gbs=c.copy/1e9, rows=rows), open(os.environ['OUT'] + '/packed.json', 'w'), indent=1)
"
