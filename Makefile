# Set-up is part of every target: a local virtual environment, created once and reused.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ssmc-installed

.PHONY: demo test fuzz lint gpu-test clean bench peers

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

# one worker per core (pytest-xdist): 19.6-23 min on a 2-core machine like CI's, against 32-37
# serially (bench/NOTES.md, session 17); TEST_WORKERS=0 runs in one process
TEST_WORKERS ?= auto
test: $(STAMP)
	$(BIN)/ruff check ssmc tests examples
	HYPOTHESIS_PROFILE=ci $(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m "not slow" tests

fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q tests/test_fuzz_programs.py tests/test_kernels.py tests/test_passes.py tests/test_complex.py
	for t in examples/mamba1.py:mamba1 examples/s4d.py:s4d_zoh examples/s4d.py:s4d_bilinear examples/mingru.py:mingru \
		examples/hgrn.py:hgrn examples/rglru.py:rglru examples/mamba2.py:mamba2 examples/gla.py:gla examples/gla.py:simple_gla \
		examples/lru.py:lru examples/bimamba.py:bimamba; do \
		$(BIN)/ssmc fuzz $$t --examples 500 --seed $$RANDOM || exit 1; done

# The peers of `ssmc bench` (mamba-ssm's Triton kernels as a pure-Python wheel, its CUDA scan's
# sources, flash-linear-attention's fla-core): fetched here, where PyPI can be reached, into
# .whl/ and .peers/ (both ignored by git), to travel to a GPU machine that has no network.
MAMBA := mamba-ssm==2.3.2.post1
SDIST := /tmp/ssmc-sdist
peers: $(STAMP)
	mkdir -p .whl .peers $(SDIST)
	MAMBA_FORCE_BUILD=TRUE MAMBA_SKIP_CUDA_BUILD=TRUE $(BIN)/pip download -q --no-deps --no-binary :all: --no-build-isolation $(MAMBA) -d $(SDIST)
	tar xzf $(SDIST)/mamba_ssm-2.3.2.post1.tar.gz -C $(SDIST)
	cd $(SDIST)/mamba_ssm-2.3.2.post1 && MAMBA_FORCE_BUILD=TRUE MAMBA_SKIP_CUDA_BUILD=TRUE $(CURDIR)/$(BIN)/pip wheel -q --no-deps --no-build-isolation . -w $(CURDIR)/.whl
	rm -rf .peers/selective_scan && cp -r $(SDIST)/mamba_ssm-2.3.2.post1/csrc/selective_scan .peers/
	$(BIN)/pip download -q --no-deps --only-binary=:all: -d .whl fla-core==0.6.0

# On a GPU machine (its own python3 with torch and triton; no network needed): see bench/run_gpu.sh
BENCH_OUT ?= bench/results/latest
bench:
	sh bench/run_gpu.sh $(BENCH_OUT)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
