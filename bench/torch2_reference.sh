#!/usr/bin/env bash
# The Python references under PyTorch 2.x from PyPI, as a user picking Python today installs it:
# torch (the venv scripts/build_libtorch2.sh makes and shares) plus torchvision, numpy, Pillow and
# Flask. Debian's torch 1.13 in /usr/bin/python3 is never touched. Prints the venv's python.
#   bench/torch2_reference.sh
# Env: TORCH2_VENV (as build_libtorch2.sh), TORCHVISION_SPEC (default: torchvision; PyPI may not yet
# have the torchvision built for the newest torch: then give the newest one, e.g. torchvision==0.29.2,
# which installs without replacing torch (--no-deps) and runs the references' pure-Python parts).
set -euo pipefail
venv=${TORCH2_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tltrain/venv-torch2}
if [[ ! -x "$venv/bin/python" ]]; then
  /usr/bin/python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q torch >&2
fi
if ! "$venv/bin/python" -c "import torchvision, numpy, PIL, flask" 2>/dev/null; then
  "$venv/bin/pip" install -q --no-deps "${TORCHVISION_SPEC:-torchvision}" >&2
  "$venv/bin/pip" install -q numpy pillow flask >&2
fi
"$venv/bin/python" -c "import torch, torchvision; assert torch.__version__ >= '2', torch.__version__" >&2
echo "$venv/bin/python"
