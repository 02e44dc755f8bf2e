#!/usr/bin/env bash
# The recipe of the shipped passkey model (models/passkey-delta-tiny), with the project's own
# commands only: `infini data passkey` (examples with a loss mask on the key's copy and the
# answer), `infini prepare --loss-mask`, `infini train`. docs/results.md ("Passkey") has the
# figures and what differed in the run that made the committed model: its stage 2 was stopped by
# Ctrl-C at step 406 of a 1000-step cosine schedule (here: 400 steps of their own schedule), and
# its data had the older layout without the newline before the held-out examples, so this script
# reproduces the recipe, not the committed bytes.
#
#   WORK=/tmp/pk bash scripts/train_passkey_model.sh     # about an hour on 2 cores
#   bash scripts/train_passkey_model.sh && build/release/infini eval passkey --model runs/passkey/s5/latest
set -euo pipefail
cd "$(dirname "$0")/.."
infini=${INFINI:-build/release/infini}
work=${WORK:-runs/passkey}
threads=${THREADS:-2}
mkdir -p "$work"

# data NAME SEED COUNT MIN MAX SEQ ALIGNED: COUNT examples of MIN..MAX tokens padded to SEQ, a
# fraction ALIGNED of them with a prompt of a multiple of the segment length (128)
data() {
  local dir="$work/data-$1"
  if [ ! -f "$dir/data/dataset.json" ]; then
    "$infini" data passkey --out "$dir" --count "$3" --min-length "$4" --max-length "$5" \
      --seq-len "$6" --seed "$2" --aligned-fraction "$7" --align 128 --json > "$dir.json"
    "$infini" prepare --input "$dir/passkey.txt" --loss-mask "$dir/passkey.mask" \
      --out "$dir/data" --val-fraction "$(sed -n 's/.*--val-fraction \([0-9.e-]*\).*/\1/p' "$dir.json" | head -1)" > /dev/null
  fi
  echo "$dir/data"
}

common=(--data-order sequential --weight-decay 0 --log-every 50 --sample-tokens 0
        --threads "$threads")
# stage 1, from scratch (configs/passkey-tiny.json: bytes, d 128, 3 layers, 4 x 32 heads, delta
# memory, segment 128): 256-512 tokens, whole sentences. Digits sit at ln 10 for ~450 steps
# until the copy circuit forms; held-out loss 0.067 per scored token at step 4000.
"$infini" train --config configs/passkey-tiny.json --data "$(data 1 2 80000 256 512 512 0)" \
  --out "$work/s1" --batch 32 --seq-len 512 --lr 3e-3 --warmup 50 --schedule constant \
  --steps 4000 --eval-every 250 --eval-batches 2 --save-every 500 "${common[@]}"
# stage 2: half the prompts end on a segment boundary, as every 32K..1M evaluation prompt does
"$infini" train --init "$work/s1/latest" --data "$(data 2 4 40000 256 512 512 0.5)" \
  --out "$work/s2" --batch 32 --seq-len 512 --lr 1e-3 --min-lr 1e-4 --warmup 20 \
  --schedule cosine --steps 400 --eval-every 100 --eval-batches 2 --save-every 200 "${common[@]}"
# stage 3: longer inputs, 1K-4K tokens
"$infini" train --init "$work/s2/latest" --data "$(data 3 5 6000 1K 4K 4096 0.5)" \
  --out "$work/s3" --batch 8 --seq-len 4096 --lr 1e-3 --min-lr 1e-4 --warmup 20 \
  --schedule cosine --steps 600 --eval-every 100 --eval-batches 1 --save-every 100 "${common[@]}"
# stage 4: 2K-16K tokens (after it: 100% at 32K, 0% at 128K)
"$infini" train --init "$work/s3/latest" --data "$(data 4 6 1500 2K 16K 16K 0.5)" \
  --out "$work/s4" --batch 4 --seq-len 16384 --lr 5e-4 --min-lr 5e-5 --warmup 10 \
  --schedule cosine --steps 300 --eval-batches 0 --save-every 50 "${common[@]}"
# stage 5: 16K-64K tokens (after it: 100% at 128K; it retrieves up to ~2x its longest input)
"$infini" train --init "$work/s4/latest" --data "$(data 5 7 300 16K 64K 64K 0.5)" \
  --out "$work/s5" --batch 2 --seq-len 65536 --lr 3e-4 --min-lr 3e-5 --warmup 5 \
  --schedule cosine --steps 120 --eval-batches 0 --save-every 20 "${common[@]}"
