# The two commands that matter: `make demo` and `make test`. Both build .venv on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# mypy checks the whole tree, tests and benchmarks included.
TYPED  := ats db tasks flows monitor cli sim tests benchmarks
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck unit install clean bench audit

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing into $(VENV) (log: $(VENV)/install.log) ..."
	@{ $(BIN)/python -m pip install --upgrade pip && \
	   $(BIN)/python -m pip install -c constraints.txt -e '.[dev]'; } > $(VENV)/install.log 2>&1 \
	   || { tail -40 $(VENV)/install.log; echo "install failed: see $(VENV)/install.log"; exit 1; }
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ats demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy $(TYPED)

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy $(TYPED)
	$(BIN)/pytest -q -n 4 --dist loadgroup

# Known vulnerabilities in the exact versions installed (constraints.txt), from PyPI's advisory data. A package
# whose advisories the index cannot give is listed as skipped, never counted as clean.
audit: $(STAMP)
	$(BIN)/pip-audit --requirement constraints.txt --no-deps --disable-pip --progress-spinner off

# Every figure of the README's performance table, each script in its own process; writes benchmarks/results.json.
# Not run: benchmarks/chaos.py (~1.5 h) and benchmarks/demo_under_load.py (opt-in, run them directly).
bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
