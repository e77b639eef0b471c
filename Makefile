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
	# An editable install compiles nothing, and with PYTHONDONTWRITEBYTECODE=1 every process would
	# compile trackd again (a short run process +136 ms against +55 ms); compileall writes it anyway.
	$(PY) -m compileall -q trackd
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(PY) examples/demo.py

test: $(VENV)/.installed-test
	$(PY) -m mypy
	# Two workers (pytest-xdist): the tests mostly wait on daemons, children and signals.
	$(PY) -m pytest -n 2

$(VENV)/.installed-bench: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet -e '.[bench]'
	touch $@

# Every benchmarks/bench_*.py with its defaults (about a minute each); tables on stdout, JSON in benchmarks/results/.
BENCHMARKS := $(patsubst benchmarks/bench_%.py,%,$(wildcard benchmarks/bench_*.py))
bench: $(VENV)/.installed-bench
	mkdir -p benchmarks/results
	set -e; for b in $(BENCHMARKS); do echo "== bench_$$b.py"; $(PY) benchmarks/bench_$$b.py --json benchmarks/results/$$b.json; done

clean:
	rm -rf $(VENV) mlruns .pytest_cache .mypy_cache .hypothesis

# The long fuzz run: 100,000 random and mutated frames against a real daemon (a few minutes).
.PHONY: fuzz
fuzz: $(VENV)/.installed-test
	TRACKD_FUZZ_FRAMES=100000 $(PY) -m pytest -q tests/daemon/test_fuzz.py
