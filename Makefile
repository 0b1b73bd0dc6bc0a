# The two set-up commands: `make run` (install + a short demo training) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
STAMP  := $(VENV)/.installed

.PHONY: run test test-all install bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[test]'
	@touch $@

install: $(STAMP)

# A small LSTM on the bundled Molière corpus, about two minutes on a laptop CPU.
run: $(STAMP)
	$(BIN)/rnnkit train --corpus moliere --cell lstm --layers 1 --hidden-size 256 --embed-size 64 \
		--time-budget 90s --eval-every 30s --eval-chars 30000 --out runs/demo --overwrite
	@echo
	@echo "--- sample (temperature 0.8) ---"
	$(BIN)/rnnkit sample runs/demo --prompt "VALÈRE." --length 300 --temperature 0.8 --seed 1

test: $(STAMP)
	$(BIN)/python -m pytest

test-all: $(STAMP)
	$(BIN)/python -m pytest -m ''

clean:
	rm -rf $(VENV) runs build src/*.egg-info .pytest_cache
