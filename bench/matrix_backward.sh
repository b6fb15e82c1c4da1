# The matrix form's backward on the GPU: its tests (and Mamba-2's gradients against torch
# autograd), its gradients' error against a float64 loop at L 2048 and 8192, then
# bench/matrix_backward.py (speed against mamba-ssm). Writes under $OUT.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/ssmc-peers .whl/*.whl
export PYTHONPATH=/tmp/ssmc-peers:$PWD
python3 -m pytest -q -p no:warnings tests/test_matrix_backward.py -k "gpu or derivative or strategy or recurrent" 2>&1 | grep -E "^E  |passed|failed" | head -20 | tee $OUT/gpu-tests.txt
python3 -m pytest -q -p no:warnings tests/test_backward.py -k "torch_autograd and mamba2" 2>&1 | tail -1 | tee -a $OUT/gpu-tests.txt
python3 bench/matrix_backward_check.py 2048 2 2>&1 | tee $OUT/check.log
python3 bench/matrix_backward_check.py 8192 1 2>&1 | tee -a $OUT/check.log
python3 bench/matrix_backward.py 2>&1 | tee $OUT/matrix-backward.log
