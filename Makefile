# Set-up is part of every target: a local virtual environment, created once and reused.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ssmc-installed

.PHONY: demo test fuzz lint gpu-test clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch 2.13.0 is a CPU wheel on this kind of machine; plain `torch` pulls CUDA packages
	$(BIN)/python -m pip install -q "torch==2.13.0" "triton==3.6.0" "numpy<2.4"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ssmc show examples/mamba1.py:mamba1 --stage ir
	$(BIN)/ssmc show examples/mamba1.py:mamba1 --stage kernel
	$(BIN)/ssmc run examples/mamba1.py:mamba1 --check

test: $(STAMP)
	$(BIN)/ruff check ssmc tests examples
	HYPOTHESIS_PROFILE=ci $(BIN)/python -m pytest -q -m "not slow" tests

fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q tests/test_fuzz_programs.py tests/test_kernels.py tests/test_passes.py
	for t in examples/mamba1.py:mamba1 examples/s4d.py:s4d_zoh examples/s4d.py:s4d_bilinear examples/mingru.py:mingru; do \
		$(BIN)/ssmc fuzz $$t --examples 500 --seed $$RANDOM || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
