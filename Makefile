# `make demo`, `make test` and `make lint` each build .venv from nothing when it is missing (or older than
# pyproject.toml), then run.
PYTHON ?= python3
VENV := .venv
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
# mypy reads the packages under their import name through this tree of links (see [tool.mypy] in pyproject.toml)
TYPECHECK := build/typecheck/leadpulse

.PHONY: demo test lint bench clean

demo: $(VENV)/.installed
	$(VENV)/bin/leadpulse demo

# a worker a core (CI has two: measured, more workers than cores is slower); loadgroup keeps the tests marked with one xdist_group on one worker
test: $(VENV)/.installed
	$(VENV)/bin/pytest -q -n auto --dist loadgroup

lint: $(VENV)/.linters
	$(VENV)/bin/ruff check .
	rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)
	ln -s ../../../core ../../../connectors ../../../sandbox $(TYPECHECK)/
	$(VENV)/bin/mypy $(TYPECHECK) tests bench | sed 's#^$(TYPECHECK)/##'

bench: $(VENV)/.installed
	$(VENV)/bin/python bench/score.py --contacts 100000

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

$(VENV)/.linters: $(VENV)/.installed
	$(VENV)/bin/pip install -q -e '.[test,lint]'
	touch $@

clean:
	rm -rf $(VENV) var build *.egg-info
