#!/usr/bin/env bash
# Issue 14, the GPU path: one prepared run for a lent GPU machine (has NOT run yet: the
# session that wrote it had no device). Prints the device, then
#   1. bench/train.py            resnet18 at 224 px, batch 128+128, 400 steps (target >= 2,500 images/s on H100/H200)
#   2. bench/selection.py        k-center: CPU lazy vs the CUDA path on N=100,000 x 1,000 (identical picks? time)
#   3. bench/teacher.py          CLIP ViT-B-32 feature extraction images/s on CUDA (needs open_clip, see below)
# Each step has its own time limit and a failing step does not stop the others.
#
# The device image has torch 2.11 / torchvision 0.26 but not open_clip, streamlit or umap.
# Steps 1 and 2 need only numpy, torch, torchvision, threadpoolctl, Pillow. Step 3 needs
# open_clip and its small pure-Python dependencies; download them HERE (CPU box) first and
# carry the folder:
#   pip download --no-deps -d bench/out/wheels open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 \
#       regex==2026.11.19 timm==1.0.31 huggingface_hub safetensors==0.8.0 tqdm
#   then: run(command="bash bench/gpu_check.sh", carry=["bench/out/wheels"], timeout_s=540)
# (regex and safetensors are binary wheels: download them for the device's Python version,
# e.g. `--python-version 3.11 --platform manylinux2014_x86_64 --only-binary=:all:`.)
# Output also goes to $OUT/gpu_check.log when $OUT is set (the device tool returns $OUT).
set -u
cd "$(dirname "$0")/.."
LOG=${OUT:-bench/out}/gpu_check.log
mkdir -p "$(dirname "$LOG")"
exec > >(tee "$LOG") 2>&1

echo "== device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi missing"
python - <<'EOF'
import os, torch
print("torch", torch.__version__, "CUDA", torch.version.cuda, "available", torch.cuda.is_available(),
      "|", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU", "|", os.cpu_count(), "CPU cores")
EOF
python -c "import threadpoolctl" 2>/dev/null || pip install -q threadpoolctl 2>&1 | tail -1

echo; echo "== 1. training throughput (bench/train.py, CUDA defaults)"
timeout 200 python bench/train.py || echo "step 1 failed or timed out (rc $?)"

echo; echo "== 2. k-center: CPU (lazy) vs CUDA, N=100,000 C=1,000, 1,000 labeled, k=1,000"
timeout 150 python bench/selection.py --full --part b --methods lazy || echo "step 2 failed or timed out (rc $?)"

echo; echo "== 3. CLIP feature extraction on CUDA (ViT-B-32, random weights)"
if ! python -c "import open_clip" 2>/dev/null; then
  if [ -d bench/out/wheels ]; then
    pip install -q --no-index --find-links bench/out/wheels open_clip_torch 2>&1 | tail -2
  else
    echo "open_clip missing and no bench/out/wheels carried: step 3 skipped"
  fi
fi
if python -c "import open_clip" 2>/dev/null; then
  timeout 150 python bench/teacher.py --device cuda --images 2048 --batch-size 256 --repeats 2 --skip-reprompt \
    || echo "step 3 failed or timed out (rc $?)"
fi
echo; echo "== done"
