#!/usr/bin/env bash
# Serving benchmark on loopback with wrk: tltrain serve with dynamic batching, tltrain serve
# without (--max-batch 1), and the Flask/torch reference (bench/reference/flask_server.py) on the
# same model file (as the seeds run it, and tuned with optimize_for_inference like tltrain serve),
# one server at a time, at concurrency 1, 8 and 32; the tuned reference under PyTorch 2.x too when
# bench/torch2_reference.sh's venv is ready (TORCH2_PY="" leaves it out). Prints a markdown table.
#   bench/serve_bench.sh MODEL.pt IMAGE.jpg [SECONDS per point, default 15]
# Env: TLTRAIN (default build/tltrain), SERVE_ARGS (extra args for the batching server),
#      POINTS (concurrencies, default "1 8 32"; "32 32 32" repeats one point).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
model=$1 image=$2 secs=${3:-15}
tltrain=${TLTRAIN:-build/tltrain}
port=18181
lua=bench/post_image.lua

# CPU seconds a process has used so far, all its threads (utime + stime in /proc/PID/stat).
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{print ($14 + $15) / t}' "/proc/$1/stat"; }

# One wrk run → "req/s | p50 | p99 | errors | server CPU ms/request | wrk CPU ms/request".
# wrk shares the machine's cores with the server: its own CPU per request is part of what every
# server here pays, and bounds how far any ratio between them can go.
measure() {
  local c=$1 threads=1
  ((c > 1)) && threads=2
  local out before after wrk_cpu TIMEFORMAT='%U %S'
  before=$(cpu_s "$pid")
  { time wrk -t"$threads" -c"$c" -d"${secs}s" --timeout 10s --latency -s "$lua" "http://127.0.0.1:$port/predict" -- "$image" \
      >/tmp/serve_bench_wrk.out; } 2>/tmp/serve_bench_wrk.time
  after=$(cpu_s "$pid")
  out=$(cat /tmp/serve_bench_wrk.out)
  wrk_cpu=$(awk '{print $1 + $2}' /tmp/serve_bench_wrk.time)
  local rps p50 p99 non2xx errs n
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  errs=$(awk '/Socket errors/ {print $0}' <<<"$out" | sed 's/ *Socket errors: //')
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  echo "$rps | $p50 | $p99 | ${non2xx:-0}${errs:+ ($errs)} | $(awk -v a="$before" -v b="$after" -v n="$n" 'BEGIN {printf "%.2f", 1000 * (b - a) / n}') | $(awk -v w="$wrk_cpu" -v n="$n" 'BEGIN {printf "%.2f", 1000 * w / n}')"
}

pid=
trap '[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null' EXIT

run_server() {  # NAME CMD...
  local name=$1
  shift
  # Each server gets the next port: the last one's sockets linger in TIME_WAIT, and Werkzeug
  # refuses a port that has any ("Address already in use").
  port=$((port + 1))
  # A leftover server on the port would be measured instead of this one.
  if curl -s -o /dev/null "http://127.0.0.1:$port/health"; then
    echo "port $port is already served by another process" >&2
    exit 1
  fi
  "$@" >"/tmp/serve_bench_$port.log" 2>&1 &
  pid=$!
  wait_up "$port"
  # Warm-up: first calls pay for allocations and TorchScript's profiling runs.
  wrk -t2 -c8 -d3s -s "$lua" "http://127.0.0.1:$port/predict" -- "$image" >/dev/null
  for c in ${POINTS:-1 8 32}; do
    echo "| $name | $c | $(measure "$c") |"
  done
  kill -TERM "$pid"  # background jobs of a script ignore SIGINT
  wait "$pid" || true
  pid=
}

echo "model: $model, image: $image ($(stat -c %s "$image") bytes), $secs s per point, $(nproc) cores, $(date -u +%F)"
echo
echo "| server | concurrency | requests/s | p50 | p99 | non-2xx | server CPU ms/req | wrk CPU ms/req |"
echo "|---|---|---|---|---|---|---:|---:|"
# shellcheck disable=SC2086
run_server "tltrain serve, dynamic batching (max 16, 2 ms)" "$tltrain" serve --model "$model" --port "$((port + 1))" --max-batch 16 --max-wait-ms 2 ${SERVE_ARGS:-}
run_server "tltrain serve, no batching (--max-batch 1)" "$tltrain" serve --model "$model" --port "$((port + 1))" --max-batch 1
run_server "Flask + torch.jit.load (reference, as the seeds)" /usr/bin/python3 bench/reference/flask_server.py --model "$model" --port "$((port + 1))"
run_server "Flask + optimize_for_inference (tuned reference)" /usr/bin/python3 bench/reference/flask_server.py --model "$model" --port "$((port + 1))" --optimize
# The tuned reference again under PyTorch 2.x from PyPI (bench/torch2_reference.sh), when ready.
py2=$(torch2_py)
if [[ -n "$py2" ]]; then
  run_server "Flask + optimize_for_inference, PyTorch $("$py2" -c 'import torch; print(torch.__version__)' 2>/dev/null)" \
    "$py2" bench/reference/flask_server.py --model "$model" --port "$((port + 1))" --optimize
fi
