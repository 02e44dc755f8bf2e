#!/usr/bin/env bash
# The README's first command: sets up, builds and runs the main job on the project's default.
#
# The main job: passkey retrieval (Infini-attention, Appendix B) by the shipped model
# models/passkey-delta-tiny (bytes, d 128, 3 layers, delta memory, segment 128, 2 MB), each
# prompt streamed through the model in constant memory: the table of exact match per length x
# position, tokens/s and the peak memory, which stays flat from 32K to 1M tokens. The model was
# trained by scripts/train_passkey_model.sh; docs/results.md ("Passkey") has the full table: it
# retrieves the key at 32K and 128K tokens and fails from 256K on.
#
#   TRIALS=20 bash scripts/main.sh                 # more keys per cell (default 3)
#   bash scripts/main.sh --seed 7                  # extra arguments go to `infini eval passkey`
#   bash scripts/train_kjv.sh                      # the former main job: train on the KJV
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh release
unset OPENBLAS_CORETYPE

exec build/release/infini eval passkey --model models/passkey-delta-tiny \
  --lengths 32K,128K,1M --positions start,middle,end --trials "${TRIALS:-3}" "$@"
