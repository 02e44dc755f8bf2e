#!/usr/bin/env bash
# The papers' comparisons at small scale (issue 7): Infini-attention (linear and delta), xl, bswa,
# fam and full, each trained with the same budget on the same KJV split, then
#   - Table-2-like: state between segments in floats (spec formula, `infini info`), compression
#     relative to the largest state, held-out perplexity per byte (the same validation windows
#     for every model, each streamed from a fresh state);
#   - Table-1-like: the footprint formula of each mechanism with this configuration's numbers;
#   - mean NLL against position in the stream, one curve per mechanism (`infini plot nll`);
#   - passkey retrieval after the same short passkey fine-tune for every model.
# Every model has the same dimensions (bytes, d 128, 4 layers, 4 x 32 heads, SwiGLU 512,
# segment 128) and sees the same batches (seed, sequential windows of 1024 tokens = 8 segments).
#
# Usage: bench/compare_mechanisms.sh [out dir (docs/figures)]
#   STEPS (300): KJV steps of 8 x 1024 tokens; PASSKEY_STEPS (150): passkey steps of 16 x 1024;
#   NLL_LENGTH (16K) NLL_WINDOWS (8): validation windows; PASSKEY_LENGTHS (1K,4K,16K);
#   PASSKEY_TRIALS (10); NO_PASSKEY: types whose passkey stage is skipped (e.g. "fam full": the
#   slowest to fine-tune; their cells read "not run"); WORK: scratch directory (default: a new
#   temporary one; a second call reuses its finished runs); INFINI: binary.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-docs/figures}"
infini="${INFINI:-build/release/infini}"
steps="${STEPS:-300}"
passkey_steps="${PASSKEY_STEPS:-150}"
nll_length="${NLL_LENGTH:-16K}"
nll_windows="${NLL_WINDOWS:-8}"
passkey_lengths="${PASSKEY_LENGTHS:-1K,4K,16K}"
passkey_trials="${PASSKEY_TRIALS:-10}"
work="${WORK:-$(mktemp -d)}"
unset OPENBLAS_CORETYPE  # see ../shared/machine.md
mkdir -p "$out" "$work"
types=(infini-linear infini-delta xl bswa fam full)

bible gen1:1-rev22:21 > "$work/kjv.txt"
[[ -d "$work/data" ]] || "$infini" prepare --input "$work/kjv.txt" --out "$work/data" >/dev/null
"$infini" data passkey --out "$work/passkey" --count 4000 --min-length 256 --max-length 1K \
  --seq-len 1K --seed 7 >/dev/null
[[ -d "$work/passkey/data" ]] ||
  "$infini" prepare --input "$work/passkey/passkey.txt" --out "$work/passkey/data" \
    --val-fraction 0.05 >/dev/null

for type in "${types[@]}"; do
  case "$type" in
    infini-linear) attention='{"type": "infini", "segment_length": 128, "memory_update": "linear"}' ;;
    infini-delta) attention='{"type": "infini", "segment_length": 128, "memory_update": "delta"}' ;;
    xl) attention='{"type": "xl", "segment_length": 128}' ;;
    bswa) attention='{"type": "bswa", "segment_length": 128, "memory_blocks": 1}' ;;
    fam) attention='{"type": "fam", "segment_length": 128, "memory_blocks": 1, "fam_length": 32}' ;;
    full) attention='{"type": "full", "segment_length": 128}' ;;
  esac
  /usr/bin/python3 - "$work/$type.json" "$attention" <<'PY'
import json, sys
config = json.load(open("configs/infini-base.json"))
config.update(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
              head_dim=32, intermediate_size=512)
config["attention"] = json.loads(sys.argv[2])
json.dump(config, open(sys.argv[1], "w"), indent=2)
PY
  if [[ ! -e "$work/kjv-$type/latest" ]]; then
    echo "== $type: $steps steps on the KJV" >&2
    "$infini" train --config "$work/$type.json" --data "$work/data" --out "$work/kjv-$type" \
      --steps "$steps" --batch 8 --seq-len 1024 --data-order sequential --lr 2e-3 --warmup 30 \
      --eval-every "$steps" --eval-batches 4 --save-every 0 --sample-tokens 0 --seed 1 \
      --threads 2 --log-every 50 >"$work/kjv-$type.log"
  fi
  "$infini" info --model "$work/kjv-$type/latest" --stream-length 1M --measure-length 0 --json \
    >"$work/info-$type.json"
  if [[ " ${NO_PASSKEY:-} " == *" $type "* ]]; then
    rm -f "$work/passkey-$type.json"
    continue
  fi
  if [[ ! -e "$work/pk-$type/latest" ]]; then
    echo "== $type: $passkey_steps passkey fine-tuning steps" >&2
    "$infini" train --init "$work/kjv-$type/latest" --data "$work/passkey/data" \
      --out "$work/pk-$type" --steps "$passkey_steps" --batch 16 --seq-len 1024 \
      --data-order sequential --lr 1e-3 --warmup 10 --eval-every 0 --eval-batches 0 \
      --save-every 0 --sample-tokens 0 --seed 1 --threads 2 --log-every 50 >"$work/pk-$type.log"
  fi
  echo "== $type: passkey" >&2
  [[ -s "$work/passkey-$type.json" ]] ||
    "$infini" eval passkey --model "$work/pk-$type/latest" --lengths "$passkey_lengths" \
      --positions start,middle,end --trials "$passkey_trials" --json >"$work/passkey-$type.json"
