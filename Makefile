# Two entry points matter: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test unit venv clean reliability

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(PY) -m plugin serve

test: $(STAMP)
	$(PY) -m pytest -ra $(PYTEST_ARGS)

unit: $(STAMP)
	$(PY) -m pytest -ra tests/unit

clean:
	rm -rf $(VENV) build *.egg-info

# Crash, fault, hostile-input and soak tests at full size (10,000 cycles);
# writes build/reliability.json and build/reliability.md (see docs/reliability.md).
reliability: $(STAMP)
	$(PY) -m tests.reliability.report
