#!/usr/bin/env bash
# Train TinyOmni on one GPU, with all but two CPU cores rendering training batches.
#
#   scripts/train_on_gpu.sh OUT_DIR [STEPS] [CLIPS_AT_40S]
#
# The GPU is not the bottleneck for a 1M-parameter model: rendering fresh clips is, so the
# DataLoader gets one worker process per spare core. This is how the shipped checkpoint in
# omnimem_ref/checkpoints/tinyomni was trained (see its training.json for the exact settings).
set -euo pipefail
out=${1:?usage: scripts/train_on_gpu.sh OUT_DIR [STEPS] [CLIPS_AT_40S]}
steps=${2:-4000}
batch=${3:-16}
workers=$(( $(nproc) > 3 ? $(nproc) - 2 : 1 ))
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
python3 -m omnimem_ref.cli train-tiny --device cuda --threads 2 --workers "$workers" \
    --batch "$batch" --steps "$steps" --out "$out" --log-file "$out.log"
