# Two commands: `make demo` and `make test`. Both create .venv and install what they need.
# `make docs` builds the documentation site into site/ (mkdocs, strict: a broken link fails it).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH := torch==2.13.0

.PHONY: demo test lint bench docs clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e ".[plots]"
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed
	$(PIP) install -q -e ".[dev,plots,export,keras,gpu]"
	touch $@

demo: $(VENV)/.installed
	$(PY) examples/adding_problem.py

lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check src tests benchmarks examples tools

# The report's browser test needs Debian's chromium and chromedriver: installed here when missing and
# we are root with apt-get; otherwise that test skips (never a failed make).
test: $(VENV)/.dev-installed lint
	@(command -v chromium && command -v chromedriver) >/dev/null \
		|| { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq \
			&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } \
		|| echo "chromium not installed: the browser test will skip"
	$(VENV)/bin/pytest -q

$(VENV)/.bench-installed: $(VENV)/.installed
	$(PIP) install -q -e ".[bench]"
	touch $@

bench: $(VENV)/.bench-installed
	$(PY) benchmarks/run_all.py

$(VENV)/.docs-installed: $(VENV)/.installed
	$(PIP) install -q -e ".[docs]"
	touch $@

docs: $(VENV)/.docs-installed
	$(PY) -m mkdocs build --strict

clean:
	rm -rf $(VENV) build site src/*.egg-info .pytest_cache .ruff_cache
