# The two commands users need: `make up` (whole system, local) and `make test` (the suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Photos the model tests use come from Debian's opencv-doc (two-person basketball1.png, ...).
OPENCV_DOC := /usr/share/doc/opencv-doc/examples/data/basketball1.png

# The private container engine (tools/containers/engine.py): started for the command, stopped
# after it by PID; Debian's docker.io is the engine, mmdebstrap makes the base image.
ENGINE := $(BIN)/python -m tools.containers.engine
ENGINE_PACKAGES := docker.io containerd runc iptables mmdebstrap docker-compose

.PHONY: up test test-fast install models lint format test-data load-tools clean loadtest bench \
	k8s docs proto engine images container-test

up: install
	$(BIN)/posefleet up

# With an engine available (dockerd installed, root or sudo), the suite includes the container
# tests (tests/deploy) and the Redis fixture runs in a container; without one they are skipped.
test: install test-data load-tools
	$(BIN)/ruff check services tests loadtest tools examples
	$(ENGINE) run --if-available -- $(BIN)/python -m pytest

# The unit tier alone (no Redis, no models): about a minute on 2 cores. Tiers: tests/conftest.py.
test-fast: install
	$(BIN)/ruff check services tests loadtest tools examples
	$(BIN)/python -m pytest -m unit

install: $(STAMP)

# The example stage plug-in is installed as a user installs one (its entry point registers it),
# so the suite runs it end to end through a real worker.
PLUGIN := examples/person-count

$(STAMP): pyproject.toml $(PLUGIN)/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps -e $(PLUGIN)
	$(BIN)/python -m tools.nodeps
	touch $@

# Bounded headless locust against a fresh local stack (loopback only); reports in out/.
loadtest: install
	$(BIN)/python -m loadtest.run_local --duration 30s --users 4

# Side-by-side benchmark and its targets (models / handlers / posefleet / overload / naive /
# Ray Serve / transport ceiling / V2): several minutes; the first run also builds Ray Serve's venv.
bench: install load-tools
	$(BIN)/python -m loadtest.bench

models: install
	$(BIN)/posefleet models build

# Re-render k8s/base from the Helm chart (the tests fail while it is stale).
k8s: install
	$(BIN)/python -m tools.render_k8s

# Regenerate the V2 gRPC stubs from services/gateway/v2/proto (a test fails while they are stale).
proto: install
	$(BIN)/python -m tools.proto

# Regenerate docs/configuration.md from Settings (a test fails while it is stale).
docs: install
	$(BIN)/python -m tools.settings_doc
# The browser tests (tests/console) drive Debian's Chromium through Playwright; never
# `playwright install` (a downloaded browser build).
CHROMIUM := /usr/bin/chromium

# The cpu images of the gateway and every worker service, plus Redis, with no registry.
images: install engine
	$(ENGINE) run -- $(BIN)/python -m tools.containers.images

# The chart's pods run as containers, and the system tested there (builds the images first).
container-test: install test-data engine
	$(ENGINE) run -- $(BIN)/python -m pytest -m deploy tests/deploy

engine:
	@missing=$$(for p in $(ENGINE_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing" $$missing; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$missing; fi

test-data:
	@test -f $(OPENCV_DOC) || { \
	  echo "installing Debian's opencv-doc for the test photos"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq opencv-doc; }
	@test -x $(CHROMIUM) || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; }

# Debian's C load generators: the benchmark's saturated rows (hey) and ad-hoc runs (wrk).
# The C load generators (hey, wrk) and libb64 for perf_analyzer (which
# loadtest/perf_analyzer.py fetches from PyPI): the benchmark and its smoke test use them.
load-tools:
	@dpkg -s hey wrk libb64-0d >/dev/null 2>&1 || { \
	  echo "installing Debian's hey, wrk and libb64-0d (load generators, perf_analyzer)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq hey wrk libb64-0d; }

lint: install
	$(BIN)/ruff check services tests loadtest tools examples
	$(BIN)/ruff format --check services tests loadtest tools examples

format: install
	$(BIN)/ruff format services tests loadtest tools examples
	$(BIN)/ruff check --fix services tests loadtest tools examples

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
