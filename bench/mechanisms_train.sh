#!/usr/bin/env bash
# Every attention type trains on the KJV with `infini train`: the baseline dimensions (bytes,
# d 256, 4 layers, 4 x 64 heads, SwiGLU 1024, segment 256), the same recipe, data and seed for
# each, STEPS steps of batch 4 x 1024 (4 segments: the memory, caches and feedback are used
# across segments within a sequence). Prints a table of the loss at the first and last step, the
# held-out bits/byte at the end and the training tokens/s. A short run: it shows that each type
# learns, not which is best (docs/results.md says what a fair comparison needs).
# Usage: bench/mechanisms_train.sh [infini binary (build/release/infini)] [steps (60)]
set -euo pipefail
cd "$(dirname "$0")/.."
infini="${1:-build/release/infini}"
steps="${2:-60}"
work="${WORK:-$(mktemp -d)}"
unset OPENBLAS_CORETYPE  # see ../shared/machine.md

bible gen1:1-rev22:21 > "$work/kjv.txt"
[[ -d "$work/data" ]] || "$infini" prepare --input "$work/kjv.txt" --out "$work/data" >/dev/null
declare -A attention=(
  [infini]='{"type": "infini", "segment_length": 256, "memory_update": "delta"}'
  [full]='{"type": "full", "segment_length": 256}'
  [sliding]='{"type": "sliding", "segment_length": 256, "window": 256}'
  [xl]='{"type": "xl", "segment_length": 256}'
  [bswa]='{"type": "bswa", "segment_length": 256, "memory_blocks": 1}'
  [fam]='{"type": "fam", "segment_length": 256, "memory_blocks": 1, "fam_length": 64}'
)
for type in infini full sliding xl bswa fam; do
  /usr/bin/python3 - "$work/$type.json" "${attention[$type]}" <<'PY'
import json, sys
config = json.load(open("configs/infini-base.json"))
config["attention"] = json.loads(sys.argv[2])
json.dump(config, open(sys.argv[1], "w"), indent=2)
PY
  rm -rf "$work/run-$type"
  "$infini" train --config "$work/$type.json" --data "$work/data" --out "$work/run-$type" \
    --steps "$steps" --batch 4 --seq-len 1024 --warmup 10 --eval-every "$steps" --eval-batches 4 \
    --save-every 0 --sample-tokens 0 --seed 1 --threads 2 >/dev/null
done
/usr/bin/python3 - "$work" <<'PY'
import json, os, statistics, sys
work = sys.argv[1]
print("| type | loss, step 1 | loss, last step | held-out bits/byte | training tokens/s (median) |")
print("|---|---:|---:|---:|---:|")
for t in ["infini", "full", "sliding", "xl", "bswa", "fam"]:
    rows = [json.loads(l) for l in open(os.path.join(work, f"run-{t}", "metrics.jsonl")) if '"loss"' in l]
    val = [r["val_bits_per_byte"] for r in rows if "val_bits_per_byte" in r]
    speed = statistics.median(r["tokens_per_second"] for r in rows[2:])
    print(f"| {t} | {rows[0]['loss']:.3f} | {rows[-1]['loss']:.3f} | {val[-1]:.3f} | {speed:.0f} |")
PY
