# The two commands a newcomer needs:
#   make demo   pgvigil on an embedded PostgreSQL with a demo database, no set-up
#   make test   installs what the tests need (venv, pip, Debian packages) and runs them all
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint unit system-packages clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=25.1"
	$(PY) -m pip install --quiet -e '.[demo]' --group dev
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/pgvigil demo

system-packages:
	bash scripts/install-system-packages

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check
	$(VENV)/bin/ruff format --check
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: $(VENV)/.installed system-packages lint
	$(PY) -m pytest $(PYTEST_ARGS)

unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
