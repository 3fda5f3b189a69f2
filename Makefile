# Two commands: `make book` and `make test`. Everything else is a step they take.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= default

.PHONY: install book test zoo clean-book

install: $(STAMP)

# torch first, by exact version: on the project's CPU machines 2.13.0 installs from a local wheel, and
# installing it before anything else keeps other packages from pulling a CUDA build.
$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name sae-transfer --display-name "Python (sae-transfer)"
	touch $(STAMP)

zoo: $(STAMP)
	$(PY) -m sae_transfer zoo build --profile $(PROFILE)

book: $(STAMP)
	$(PY) -m sae_transfer book --profile $(PROFILE)

test: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest

clean-book:
	rm -rf book/_build book/chapters/*.ipynb book/status.md
