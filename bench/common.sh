# Sourced by the benchmarks: the one place that finds tltrain and makes the ImageNet backbone.
#   bench_prepare NAME   sets PY, SHARED, WEIGHTS, BACKBONE; exits 0 with a message when ../shared
#                        is absent, 1 when build/tltrain is missing; exports the backbone if needed.
#   wait_up PORT         returns once a server answers /health on PORT (1 after 60 s).
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
