# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# MLflow 3.13+ refuses to open a file store without this opt-out; telemetry stays off in tests and demos.
export MLFLOW_ALLOW_FILE_STORE := true
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: demo test typecheck bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(PY) examples/demo.py

test: $(VENV)/.installed-test
	$(PY) -m mypy
	$(PY) -m pytest

clean:
	rm -rf $(VENV) mlruns .pytest_cache .mypy_cache .hypothesis
