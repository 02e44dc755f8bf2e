#!/usr/bin/env bash
# Streaming inference on the baseline configuration (configs/infini-base.json, initialised with
# seed 1 into a temporary folder) with `infini bench` at 4K, 64K and 1M tokens, and the two
# checks of issue 5's done-when:
#   peak RSS   streaming 1,048,576 tokens vs 65,536 tokens (within 5%). A process's peak RSS only
#              grows, so the 64K figure comes from a separate process (`--lengths 64K`); the 1M
#              figure is the main run's peak at 1M (its first repetition, the process's first
#              pass to 1M). Both processes load the same model, allocate the same decoders and run
#              the same warm-up; only the stream's length differs. The main run's own first-pass
#              value at 64K is printed too (the same measure within one process).
#   decode     ms/token at 1M vs at 4K of context (within 10%), both from the main run's mean.
# Builds nothing: run after `cmake --build --preset release`.
# Usage: bench/infer_flat.sh [infini binary (build/release/infini)] [threads (2)]
#        REPS=3 DECODE=128 CONFIG=configs/infini-base.json environment variables change the
#        repetitions, the decoded tokens and the configuration (a smoke test: CONFIG=configs/
#        infini-tiny.json REPS=1 bench/infer_flat.sh build/bench/infini 1).
set -euo pipefail
cd "$(dirname "$0")/.."
infini="${1:-build/release/infini}"
threads="${2:-2}"
reps="${REPS:-3}"
decode="${DECODE:-128}"
config="${CONFIG:-configs/infini-base.json}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
unset OPENBLAS_CORETYPE  # see ../shared/machine.md

load=$(cut -d' ' -f1 /proc/loadavg)
if awk "BEGIN{exit !($load > 0.5)}"; then
  echo "warning: load average $load: other work is running, timings will be noisy" >&2
fi
"$infini" init --config "$config" --out "$work/model" --seed 1 >/dev/null
bench=("$infini" bench --model "$work/model" --threads "$threads" --decode "$decode")

"${bench[@]}" --lengths 4K,64K,1M --reps "$reps" --output json > "$work/main.json"
"${bench[@]}" --lengths 64K --reps 1 --output json > "$work/64k.json"

/usr/bin/python3 - "$work/main.json" "$work/64k.json" "$config" <<'PY'
import json, math, sys
main, alone = (json.load(open(p)) for p in sys.argv[1:3])
rows = {r["length"]: r for r in main["results"]}
env = main["environment"]
print(f"infini bench, {sys.argv[3]} initialised with seed 1 "
      f"({main['type']}, {main['params'] / 1e6:.2f} M params), {env['threads']} threads, "
      f"CPU {env['cpu']}, {main['options']['reps']} repetitions, decode "
      f"{main['options']['decode']} tokens greedy from a copy of the state, tokens: "
      f"{main['options']['tokens']}\n")
def pm(stats, fmt):
    if stats is None: return "-"
    sd = stats["sd"]
    return fmt.format(stats["mean"]) + ("" if sd is None else " ± " + fmt.format(sd))
def label(n):
    return f"{n >> 20}M" if n % (1 << 20) == 0 else f"{n >> 10}K" if n % 1024 == 0 else str(n)
print("| length | prefill tok/s (stretch) | prefill tok/s (from 0) | decode ms/tok | decode tok/s "
      "| state | peak RSS |")
print("|---:|---:|---:|---:|---:|---:|---:|")
for n, r in rows.items():
    print(f"| {label(n)} | {pm(r['prefill_tokens_per_second'], '{:.0f}')} "
          f"| {pm(r['prefill_total_tokens_per_second'], '{:.0f}')} "
          f"| {pm(r['decode_ms_per_token'], '{:.3f}')} | {pm(r['decode_tokens_per_second'], '{:.1f}')} "
          f"| {main['state_bytes'] / 1e6:.3f} MB | {r['peak_rss_bytes'] / 1e6:.1f} MB |")
print()
rss_1m = rows[1 << 20]["peak_rss_bytes"]
rss_64k = alone["results"][0]["peak_rss_bytes"]
rss_64k_same = rows[1 << 16]["peak_rss_bytes"]
print(f"peak RSS at 1M / at 64K: {rss_1m / 1e6:.1f} MB / {rss_64k / 1e6:.1f} MB = "
      f"{rss_1m / rss_64k:.4f} (64K in a separate process; within the main run's first pass: "
      f"{rss_64k_same / 1e6:.1f} MB, ratio {rss_1m / rss_64k_same:.4f}; done-when: <= 1.05)")
d1m, d4k = rows[1 << 20]["decode_ms_per_token"], rows[1 << 12]["decode_ms_per_token"]
if d1m is None or d4k is None:
    print("decode ms/token at 1M / at 4K: not measured (DECODE=0)")
else:
    print(f"decode ms/token at 1M / at 4K: {d1m['mean']:.3f} / {d4k['mean']:.3f} = "
          f"{d1m['mean'] / d4k['mean']:.4f} (done-when: within 10%, 0.90 to 1.10)")
PY
