# Two commands matter (README): `make demo` and `make test`. Both set up everything they need
# on a Debian 12 machine as root: Debian packages, a Python venv, the sandbox hosts.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOSTS ?= 3

.PHONY: demo test unit bench bench-load deps venv lab-up lab-down clean

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
	@# A job dispatched after the deploy, processed by a queue worker: the database row names its release.
	@token=demo$$(date +%s); curl -s -o /dev/null -X POST http://127.0.0.1:8001/jobs/$$token; \
	 for i in $$(seq 1 60); do body=$$(curl -s -f http://127.0.0.1:8001/jobs/$$token) && break; sleep 0.5; done; \
	 echo "job $$token dispatched after the deploy, processed by release: $$(printf '%s' "$$body" | sed -n 's/.*"release":"\([^"]*\)".*/\1/p')"

# Every test: unit tests (plans as data) and behaviour tests on real sandbox hosts.
test: deps
	$(BIN)/pytest -q -p no:cacheprovider

# Every test that needs no sandbox host, four at a time (many wait on timeouts and signals).
unit: venv
	$(BIN)/pytest -q -p no:cacheprovider -n 4 -m 'not lab' tests/

# The benchmark (docs/benchmark.md): every phase, about 20 minutes; results stored as
# bench/results/$(BENCH_LABEL).json and written into docs/benchmark.md. Parts: BENCH_ARGS="--phase wan".
BENCH_LABEL ?= latest
BENCH_ARGS ?=
bench: deps bench-load
	$(BIN)/python bench/bench.py --write --label $(BENCH_LABEL) $(BENCH_ARGS)

# Failed requests under load during deploy, rollback and heal, before and after (docs/benchmark.md).
bench-load: deps
	$(BIN)/python bench/load.py

clean: lab-down
	rm -rf $(VENV) *.egg-info
