# acmebridge: every command a user or CI runs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/operator:$(CURDIR)

.PHONY: help venv lint unit test run demo bench clean

help: ## list the commands
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | column -t -s $$'\t'

# The venv is rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	@echo ">> installing acmebridge and its dev tools into $(VENV)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip >/dev/null
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed ## install the project and its dev tools into .venv

include hack/lab.mk
include hack/chart.mk
include hack/node.mk

lint: venv ## ruff, mypy --strict, import-linter
	$(VENV)/bin/ruff check operator tests bench
	$(VENV)/bin/ruff format --check operator tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: venv ## fast tests: pure logic and the stand-ins' own tests (no lab); coverage of domain/ and reconcile/
	hack/pytest.sh -m "not lab" tests --cov=acmebridge.domain --cov=acmebridge.reconcile \
		--cov-report=term:skip-covered

test: venv lint lab-up ## everything: lint, unit and lab tests, then the real node's (starts what is needed)
	hack/pytest.sh -m "not node and not node_restart" tests
	@$(MAKE) --no-print-directory node-up image NODE=
	hack/pytest.sh -m "node and not node_restart" tests
	hack/pytest.sh -m node_restart tests

run: venv ## the operator against $$KUBECONFIG (with the lab's settings when it is the lab)
	hack/run.sh

demo: venv lab-up ## lab + operator + examples/, then print the issued certificate
	hack/demo.sh

# The benchmark's extras (matplotlib, py-spy) are installed only for `make bench`.
$(VENV)/.bench-installed: pyproject.toml $(VENV)/.installed
	@echo ">> installing the benchmark's extras into $(VENV)"
	@$(PY) -m pip install -q -e '.[dev,bench]'
	@touch $@

bench: venv lab-up $(VENV)/.bench-installed ## acmebridge beside lego, 200 certificates (PROFILE=1, SCALE=5000, BENCH_N=)
	$(PY) -m bench.run $(if $(BENCH_N),--n $(BENCH_N)) \
		$(if $(filter 1 yes true,$(PROFILE)),--profile) $(if $(SCALE),--scale $(SCALE))

clean: lab-down ## stop the lab and remove build output
	rm -rf .lab .bench
