#!/usr/bin/env bash
# Every attention type on the baseline dimensions (bytes, d 256, 4 layers, 4 x 64 heads, SwiGLU
# 1024, segment 256), randomly initialised with seed 1: the state each carries (`infini info`,
# spec formula) and prefill / decode speed as the stream grows (`infini bench`, one repetition,
# decode from a copy of the state). Full attention's state and per-token time grow with the
# stream; the others stay flat. Full attention costs O(T) per token (O(T^2) to prefill), so it is
# measured up to FULL_MAX (default 64K) only; the others up to MAX (default 1M).
# Usage: bench/mechanisms_flat.sh [infini binary (build/release/infini)] [threads (2)]
set -euo pipefail
cd "$(dirname "$0")/.."
infini="${1:-build/release/infini}"
threads="${2:-2}"
max="${MAX:-1M}"
full_max="${FULL_MAX:-64K}"
decode="${DECODE:-64}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
unset OPENBLAS_CORETYPE  # see ../shared/machine.md

load=$(cut -d' ' -f1 /proc/loadavg)
if awk "BEGIN{exit !($load > 0.5)}"; then
  echo "warning: load average $load: other work is running, timings will be noisy" >&2
fi

# type -> the attention object (the baseline's segment 256; window / blocks of one segment)
declare -A attention=(
  [infini]='{"type": "infini", "segment_length": 256, "memory_update": "delta"}'
  [full]='{"type": "full", "segment_length": 256}'
  [sliding]='{"type": "sliding", "segment_length": 256, "window": 256}'
  [xl]='{"type": "xl", "segment_length": 256}'
  [bswa]='{"type": "bswa", "segment_length": 256, "memory_blocks": 1}'
)
types=(infini full sliding xl bswa)
if [[ -n "${WITH_FAM:-1}" ]]; then
  attention[fam]='{"type": "fam", "segment_length": 256, "memory_blocks": 1, "fam_length": 64}'
  types+=(fam)
fi

for type in "${types[@]}"; do
  /usr/bin/python3 - "$work/$type.json" "${attention[$type]}" <<'PY'
import json, sys
config = json.load(open("configs/infini-base.json"))
config["attention"] = json.loads(sys.argv[2])
json.dump(config, open(sys.argv[1], "w"), indent=2)
PY
  if ! "$infini" init --config "$work/$type.json" --out "$work/$type" --seed 1 >/dev/null 2>"$work/$type.err"; then
    echo "skipping $type: $(tail -1 "$work/$type.err")" >&2
    continue
  fi
  lengths="4K,64K,$max"
  [[ "$type" == full ]] && lengths="4K,16K,$full_max"
  for n in ${lengths//,/ }; do
    "$infini" info --model "$work/$type" --stream-length "$n" --measure-length 0 --json \
      > "$work/$type.info.$n.json"
  done
  "$infini" bench --model "$work/$type" --lengths "$lengths" --reps 1 --decode "$decode" \
    --threads "$threads" --output json > "$work/$type.bench.json"
done

/usr/bin/python3 - "$work" "${types[@]}" <<'PY'
import json, os, sys
work, types = sys.argv[1], sys.argv[2:]
def label(n):
    return f"{n >> 20}M" if n % (1 << 20) == 0 else f"{n >> 10}K" if n % 1024 == 0 else str(n)
print("| type | stream length | state between segments (spec formula) | compression vs full | prefill tok/s (from 0) | decode ms/token | peak RSS |")
print("|---|---:|---:|---:|---:|---:|---:|")
for t in types:
    path = os.path.join(work, t + ".bench.json")
    if not os.path.exists(path):
        continue
    bench = json.load(open(path))
    for r in bench["results"]:
        n = r["length"]
        info = json.load(open(os.path.join(work, f"{t}.info.{label(n)}.json")))
        state = info["state"]
        print(f"| {t} | {label(n)} | {state['bytes'] / 1e6:.2f} MB | {state['compression_vs_full']:.0f}x "
              f"| {r['prefill_total_tokens_per_second']['mean']:.0f} "
              f"| {r['decode_ms_per_token']['mean']:.3f} | {r['peak_rss_bytes'] / 1e6:.0f} MB |")
PY
