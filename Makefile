# The two commands a newcomer needs: `make demo` and `make test`. Each sets up what it needs, idempotently.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test check bench soak setup redis-server java clean

setup: $(STAMP) redis-server java

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# A private redis-server is started by the demo and the tests themselves; this only makes sure the
# binary exists. Skipped for the demo when FEAST_SEQUENCE_REDIS points at an existing Redis.
redis-server:
	@bash scripts/ensure_redis_server.sh

# Spark (training data, materialization, the offline jobs) needs Java 17+.
java:
	@bash scripts/ensure_java.sh

demo: $(STAMP) java
	@if [ -z "$$FEAST_SEQUENCE_REDIS" ]; then bash scripts/ensure_redis_server.sh; fi
	$(VENV)/bin/feast-sequence demo --repo feature_repo

# Quality gates: lint, strict typing of feast_sequence and its layers (configured in pyproject.toml).
check: $(STAMP)
	$(PY) -m ruff check plugin transformations validations tests
	$(PY) -m ruff format --check plugin transformations validations tests
	$(PY) -m mypy
	bash scripts/lint_imports.sh $(VENV)/bin

# The suite on two processes (pytest-xdist), each with its own Redis, Spark session and temporary
# repositories; a test file stays in one process, so its module-scoped fixtures are built once.
test: setup check
	$(PY) -m pytest -q -n 2 --dist loadfile

bench: setup
	$(PY) tests/benchmarks/run_benchmarks.py

# The long run of the model-based test (tests/test_sequence_model.py): SOAK_EXAMPLES random histories
# of 60 steps per variant (about 0.08 s a step), then the number of steps run without a counterexample;
# and of the served-equals-reference property (tests/test_semantics_property.py, 30 under `make test`).
SOAK_EXAMPLES ?= 1000
soak: setup
	FEAST_SEQUENCE_SOAK_EXAMPLES=$(SOAK_EXAMPLES) $(PY) -m pytest -q --timeout=0 tests/test_sequence_model.py tests/test_semantics_property.py

clean:
	rm -rf $(VENV) build .pytest_cache .hypothesis
