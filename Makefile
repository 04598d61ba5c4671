# Every target sets up its own virtual environment first (.venv, rebuilt when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test test-fast demo docs lint format clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install -q -e ".[test,monai,onnx,docs]"
	touch $(STAMP)

# Lint, the docs site and the whole suite, slow integration tests included (what CI runs).
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(MAKE) docs
	$(PY) -m pytest --durations=15 --timeout=1800 tests

# The documentation site (docs/, mkdocs.yml) into site/; --strict: a broken link, a missing
# reference or a docstring that names a parameter the signature lacks is an error.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

# Everything but the tests marked slow.
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" -x -q tests

# The main job: a short CPU training run of `none` and `hyb` on the built-in synthetic data.
demo: $(STAMP)
	$(PY) -m dsplug demo --out runs/demo --overwrite

lint: $(STAMP)
	$(PY) -m ruff check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build site *.egg-info
