#!/usr/bin/env bash
# Installs dependencies, builds, and runs the whole test suite through ctest.
# Tests that need ../shared (real images and ImageNet weights) skip with a message without it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cd "${BUILD_DIR:-build}"
ctest --output-on-failure -j"$(nproc)" --timeout 900
