# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both use .venv: `make demo` installs only the base package (what the demo needs), `make test` everything (the
# test runner and every extra). Each install leaves a stamp; the full one stamps both, so either order works and
# nothing is installed twice.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BASE_STAMP := $(VENV)/.installed-base
TEST_STAMP := $(VENV)/.installed-test

.PHONY: install test demo clean browser-deps

$(VENV)/.created:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	touch $@

$(BASE_STAMP): pyproject.toml $(VENV)/.created
	$(PY) -m pip install -q -e .
	touch $@

$(TEST_STAMP): pyproject.toml $(VENV)/.created
	$(PY) -m pip install -q -e ".[test]"
	touch $@ $(BASE_STAMP)

install: $(TEST_STAMP)

# the browser tests (tests/reports/test_browser_pages.py) drive Debian's chromium + chromium-driver: installed
# here when we are root on a Debian-like system; where the driver is present they must run (no skip)
browser-deps:
	@command -v chromedriver >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } || \
		echo "browser tests will skip: install chromium and chromium-driver (apt-get, as root)"

test: $(TEST_STAMP) browser-deps
	SETR_BROWSER_TESTS=$$(command -v chromedriver >/dev/null 2>&1 && echo required || echo optional) \
		$(PY) -m pytest -q -n 2 tests

# the demo picks its torch threads from the free cores (OMP_NUM_THREADS=N to choose)
demo: $(BASE_STAMP)
	$(VENV)/bin/setr demo --work-dir work_dirs/demo

clean:
	rm -rf $(VENV) work_dirs .pytest_cache
