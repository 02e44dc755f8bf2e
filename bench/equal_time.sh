#!/usr/bin/env bash
# Equal wall-clock training: infini against the PyTorch baseline (../shared/baselines/torch_infini.py)
# on the same KJV split, with the same recipe, for the same number of minutes each, one after
# the other (never at once), 2 threads each. Prints a markdown table (held-out bits/byte at the
# end, steps, tokens seen, tokens/s) and writes the curves as CSV + SVG.
#
# Usage: bench/equal_time.sh MINUTES [FIGURES_DIR (default docs/figures)]
#
# Environment (defaults in brackets; every recipe value is passed to both programs explicitly):
#   RUNS [runs/equal-time]   work folder: data/ (prepared once, reused), infini/, torch/, logs
#   EVAL_EVERY [25]          held-out evaluation every K steps (and at the end), both programs
#   EVAL_BATCHES [8]         8 batches of 4 windows of 2,048 + 1 tokens of val.tokens
#   LR [1e-3] MIN_LR [LR/10] WARMUP [100] SCHEDULE [cosine] WEIGHT_DECAY [0.1] GATE_LR_MULT [10]
#   CLIP [1.0] BATCH [4] SEQ_LEN [2048] SEED [0]: infini train's defaults
#   INFINI_CONFIG [configs/infini-base.json]
#   MATCH [0]                1: infini trains the baseline's architecture (linear memory, tied
#                            head, RMSNorm eps 1e-6) and PyTorch starts from infini's init
#                            distributions: the two then differ only in speed and random draws
#   ORDER [infini-first]     or torch-first
#   FULL_EVAL [1]            also stream the whole val shard through both final models
#   INFINI [build/release/infini], TORCH_BASELINE [../shared/baselines/torch_infini.py]
#
# The host is shared: run it when `uptime` shows an idle machine, and compare only figures from
# one invocation (both programs on the same host, minutes apart).
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:?usage: bench/equal_time.sh MINUTES [FIGURES_DIR]}"
figures="${2:-docs/figures}"
runs="${RUNS:-runs/equal-time}"
infini="${INFINI:-build/release/infini}"
eval_every="${EVAL_EVERY:-25}"
eval_batches="${EVAL_BATCHES:-8}"
lr="${LR:-1e-3}"
min_lr="${MIN_LR:-$(awk "BEGIN{print $lr / 10}")}"
warmup="${WARMUP:-100}"
schedule="${SCHEDULE:-cosine}"
weight_decay="${WEIGHT_DECAY:-0.1}"
gate_lr_mult="${GATE_LR_MULT:-10}"
clip="${CLIP:-1.0}"
batch="${BATCH:-4}"
seq_len="${SEQ_LEN:-2048}"
seed="${SEED:-0}"
config="${INFINI_CONFIG:-configs/infini-base.json}"
torch_init=torch
torch_model="torch_infini.py InfiniLM: linear memory, tied head, its own init"
order="${ORDER:-infini-first}"
py=/usr/bin/python3  # Debian's torch and numpy (../shared/machine.md)
unset OPENBLAS_CORETYPE  # it halves OpenBLAS (AVX2 kernels) when set to Haswell
torch_env=(env OMP_WAIT_POLICY=passive GLIBC_TUNABLES=glibc.malloc.hugetlb=1 ATEN_CPU_CAPABILITY=avx512)

[[ -x "$infini" ]] || { echo "$infini: not built (cmake --preset release && cmake --build --preset release)" >&2; exit 1; }
mkdir -p "$runs"
rm -rf "$runs/infini" "$runs/torch"

if [[ "${MATCH:-0}" == 1 ]]; then
  config="$runs/matched-config.json"
  cat > "$config" <<'EOF'
{
  "model_type": "infini-transformer",
  "vocab_size": 256, "hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
  "num_key_value_heads": 4, "head_dim": 64, "intermediate_size": 1024,
  "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": true,
  "attention": { "type": "infini", "segment_length": 256, "memory_update": "linear", "gate_init": 0.0 },
  "tokenizer": { "type": "byte" }
}
EOF
  torch_init=infini
  torch_model="torch_infini.py InfiniLM, infini's init distributions"
fi
infini_model="$(basename "$config"): $($py -c "import json; c = json.load(open('$config')); a = c['attention']
print(a.get('memory_update', 'delta'), 'memory,', 'tied' if c.get('tie_word_embeddings') else 'untied', 'head')")"

# ---- the data: prepared once -------------------------------------------------------------------
data="$runs/data"
if [[ ! -f "$data/dataset.json" ]]; then
  bible gen1:1-rev22:21 > "$runs/kjv.txt"
  "$infini" prepare --input "$runs/kjv.txt" --out "$data"
fi
$py -c "
import numpy as np, sys
sys.path.insert(0, 'bench')
from torch_train_kjv import shard_open
np.asarray(shard_open('$data/val.tokens')[0], dtype=np.uint8).tofile('$runs/val.txt')"

echo "host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(grep -m2 -E 'family|^model' /proc/cpuinfo | tr -s '\t ' ' ' | paste -sd, -)"
echo "date: $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo ?), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
awk '{ if ($1 > 0.5) print "warning: load average " $1 ": the host is busy, the figures will be noisy" }' /proc/loadavg

recipe=(--batch "$batch" --seq-len "$seq_len" --lr "$lr" --min-lr "$min_lr" --warmup "$warmup"
        --schedule "$schedule" --weight-decay "$weight_decay" --gate-lr-mult "$gate_lr_mult"
        --beta1 0.9 --beta2 0.95 --eps 1e-8 --clip "$clip" --eval-every "$eval_every"
        --eval-batches "$eval_batches" --seed "$seed" --threads 2 --steps 0)

run_infini() {
  echo "== infini train, $minutes minutes: $infini train --config $config --data $data --out $runs/infini --time-limit $minutes ${recipe[*]} --save-every 0 --log-every 10"
  local t0 t1
  t0=$(date +%s.%N)
  "$infini" train --config "$config" --data "$data" --out "$runs/infini" --time-limit "$minutes" \
    "${recipe[@]}" --save-every 0 --log-every 10 | tee "$runs/infini.log"
  t1=$(date +%s.%N)
  infini_wall=$(awk "BEGIN{print $t1 - $t0}")
}
run_torch() {
  echo "== PyTorch, $minutes minutes: ${torch_env[*]} $py bench/torch_train_kjv.py --data $data --out $runs/torch --minutes $minutes ${recipe[*]} --init $torch_init"
  local full=()
  [[ "${FULL_EVAL:-1}" == 1 ]] || full=(--no-full-eval)
  "${torch_env[@]}" $py bench/torch_train_kjv.py --data "$data" --out "$runs/torch" --minutes "$minutes" \
    "${recipe[@]}" --init "$torch_init" --log-every 10 "${full[@]}" | tee "$runs/torch.log"
}
if [[ "$order" == torch-first ]]; then run_torch; run_infini; else run_infini; run_torch; fi

full_args=()
if [[ "${FULL_EVAL:-1}" == 1 ]]; then
  echo "== infini ppl on the whole val text (streamed, memory carried)"
  "$infini" ppl --model "$runs/infini/latest" --input "$runs/val.txt" --json --threads 2 > "$runs/infini_full.json"
  full_args=(--infini-full "$runs/infini_full.json")
fi
echo
$py bench/plot_curves.py --infini-run "$runs/infini" --torch-run "$runs/torch" "${full_args[@]}" \
  --infini-wall "$infini_wall" --minutes "$minutes" --out "$figures" \
  --infini-model "$infini_model" --torch-model "$torch_model"
