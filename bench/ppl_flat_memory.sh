#!/usr/bin/env bash
# Streams 65,536 and 1,048,576 bytes of the King James Bible through `infini ppl` on the baseline
# configuration and prints peak RSS and speed for each: the memory must not grow with the input.
# Usage: bench/ppl_flat_memory.sh [build/release/infini] [model dir]
set -euo pipefail
infini="${1:-build/release/infini}"
model="${2:-}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [ -z "$model" ]; then
  model="$work/model"
  "$infini" init --config "$(dirname "$0")/../configs/infini-base.json" --out "$model" --seed 1 >/dev/null
fi
bible gen1:1-rev22:21 > "$work/kjv.txt"
head -c 65536 "$work/kjv.txt" > "$work/64k.txt"
head -c 1048576 "$work/kjv.txt" > "$work/1m.txt"
printf '| input bytes | tokens/s | peak RSS (MB) |\n|---:|---:|---:|\n'
for f in 64k 1m; do
  env -u OPENBLAS_CORETYPE "$infini" ppl --model "$model" --input "$work/$f.txt" --json > "$work/$f.json"
  /usr/bin/python3 - "$work/$f.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"| {r['tokens'] + 1:,} | {r['tokens_per_second']:,.0f} | {r['peak_rss_bytes'] / 1e6:.1f} |")
PY
done
