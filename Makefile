# Set-up and the main jobs. Every target creates .venv on first use.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: test bench lint format clean train notebooks colab-replica

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -c constraints.txt -e '.[test]' > $(VENV)/pip.log 2>&1 \
	  || { grep -v "is ignored" $(VENV)/pip.log; exit 1; }
	$(VENV)/bin/python -c "import attn, jax, flax" 
	touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest

# The Colab notebooks at ci scale (also part of `make test`).
notebooks: $(STAMP)
	$(VENV)/bin/python -m pytest -q tests/colab_test.py

# The notebooks in a fresh Python 3.13 venv with Colab's package versions, through their own
# set-up cell (CPU path, ATTN_SOURCE = this checkout); numpy/ipykernel/ipython must survive.
PYTHON_COLAB ?= python3.13
colab-replica: $(STAMP)
	$(VENV)/bin/python colab/replica.py --python $(PYTHON_COLAB) --venv .venv-colab

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/attention.py
	$(VENV)/bin/python benchmarks/train_step.py
	$(VENV)/bin/python benchmarks/decoding.py

# The main job: a small Transformer learns date-format translation on this CPU in a few minutes
# (generated data, progress bar, checkpoints, TensorBoard logs, attention maps in runs/dates).
train: $(STAMP)
	$(VENV)/bin/python experiments/train.py --config experiments/configs/dates.py --workdir runs/dates

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .venv-colab .pytest_cache .hypothesis
