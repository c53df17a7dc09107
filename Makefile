# evalsuite: every target creates .venv and installs the project when missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# GPU=1: onnxruntime-gpu (CUDA and TensorRT execution providers) instead of the CPU onnxruntime.
# The two wheels install the same `onnxruntime` package and overwrite each other's files, so the
# install step removes both and puts back exactly one (docs/gpu.md).
GPU    ?= 0
STAMP  := $(VENV)/.evalsuite-installed$(if $(filter 1,$(GPU)),-gpu,-cpu)
ORT_GPU ?= onnxruntime-gpu[cuda,cudnn]>=1.20
# Two workers (pytest-xdist) on CI's two cores: the fast suite stays well under 15 minutes.
PYTEST_ARGS ?= -n 2

.PHONY: setup demo test test-slow test-all bench lint clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@if $(BIN)/python -m pip show -q onnxruntime-gpu >/dev/null 2>&1; then \
	  $(BIN)/python -m pip uninstall --quiet -y onnxruntime-gpu onnxruntime; fi
	$(BIN)/python -m pip install --quiet -e '.[dev]'
ifeq ($(GPU),1)
	$(BIN)/python -m pip uninstall --quiet -y onnxruntime
	$(BIN)/python -m pip install --quiet '$(ORT_GPU)'
endif
	@rm -f $(VENV)/.evalsuite-installed*
	@touch $(STAMP)

setup: $(STAMP)

## The main job on the built-in data: train the demo CNN, export ONNX, run, write reports/demo/.
demo: $(STAMP)
	$(BIN)/evalsuite demo --out reports/demo

## The test suite CI runs (slow tests excluded; see test-slow).
test: $(STAMP)
	CI=$${CI:-1} $(BIN)/python -m pytest -m "not slow and not gpu" -q $(PYTEST_ARGS)

## Long parity grids and acceptance-sized checks.
test-slow: $(STAMP)
	CI=$${CI:-1} $(BIN)/python -m pytest -m "slow" -q $(PYTEST_ARGS)

test-all: $(STAMP)
	CI=$${CI:-1} $(BIN)/python -m pytest -q $(PYTEST_ARGS)

## Side-by-side speed benchmarks against the reference libraries (results in benchmarks/results/).
bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit $$?; done

lint: $(STAMP)
	$(BIN)/ruff check evalsuite training tests benchmarks
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
