#!/usr/bin/env bash
# Retrains the shipped passkey model (models/passkey-delta-tiny) with the project's own commands:
# `infini data passkey` (examples with a loss mask on the key's copy and the answer), `infini
# prepare --loss-mask`, `infini train`. docs/results.md ("Passkey") gives the figures of the run
# that made the committed model; with 2 threads the stages below reproduce it bit for bit.
#
#   WORK=/tmp/pk bash scripts/train_passkey_model.sh     # about 25 minutes on 2 cores
set -euo pipefail
cd "$(dirname "$0")/.."
infini=${INFINI:-build/release/infini}
work=${WORK:-runs/passkey}
threads=${THREADS:-2}
mkdir -p "$work"

# data SEED COUNT: COUNT examples of 256-512 tokens (prompt + answer), padded to 512
data() {
  local dir="$work/data-$1"
  if [ ! -f "$dir/data/dataset.json" ]; then
    "$infini" data passkey --out "$dir" --count "$2" --min-length 256 --max-length 512 \
      --seq-len 512 --seed "$1" > /dev/null
    "$infini" prepare --input "$dir/passkey.txt" --loss-mask "$dir/passkey.mask" \
      --out "$dir/data" --val-fraction 0.01 > /dev/null
  fi
  echo "$dir/data"
}

common=(--seq-len 512 --data-order sequential --weight-decay 0 --eval-batches 1 --log-every 50
        --sample-tokens 0 --threads "$threads")
# stage 1: from scratch, constant 3e-3; the copy circuit forms after ~500 steps
"$infini" train --config configs/passkey-tiny.json --data "$(data 1 50000)" --out "$work/s1" \
  --batch 32 --lr 3e-3 --warmup 50 --schedule constant --steps 1500 --eval-every 100 \
  --save-every 250 "${common[@]}"
"$infini" train --resume "$work/s1" --data "$(data 2 80000)" --steps 2737 --threads "$threads"
# stage 2: fresh optimizer, larger batch, cosine decay
"$infini" train --init "$work/s1/latest" --data "$(data 3 60000)" --out "$work/s2" \
  --batch 64 --lr 1.5e-3 --min-lr 1e-4 --warmup 20 --schedule cosine --steps 700 \
  --eval-every 50 --save-every 100 "${common[@]}"
