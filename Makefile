# Two commands matter (README): `make demo` and `make test`. Both set up everything they need
# on a Debian 12 machine as root: Debian packages, a Python venv, the sandbox hosts.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOSTS ?= 3

.PHONY: demo test unit bench deps venv lab-up lab-down clean

$(BIN)/fab: pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

venv: $(BIN)/fab

# Debian packages for the sandbox hosts (sshd, PHP-FPM, nginx, Laravel, rsync, acl, curl), and
# chromium for the tests of the HTML report.
deps: venv
	$(BIN)/python -c 'from deploy import lab; lab.ensure_packages()'

lab-up: deps
	$(BIN)/fab lab.up --hosts $(HOSTS)

lab-down: venv
	$(BIN)/fab lab.down

# The main job: start sandbox hosts, show the plan, deploy the sample app to all of them,
# show what is live (and prove it over HTTP).
demo: lab-up
	$(BIN)/fab plan --host lab1
	$(BIN)/fab deploy --host lab
	$(BIN)/fab releases --host lab
	@for port in $$(seq 8001 $$((8000 + $(HOSTS)))); do printf 'http://127.0.0.1:%s/version -> ' $$port; curl -s http://127.0.0.1:$$port/version; echo; done

# Every test: unit tests (plans as data) and behaviour tests on real sandbox hosts.
test: deps
	$(BIN)/pytest -q -p no:cacheprovider

unit: venv
	$(BIN)/pytest -q -p no:cacheprovider -m 'not lab' tests/test_inventory.py tests/test_pipeline.py tests/test_plans.py \
		tests/test_htmlreport.py tests/test_notify.py tests/test_plan_output.py tests/test_ci_docs.py

bench: deps
	$(BIN)/python bench/bench.py

clean: lab-down
	rm -rf $(VENV) *.egg-info
