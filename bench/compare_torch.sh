#!/usr/bin/env bash
# infini against the PyTorch baseline (../shared/baselines/torch_infini.py) on the baseline
# configuration (bytes, d 256, 4 layers, 4 x 64 heads, SwiGLU 1024, segment 256), in one session,
# alternating the two programs ROUNDS times and printing the median of each:
#   training      batch 4 x 2048 tokens, AdamW (tokens/s of the optimizer steps)
#   prefill       65,536 tokens streamed (tokens/s, peak RSS)
# Usage: bench/compare_torch.sh [rounds (default 3)]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
infini=build/release/infini
torch_script="${TORCH_BASELINE:-../shared/baselines/torch_infini.py}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
unset OPENBLAS_CORETYPE
torch_env=(env OMP_WAIT_POLICY=passive GLIBC_TUNABLES=glibc.malloc.hugetlb=1 ATEN_CPU_CAPABILITY=avx512)

bible gen1:1-rev22:21 > "$work/kjv.txt"
head -c 65537 "$work/kjv.txt" > "$work/64k.txt"
"$infini" prepare --input "$work/kjv.txt" --out "$work/data" >/dev/null
"$infini" init --config configs/infini-base.json --out "$work/model" --seed 1 >/dev/null

median() { sort -g | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for r in $(seq "$rounds"); do
  # infini training: 12 steps, the first 2 (warm-up) left out
  rm -rf "$work/run"
  "$infini" train --init "$work/model" --data "$work/data" --out "$work/run" --steps 12 \
    --batch 4 --seq-len 2048 --eval-every 1000 --save-every 0 --sample-tokens 0 >/dev/null
  /usr/bin/python3 -c "
import json,statistics,sys
rows=[json.loads(l) for l in open('$work/run/metrics.jsonl') if '\"tokens_per_second\"' in l]
print(statistics.median(r['tokens_per_second'] for r in rows[2:]))" >> "$work/infini_train"
  "${torch_env[@]}" /usr/bin/python3 "$torch_script" --mode train --threads 2 --json "$work/t.json" >/dev/null
  /usr/bin/python3 -c "import json; print(json.load(open('$work/t.json'))['train_tokens_per_s']['median'])" >> "$work/torch_train"
  "$infini" ppl --model "$work/model" --input "$work/64k.txt" --json > "$work/p.json"
  /usr/bin/python3 -c "import json; d=json.load(open('$work/p.json')); print(d['tokens_per_second'], d['peak_rss_bytes'])" >> "$work/infini_infer"
  "${torch_env[@]}" /usr/bin/python3 "$torch_script" --mode infer --threads 2 --json "$work/i.json" >/dev/null
  /usr/bin/python3 -c "import json; d=json.load(open('$work/i.json')); print(d['infer_tokens_per_s']['median'], d['infer_peak_rss_mb'] * 1e6)" >> "$work/torch_infer"
done
echo "| measure | infini (median of $rounds) | PyTorch (median of $rounds) | ratio |"
echo "|---|---:|---:|---:|"
it=$(median < "$work/infini_train"); tt=$(median < "$work/torch_train")
echo "| training tokens/s (4 x 2048, AdamW) | ${it%.*} | ${tt%.*} | $(awk "BEGIN{printf \"%.2f\", $it/$tt}") |"
ii=$(cut -d' ' -f1 "$work/infini_infer" | median); ir=$(cut -d' ' -f2 "$work/infini_infer" | median)
ti=$(cut -d' ' -f1 "$work/torch_infer" | median); tr=$(cut -d' ' -f2 "$work/torch_infer" | median)
echo "| streaming prefill tokens/s (65,536 tokens) | ${ii%.*} | ${ti%.*} | $(awk "BEGIN{printf \"%.2f\", $ii/$ti}") |"
echo "| peak RSS while streaming | $(awk "BEGIN{printf \"%.0f MB\", $ir/1e6}") | $(awk "BEGIN{printf \"%.0f MB\", $tr/1e6}") | |"
