#!/usr/bin/env bash
# Sets up, builds and runs every test (the README's second command; .ci/run calls it).
# Slow checks carry the ctest label "slow" and are left out; run them with: scripts/test.sh --slow
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh ci
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"
unset OPENBLAS_CORETYPE
if [ "${1:-}" = "--slow" ]; then
  ctest --test-dir build/ci --output-on-failure -L slow
else
  ctest --preset ci -j "$(nproc)"
fi
