# plumber-hosting: every tier of tests, the local lab, benchmarks.
# Run as root on Debian 12 (the lab needs network namespaces and systemd-nspawn).

SHELL := /bin/bash
# Every target runs the project's own virtualenv: `make deps` makes it (python3 -m venv, without the
# system's site packages, so nothing installed system-wide changes a result) and pip-installs the
# requirement files into it, never into the system Python. VENV=<dir> puts it elsewhere (.ci/run:
# a fresh one); PYTHON=<a virtualenv's python> runs every target with that one instead.
VENV ?= .venv
PYTHON ?= $(VENV)/bin/python
PYTEST := $(PYTHON) -m pytest
# The Pulumi CLI that `make pulumi` builds from Go modules (toolchain/build.sh), first on PATH for every
# target, and its offline settings (toolchain/pulumi.env, the one place they are set).
PULUMI_BIN := $(shell toolchain/build.sh --where)
export PATH := $(PULUMI_BIN):$(PATH)
include toolchain/pulumi.env
export $(shell sed -n 's/^\([A-Z_]*\)=.*/\1/p' toolchain/pulumi.env)
APT_PACKAGES := $(shell cat tests/lab/apt-packages.txt 2>/dev/null) \
	python3-venv nginx libnginx-mod-http-js shellcheck r-base-core r-cran-plumber r-cran-digest curl openssl wrk make \
	nmap testssl.sh chromium \
	golang-go golang-golang-x-crypto-dev golang-github-pkg-sftp-dev

.PHONY: unit-loop bench security-report bench-release bench-transport test deps apt venv pulumi lint test-real test-unit test-static test-e2e lab lab-down lab-status clean

## test: every tier (lint, unit, static, end-to-end): what the README and .ci/run run
test: deps lint test-unit test-real test-static test-e2e

## deps: install what the tests need (apt, incl. Go for tests/sshrun; and into the virtualenv with pip:
## the program, the tests, the policy pack); quick when already there
deps: apt venv pulumi
	@$(PYTHON) -m pip install -q -r requirements-dev.txt -r policy/requirements.txt

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "apt: installing $$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

## venv: make $(VENV) if missing; refuse a PYTHON that is not a virtualenv of its own
venv:
	@if [ "$(PYTHON)" = "$(VENV)/bin/python" ] && [ ! -x "$(PYTHON)" ]; then python3 -m venv "$(VENV)"; fi
	@$(PYTHON) -c 'import sys, pathlib; cfg = pathlib.Path(sys.prefix, "pyvenv.cfg"); \
		sys.exit(sys.prefix == sys.base_prefix or "include-system-site-packages = true" in cfg.read_text())' || \
		{ echo "make: $(PYTHON) is not a virtualenv of its own (one made without --system-site-packages), and pip installs nothing into the system Python: run make without PYTHON= (make deps makes $(VENV)), or remove $(VENV) if it is that one" >&2; exit 1; }

## pulumi: the Pulumi CLI (version pinned in toolchain/) built with Go >= 1.25 from the Go module proxy into
## a cache outside the checkout (~/.cache/plumber-hosting/toolchain): minutes once, then instant
pulumi:
	@toolchain/build.sh

lint:
	$(PYTHON) -m ruff check .

## test-unit: the program under Pulumi's mocks (graph, bad input, secrets), policies
test-unit:
	$(PYTEST) -q tests/unit $(wildcard tests/policy) $(wildcard tests/gitops)

## unit-loop: the fast tiers N times in a row (order-dependence shows up as a failure; N=30 by default)
N ?= 30
unit-loop:
	@pass=0; for i in $$(seq 1 $(N)); do \
		if $(PYTEST) -q -p no:cacheprovider tests/unit $(wildcard tests/policy) $(wildcard tests/gitops) >/tmp/unit-loop-$$i.log 2>&1; \
		then pass=$$((pass+1)); else echo "run $$i failed:"; grep -E '^FAILED' /tmp/unit-loop-$$i.log; fi; \
	done; echo "unit tier: $$pass of $(N) runs passed"; [ $$pass -eq $(N) ]

## test-real: the real Pulumi engine (the CLI `make pulumi` built) on what it alone decides: protection, destroy
test-real:
	$(PYTEST) -q tests/real

## test-static: every rendered file through nginx -t, systemd-analyze, shellcheck
test-static:
	$(PYTEST) -q tests/static

## test-e2e: the program's own commands on a lab host (systemd-nspawn), checked as a user would
test-e2e:
	$(PYTEST) -q -p no:cacheprovider tests/lab tests/e2e

## mutations: break each README promise in a copy of the repo; the fast test that catches it (target < 60 s)
.PHONY: mutations
mutations:
	$(PYTHON) -m tests.mutations

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

## bench: requests/s per worker count, proxy overhead, plumberDeploy baseline, program scale, app transport
## (state per app, copy and deploy seconds; bench/state.py); writes bench/results.md, bench/results.png and
## bench/results-transport.png. Uses the lab (starts it if down and stops it again; leaves a
## running lab up); about 6 minutes. Run nothing else on the machine meanwhile.
bench: deps
	@$(PYTHON) -m pip install -q -r bench/requirements.txt
	$(PYTHON) -m bench

## bench-transport: the app-transport table alone (state per app before/after; copy, deploy and scp seconds on
## the lab); writes bench/state-results.md and bench/state-results.png
bench-transport: deps
	@$(PYTHON) -m pip install -q -r bench/requirements.txt
	BENCH_COMMAND="make bench-transport" $(PYTHON) -m bench.state

## bench-release: what three clients (wrk, urllib3 GET with retries, POST) notice of a release, ours vs in-place
## restart; writes bench/release-results.md and bench/release.png
bench-release: deps
	@$(PYTHON) -m pip install -q -r bench/requirements.txt
	$(PYTHON) -m bench.release

## security-report: exposure per unit, open ports, testssl.sh, bad-input catalogue, on a fresh lab host
security-report: deps
	$(PYTHON) -m tests.e2e.security_report
