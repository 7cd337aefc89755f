# Two entry points for a newcomer: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BASE_VENV ?= .venv-base
EDGETRACK_DATA ?= ../shared/data
export EDGETRACK_DATA

BIN := $(VENV)/bin
BUILD ?= build

.PHONY: install demo test clean

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

demo: $(BIN)/.installed
	$(BIN)/edgetrack import-nanotrack \
		$(EDGETRACK_DATA)/models/nanotrack/v2/nanotrack_backbone_sim.onnx \
		$(EDGETRACK_DATA)/models/nanotrack/v2/nanotrack_head_sim.onnx \
		--version v2 -o $(BUILD)/nanotrack-v2.etb --force
	$(BIN)/edgetrack eval $(BUILD)/nanotrack-v2.etb --dataset $(EDGETRACK_DATA)/sequences --out $(BUILD)/demo-eval

test: $(BIN)/.installed $(BASE_VENV)/bin/.installed
	$(BIN)/ruff check .
	EDGETRACK_BASE_PYTHON=$(abspath $(BASE_VENV))/bin/python $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(BASE_VENV) $(BUILD) .pytest_cache
