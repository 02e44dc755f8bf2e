#!/usr/bin/env bash
# Sets up, builds and runs the main job on the project's default (the README's first command).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh release
unset OPENBLAS_CORETYPE
exec build/release/infini selfcheck "$@"