done

models=()
for type in "${types[@]}"; do models+=(--model "$work/kjv-$type/latest"); done
echo "== NLL by position" >&2
"$infini" plot nll "${models[@]}" --tokens "$work/data/val.tokens" --length "$nll_length" \
  --windows "$nll_windows" --bins 32 --out "$out/nll_by_position.svg" \
  --csv "$work/nll_by_position.csv" >"$work/nll.md"
cp "$work/nll_by_position.csv" "$out/nll_by_position.csv"

/usr/bin/python3 - "$work" "$out" "$steps" "$passkey_steps" "${types[@]}" <<'PY'
import csv, json, math, os, sys
work, out, steps, pk_steps, types = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
info = {t: json.load(open(os.path.join(work, f"info-{t}.json"))) for t in types}
passkey = {t: json.load(open(os.path.join(work, f"passkey-{t}.json"))) for t in types
           if os.path.exists(os.path.join(work, f"passkey-{t}.json"))}
nll = {}
for row in csv.DictReader(open(os.path.join(work, "nll_by_position.csv"))):
    nll.setdefault(row["model"], []).append(float(row["mean_nll"]))
def model_nll(t):
    for name, values in nll.items():
        if f"kjv-{t}" in name:
            return sum(values) / len(values)
    raise SystemExit(f"no NLL curve for {t}")
floats = {t: info[t]["state"]["floats"] for t in types}
largest = max(floats.values())
lines = [f"Each model: bytes, d 128, 4 layers, 4 x 32 heads, SwiGLU 512, segment N = 128; "
         f"{steps} KJV steps of 8 x 1024 tokens (same batches, seed 1). State at a 1M-token "
         f"stream; held-out perplexity per byte = exp(mean NLL) over the validation windows of "
         f"`infini plot nll` (each streamed from a fresh state).", "",
         "| model | state between segments (floats) | compression vs largest | held-out perplexity (per byte) | bits/byte |",
         "|---|---:|---:|---:|---:|"]
for t in types:
    mean = model_nll(t)
    lines.append(f"| {t} | {floats[t]:,} | {largest / floats[t]:.1f}x | {math.exp(mean):.3f} | "
                 f"{mean / math.log(2):.3f} |")
lines += ["", "Footprint formulas (Table 1 of the Infini-attention paper; L layers, Hkv kv heads, "
          "d head dim, N segment, F FAM rows, T tokens so far):", "",
          "| model | formula | this configuration | at a 1M-token stream (floats) |", "|---|---|---|---:|"]
for t in types:
    s = info[t]["state"]
    lines.append(f"| {t} | `{s['formula']}` | `{s['formula_numbers']}` | {s['floats']:,} |")
first = next(iter(passkey.values()))
lengths = first["lengths"]
positions = [p["name"] for p in first["positions"]]
trials = first["trials_per_cell"]
lines += ["", f"Passkey retrieval after {pk_steps} fine-tuning steps of 16 x 1024 tokens "
          f"(`infini data passkey`, 256 to 1K tokens) from each KJV model: exact match over "
          f"{trials} trials per cell (keys never trained on).", "",
          "| model | " + " | ".join(f"{n // 1024}K {p}" for n in lengths for p in positions) + " |",
          "|---|" + "---:|" * (len(lengths) * len(positions))]
for t in types:
    if t not in passkey:
        lines.append(f"| {t} | " + " | ".join("not run" for n in lengths for p in positions) + " |")
        continue
    cells = {(c["length"], c["position"]): c["exact_match"] for c in passkey[t]["cells"]}
    lines.append(f"| {t} | " + " | ".join(f"{100 * cells[(n, p)]:.0f}%" for n in lengths
                                           for p in positions) + " |")
text = "\n".join(lines) + "\n"
open(os.path.join(out, "compare_mechanisms.md"), "w").write(text)
print(text)
PY
