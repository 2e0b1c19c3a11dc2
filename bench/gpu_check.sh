#!/usr/bin/env bash
# One prepared check for a lent GPU (docs/BENCHMARKS.md, "GPU check"): the GPU and versions, then
#   1. bf16-mixed training steps of the STUNet at a paper-like shape (80 frames at 128x128, an Imagen-like U-Net
#      of 5 levels, temporal down-sampling to 5 frames, 2 temporal attention layers), eager and train.compile=true,
#      and with model.checkpointing=true: ms/step, clips/s, peak memory;
#   2. the same steps on one GPU under trainer.strategy=fsdp (sharding over 1 device: the code path of a sharded run);
#   3. I3D feature extraction speed (bench/bench_eval.py: throughput by batch, then end-to-end from MP4 files);
#   4. training from encoded shards against encoding on the fly (bench/bench_latent_cache.py, the tiny SD-like
#      pipeline at 128x128, 16 frames): ms/step and peak GPU memory, their ratios.
# Each case runs in its own process with its own time limit: a failure is printed and the next case runs.
#   bash bench/gpu_check.sh                      # from the repository root, with the project's venv
#   PY=python CHANNELS=64 FRAMES=32 STEPS=10 bash bench/gpu_check.sh   # smaller, e.g. on a small GPU
# Without a CUDA GPU it says so and exits 0.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
CHANNELS=${CHANNELS:-128}      # U-Net width at the finest level (Imagen's base: 512; bench_paper_compute.py: 256)
FRAMES=${FRAMES:-80}           # Lumiere's base model: 80 frames at 128x128
SIZE=${SIZE:-128}
STEPS=${STEPS:-15}
WARMUP=${WARMUP:-5}
CASE_TIMEOUT=${CASE_TIMEOUT:-900}   # seconds per case (compiling the STUNet takes minutes)

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no CUDA GPU visible to $PY (torch.cuda.is_available() is False, or torch is missing); nothing to measure"
  exit 0
fi

echo "== machine and versions"
date -u
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "(nvidia-smi not found)"
"$PY" - <<'PY'
import platform, torch, lightning
p = torch.cuda.get_device_properties(0)
print(f"GPU: {torch.cuda.get_device_name(0)}, {p.total_memory / 2**30:.0f} GiB, {torch.cuda.device_count()} visible; "
      f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN "
      f"{torch.backends.cudnn.version()}), lightning {lightning.__version__}, bf16 {torch.cuda.is_bf16_supported()}")
PY

SHAPE=(text.encoder=tiny text.dim=512 text.max_length=64
       model.unet.channels=$CHANNELS "model.unet.channel_mults=[1,2,3,4,4]" model.unet.num_res_blocks=2
       "model.unet.attn_levels=[3,4]" model.unet.head_dim=64 "model.temporal.down_levels=[0,1,2,3]"
       model.temporal.attn_layers=2 data.frames=$FRAMES data.size=$SIZE data.batch_size=1
       data.synthetic.num_videos=8 trainer.precision=bf16-mixed train.ema_decay=0.9999)

run_case() {   # label, overrides...
  local label=$1; shift
  timeout "$CASE_TIMEOUT" "$PY" -m bench.gpu_train_steps --label "$label" --steps "$STEPS" --warmup "$WARMUP" \
    "${SHAPE[@]}" "$@" 2>"/tmp/gpu_check_$label.err"
  local rc=$?
  if [ $rc -ne 0 ]; then
    echo "$label: FAILED (exit $rc; timeout is 124); last lines of /tmp/gpu_check_$label.err:"
    tail -n 5 "/tmp/gpu_check_$label.err" | sed 's/^/    /'
  fi
}

echo "== 1. STUNet training steps, bf16-mixed, 1 GPU (channels $CHANNELS, $FRAMES frames at ${SIZE}x$SIZE, batch 1)"
run_case eager
run_case compile train.compile=true
run_case checkpointing model.checkpointing=true
run_case compile+checkpointing train.compile=true model.checkpointing=true
echo "== 2. the same under trainer.strategy=fsdp on 1 GPU"
run_case fsdp trainer.strategy=fsdp
echo "== 3. I3D feature extraction (bench/bench_eval.py)"
timeout "$CASE_TIMEOUT" "$PY" -m bench.bench_eval --rounds 2 || echo "bench_eval: FAILED (exit $?)"
echo "== 4. encoded shards against encoding on the fly (bench/bench_latent_cache.py, tiny SD-like, 16 frames at 128x128)"
if ! timeout "$CASE_TIMEOUT" "$PY" -m bench.bench_latent_cache --device cuda --size 128 --frames 16 --batch 2 \
    --steps 10 --rounds 2 --no-meta 2>/tmp/gpu_check_latent_cache.err; then
  echo "bench_latent_cache: FAILED; last lines of /tmp/gpu_check_latent_cache.err:"
  tail -n 5 /tmp/gpu_check_latent_cache.err | sed 's/^/    /'
fi
echo "== done $(date -u)"
