# The two commands users need: `make up` (whole system, local) and `make test` (the suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Photos the model tests use come from Debian's opencv-doc (two-person basketball1.png, ...).
OPENCV_DOC := /usr/share/doc/opencv-doc/examples/data/basketball1.png

.PHONY: up test test-fast install models lint format test-data load-tools clean loadtest bench k8s docs

up: install
	$(BIN)/posefleet up

test: install test-data load-tools
	$(BIN)/ruff check services tests loadtest tools examples
	$(BIN)/python -m pytest

# The unit tier alone (no Redis, no models): well under a minute. Tiers: tests/conftest.py.
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
	touch $@

# Bounded headless locust against a fresh local stack (loopback only); reports in out/.
loadtest: install
	$(BIN)/python -m loadtest.run_local --duration 30s --users 4

# Side-by-side benchmark and its targets (models / handlers / posefleet / overload / naive /
# Ray Serve / transport ceiling): several minutes; the first run also builds Ray Serve's venv.
bench: install load-tools
	$(BIN)/python -m loadtest.bench

models: install
	$(BIN)/posefleet models build

# Re-render k8s/base from the Helm chart (the tests fail while it is stale).
k8s: install
	$(BIN)/python -m tools.render_k8s

# Regenerate docs/configuration.md from Settings (a test fails while it is stale).
docs: install
	$(BIN)/python -m tools.settings_doc

test-data:
	@test -f $(OPENCV_DOC) || { \
	  echo "installing Debian's opencv-doc for the test photos"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq opencv-doc; }

# Debian's C load generators: the benchmark's saturated rows (hey) and ad-hoc runs (wrk).
load-tools:
	@command -v hey >/dev/null && command -v wrk >/dev/null || { \
	  echo "installing Debian's hey and wrk (C load generators)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq hey wrk; }

lint: install
	$(BIN)/ruff check services tests loadtest tools examples
	$(BIN)/ruff format --check services tests loadtest tools examples

format: install
	$(BIN)/ruff format services tests loadtest tools examples
	$(BIN)/ruff check --fix services tests loadtest tools examples

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
