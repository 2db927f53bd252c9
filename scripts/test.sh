#!/usr/bin/env bash
# Builds (incrementally) and runs fathom's whole test suite. Installs anything missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
./setup.sh
ctest --preset release -j"$(nproc)" "$@"
