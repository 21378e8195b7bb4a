# Set-up and the main jobs. Every target creates .venv on first use, pinned by the constraints
# file of its Python (constraints-3.11.txt, constraints-3.13.txt: `pip freeze` of a passing venv).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
PY_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
CONSTRAINTS := constraints-$(PY_VERSION).txt

# The floor check on Python 3.13: its own venv, pinned by constraints-3.13.txt, and a short
# selection: import and extras, the README's kernel example, the kernels against jax.nn and the
# float64 references, the language model (forward, masks, KV cache), the pydoc corpus.
PYTHON313 ?= python3.13
VENV313 := .venv-py313
STAMP313 := $(VENV313)/.installed
PY313_TESTS := tests/extras_test.py tests/readme_test.py::test_readme_kernel_example_runs \
  tests/kernels/attention_test.py tests/kernels/multihead_test.py tests/models/lm_test.py \
  tests/data/builders_test.py::test_pydoc_corpus_splits_documents_without_overlap \
  tests/data/builders_test.py::test_pydoc_corpus_is_the_shipped_snapshot_on_every_python

.PHONY: test test-py313 bench lint format clean train notebooks colab-replica

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -c $(CONSTRAINTS) -e '.[test]' > $(VENV)/pip.log 2>&1 \
	  || { grep -v "is ignored" $(VENV)/pip.log; exit 1; }
	$(VENV)/bin/python -c "import attn, jax, flax"
	touch $(STAMP)

$(CONSTRAINTS):
	@echo "no $(CONSTRAINTS): attn pins Python 3.11 and 3.13; run make with PYTHON=python3.11"; exit 1

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest

$(STAMP313): pyproject.toml constraints-3.13.txt
	test -d $(VENV313) || $(PYTHON313) -m venv $(VENV313)
	$(VENV313)/bin/pip install -c constraints-3.13.txt -e '.[test]' > $(VENV313)/pip.log 2>&1 \
	  || { grep -v "is ignored" $(VENV313)/pip.log; exit 1; }
	$(VENV313)/bin/python -c "import attn, jax, flax"
	touch $(STAMP313)

test-py313: $(STAMP313)
	$(VENV313)/bin/python -m pytest -q -m "not slow" -k "not dropout" $(PY313_TESTS)

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
	rm -rf $(VENV) $(VENV313) .venv-colab .pytest_cache .hypothesis
