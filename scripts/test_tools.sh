#!/usr/bin/env bash
# Third-party readers that prove tltrain's files from the outside, for the tests: ONNX Runtime runs
# the exported ONNX file (a second opinion beside OpenCV DNN) and TensorBoard's own event reader
# reads `fit --tensorboard`'s files. Neither is packaged by Debian, so they come from PyPI into a
# venv of their own; Debian's python3-torch that the build and export use is never touched.
# Pinned to the versions the tests were checked with. Idempotent (a venv that already has both is
# reused). Without PyPI it warns and returns 0: the tests that need these readers then skip, saying why.
#   TLTRAIN_TOOLS_VENV  the venv (default ${XDG_CACHE_HOME:-$HOME/.cache}/tltrain/venv-tools, ~250 MB)
set -uo pipefail
venv=${TLTRAIN_TOOLS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tltrain/venv-tools}
say() { echo "[test_tools] $*"; }
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import onnxruntime, tensorboard' 2>/dev/null; then
  say "reusing $venv"
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
if ! /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null; then
  say "installing python3-venv"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv
fi
mkdir -p "$(dirname "$venv")"
if ! { [ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv "$venv"; } ||
   ! "$venv/bin/pip" install --quiet --disable-pip-version-check "onnxruntime==1.32.0" "tensorboard==2.21.0"; then
  say "WARNING: could not install onnxruntime and tensorboard into $venv (no PyPI?): their tests will skip"
  exit 0
fi
say "$("$venv/bin/python" -c 'import onnxruntime, tensorboard; print("onnxruntime", onnxruntime.__version__, "tensorboard", tensorboard.__version__)')"
