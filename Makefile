# `make demo` and `make test` each build .venv from nothing when it is missing, then run.
PYTHON ?= python3
VENV := .venv

.PHONY: demo test bench clean

demo: $(VENV)/.installed
	$(VENV)/bin/leadpulse demo

test: $(VENV)/.installed
	$(VENV)/bin/pytest -q

bench: $(VENV)/.installed
	$(VENV)/bin/python bench/score.py --contacts 100000

$(VENV)/.installed:
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) var build *.egg-info
