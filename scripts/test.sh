#!/usr/bin/env bash
# Installs dependencies, builds, and runs the whole test suite through ctest.
# Tests that need ../shared (real images and ImageNet weights) skip with a message without it;
# those that need ONNX Runtime or TensorBoard skip, saying so, when PyPI could not be reached.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# ONNX Runtime and TensorBoard from PyPI, for the tests that read tltrain's files with them.
bash scripts/test_tools.sh
cd "${BUILD_DIR:-build}"
ctest --output-on-failure -j"$(nproc)" --timeout 900
