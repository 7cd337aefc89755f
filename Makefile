# Two entry points for a newcomer: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BASE_VENV ?= .venv-base
EDGETRACK_DATA ?= ../shared/data
export EDGETRACK_DATA

BIN := $(VENV)/bin
BUILD ?= build

.PHONY: install demo test test-py310 clean

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[all]"
	touch $@

# The runtime floor alone, as a Jetson or a Raspberry Pi would have it: the no-torch test runs the CLI from here.
$(BASE_VENV)/bin/.installed: pyproject.toml
	$(PYTHON) -m venv $(BASE_VENV)
	$(BASE_VENV)/bin/python -m pip install -q -e .
	touch $@

install: $(BIN)/.installed

# The whole pipeline on the synthetic world, nothing downloaded: about 6 minutes on 2 cores; see README.
demo: $(BIN)/.installed
	$(BIN)/edgetrack demo --out $(BUILD)/demo

# One pytest worker per core, each with one torch thread: two-thread torch in two workers on two cores ran some
# tests ten times slower than alone.
PYTEST = OMP_NUM_THREADS=1 $(1)/python -m pytest -q -n auto

test: $(BIN)/.installed $(BASE_VENV)/bin/.installed
	$(BIN)/ruff check .
	EDGETRACK_BASE_PYTHON=$(abspath $(BASE_VENV))/bin/python $(call PYTEST,$(BIN))

# The oldest Python we support (JetPack 6 ships 3.10). No torch there: its CPU wheel on disk is for 3.11 only,
# and the runtime and deploy floors must not need it anyway.
PY310 ?= python3.10
VENV310 ?= .venv-py310
$(VENV310)/bin/.installed: pyproject.toml constraints.txt
	$(PY310) -m venv $(VENV310)
	$(VENV310)/bin/python -m pip install -q -c constraints.txt -e ".[deploy,report,tune,dev]"
	touch $@

test-py310: $(VENV310)/bin/.installed
	$(VENV310)/bin/python -m compileall -q distill deploy runtime edgetrack benchmarks
	$(call PYTEST,$(VENV310)/bin) -p no:cacheprovider

clean:
	rm -rf $(VENV) $(BASE_VENV) $(VENV310) $(BUILD) .pytest_cache
