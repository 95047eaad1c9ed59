# Two commands on a fresh clone:  make all   (the whole pipeline)   make test
# Every target creates .venv from requirements.txt first when it is missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DATASET ?= mnist
EPOCHS  ?= 10
DEVICE  ?= auto
SEED    ?= 0

.PHONY: all venv vae test bench clean-outputs help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

all: vae  ## the main job on the default data (DATASET=mnist)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e . || \
		$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)  ## create .venv from requirements.txt (and install this repo editable)

vae: $(STAMP)  ## train the VAE and draw its plots
	$(PY) train/train_vae.py --dataset $(DATASET) --epochs $(EPOCHS) --seed $(SEED) --device $(DEVICE)

test: $(STAMP)  ## run the test suite
	$(PY) -m pytest

bench: $(STAMP)  ## run the benchmarks (needs Fashion-MNIST: apt-get install dataset-fashion-mnist)
	$(PY) benchmarks/bench_vae.py

clean-outputs:  ## delete generated logs, checkpoints and plots (keeps experiments/results)
	rm -rf experiments/logs experiments/checkpoints experiments/plots
