#!/usr/bin/env bash
# Sets up, builds, and trains on the project's default corpus (the main job until 2026-11-25):
# prepare the default corpus (the King James Bible from Debian's bible-kjv, 4.3 MB),
# then train a small Infini-Transformer (configs/infini-base.json: bytes, d 256, 4 layers,
# 4 x 64 heads, SwiGLU 1024, segment 256, delta memory) on it for a few minutes with a live
# progress line, and print sample text and the held-out bits per byte.
#
#   MINUTES=10 bash scripts/train_kjv.sh      # train longer (default 5)
#   bash scripts/train_kjv.sh --seed 3        # extra arguments go to `infini train`
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh release
unset OPENBLAS_CORETYPE

infini=build/release/infini
work=runs/main
mkdir -p "$work"
if [ ! -f "$work/data/dataset.json" ]; then
  bible gen1:1-rev22:21 > "$work/kjv.txt"
  "$infini" prepare --input "$work/kjv.txt" --out "$work/data" --val-fraction 0.05
fi
rm -rf "$work/run"
exec "$infini" train --config configs/infini-base.json --data "$work/data" --out "$work/run" \
  --steps 0 --time-limit "${MINUTES:-5}" --batch 4 --seq-len 2048 --lr 2e-3 --warmup 20 \
  --eval-every 25 --sample-tokens 300 "$@"
