# Sourced by the benchmarks: the one place that finds tltrain and makes the ImageNet backbone.
#   bench_prepare NAME   sets PY, SHARED, WEIGHTS, BACKBONE; exits 0 with a message when ../shared
#                        is absent, 1 when build/tltrain is missing; exports the backbone if needed.
#   wait_up PORT         returns once a server answers /health on PORT (1 after 60 s).
#   eval_accuracy FILE   prints an eval.json's accuracy with 4 decimals.
#   synthetic_jpegs DIR N  writes N random 320x320 JPEGs (seed 0) as DIR/a and DIR/b, for speed benches.
#   torch2_py            prints the Python with PyTorch 2.x the references also run under:
#                        TORCH2_PY when set ("" leaves them out), else bench/torch2_reference.sh's
#                        venv when it is ready, else nothing.
bench_prepare() {
  local name=$1
  PY=/usr/bin/python3
  SHARED=${SHARED:-../shared}
  if [[ ! -d "$SHARED" ]]; then
    echo "$name: $SHARED is absent (no data/weights) — skipped"
    exit 0
  fi
  WEIGHTS=${WEIGHTS:-$SHARED/models/mobilenet_v2_imagenet.pth}
  BACKBONE=build/backbones/mobilenet_v2_imagenet.pt
  [[ -x build/tltrain ]] || { echo "$name: build/tltrain is missing; build it first" >&2; exit 1; }
  if [[ ! -f "$BACKBONE" ]]; then
    echo "$name: making $BACKBONE" >&2
    mkdir -p "$(dirname "$BACKBONE")"
    "$PY" scripts/export_backbone.py --arch mobilenet_v2 --weights "$WEIGHTS" --out "$BACKBONE" >&2
  fi
}

wait_up() {
  local port=$1
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && return 0
    sleep 0.1
  done
  echo "server on $port did not come up" >&2
  return 1
}

torch2_py() {
  if [[ -n "${TORCH2_PY+set}" ]]; then echo "$TORCH2_PY"; return 0; fi
  local v=${TORCH2_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tltrain/venv-torch2}/bin/python
  if [[ -x "$v" ]] && "$v" -c "import torchvision, PIL" 2>/dev/null; then echo "$v"; fi
  return 0
}

eval_accuracy() { /usr/bin/python3 -c 'import json, sys; print("%.4f" % json.load(open(sys.argv[1]))["accuracy"])' "$1"; }

synthetic_jpegs() {
  /usr/bin/python3 - "$1" "$2" <<'PY'
import os, sys, numpy as np
from PIL import Image
root, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
for c in ("a", "b"):
    os.makedirs(f"{root}/{c}", exist_ok=True)
    for i in range(n // 2):
        Image.fromarray(rng.integers(0, 255, (320, 320, 3), dtype=np.uint8)).save(f"{root}/{c}/{i}.jpg", quality=90)
PY
}
