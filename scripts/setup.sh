#!/usr/bin/env bash
# Installs every Debian package infini needs to build, test and run. Idempotent: when everything
# is already installed it changes nothing and takes a second.
#   build:  g++ cmake ninja pkg-config, oneDNN (GEMM), nlohmann-json, CLI11, SentencePiece
#   tests:  GoogleTest, Google Benchmark, Debian's python3-torch + python3-numpy (reference tensors),
#           OpenBLAS for torch (without it torch falls back to the reference BLAS, ~40x slower)
#   data:   bible-kjv (the default training corpus: `bible gen1:1-rev22:21`)
set -euo pipefail

packages=(
  g++ cmake ninja-build pkg-config make git
  libdnnl-dev nlohmann-json3-dev libcli11-dev libsentencepiece-dev sentencepiece
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-torch python3-numpy libopenblas0
  bible-kjv
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "setup: done"
