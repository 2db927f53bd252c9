#!/usr/bin/env bash
# Sets up fathom on a fresh Debian 12 machine: installs the Debian and npm packages it
# needs, then builds the release preset. Safe to run again; it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")"

PKGS=(build-essential cmake ninja-build pkg-config git clang libclang-rt-14-dev
      nlohmann-json3-dev libpcre2-dev libcli11-dev libfmt-dev
      libgtest-dev libgmock-dev libbenchmark-dev libicu-dev nodejs npm python3
      libopenblas-dev libopenmpi-dev openmpi-bin)

missing=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# nodejs may come from a vendor repo that bundles npm; don't ask apt for npm then.
if command -v npm >/dev/null 2>&1; then
  missing=("${missing[@]/npm}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# The server's integration tests drive fathom with the official OpenAI client; a tokenizer
# test reads fathom's tokenizers with Hugging Face's tokenizers.js.
if [ -f tests/server/package.json ] && { [ ! -d tests/server/node_modules/openai ] ||
     [ ! -d tests/server/node_modules/@huggingface/tokenizers ]; }; then
  (cd tests/server && npm install --no-audit --no-fund --silent)
fi

if [ "${FATHOM_SETUP_NO_BUILD:-0}" != 1 ]; then
  # Configure once; after that the build re-runs CMake itself when a CMake file or a source
  # glob changes, so a no-change run builds nothing.
  [ -f build/release/build.ninja ] || cmake --preset release >/dev/null
  cmake --build --preset release -j"$(nproc)"
  # The model the README's first `fathom run` uses (made once).
  scripts/tiny_model.sh build/tiny-v3
fi
