# plumber-hosting: every tier of tests, the local lab, benchmarks.
# Run as root on Debian 12 (the lab needs network namespaces and systemd-nspawn).

SHELL := /bin/bash
PYTHON ?= python3
PYTEST := $(PYTHON) -m pytest
APT_PACKAGES := $(shell cat tests/lab/apt-packages.txt 2>/dev/null) \
	nginx libnginx-mod-http-js shellcheck r-base-core r-cran-plumber r-cran-digest curl openssl wrk make \
	nmap testssl.sh chromium

.PHONY: bench security-report bench-release test deps lint test-unit test-static test-e2e lab lab-down lab-status clean

## test: every tier (lint, unit, static, end-to-end): what the README and .ci/run run
test: deps lint test-unit test-static test-e2e

## deps: install what the tests need (apt and pip); quick when already there
deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "apt: installing $$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@$(PYTHON) -m pip install -q -r requirements-dev.txt

lint:
	$(PYTHON) -m ruff check .

## test-unit: the program under Pulumi's mocks (graph, bad input, secrets), policies
test-unit:
	$(PYTEST) -q tests/unit $(wildcard tests/policy) $(wildcard tests/gitops)

## test-static: every rendered file through nginx -t, systemd-analyze, shellcheck
test-static:
	$(PYTEST) -q tests/static

## test-e2e: the program's own commands on a lab host (systemd-nspawn), checked as a user would
test-e2e:
	$(PYTEST) -q -p no:cacheprovider tests/lab tests/e2e

## lab / lab-down: a droplet-like test host for `pulumi up --stack local`
lab:
	$(PYTHON) -m tests.lab up
	$(PYTHON) -m tests.lab status

lab-down:
	$(PYTHON) -m tests.lab down

lab-status:
	$(PYTHON) -m tests.lab status

clean: lab-down
	rm -rf .lab/machines .pytest_cache

## bench: requests/s per worker count, proxy overhead, plumberDeploy baseline, program scale; writes
## bench/results.md and bench/results.png. Uses the lab (starts it if down and stops it again; leaves a
## running lab up); about 6 minutes. Run nothing else on the machine meanwhile.
bench: deps
	@$(PYTHON) -m pip install -q -r bench/requirements.txt
	$(PYTHON) -m bench

## bench-release: failed requests and p99 during a redeploy, ours vs in-place restart
bench-release: deps
	$(PYTHON) -m bench.release

## security-report: exposure per unit, open ports, testssl.sh, bad-input catalogue, on a fresh lab host
security-report: deps
	$(PYTHON) -m tests.e2e.security_report
