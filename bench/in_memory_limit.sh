#!/usr/bin/env bash
# Runs a command in a fresh memory cgroup limited to LIMIT_MB, then prints on stderr what the
# kernel charged it: the most memory it held, how often it reached the limit (the kernel then
# reclaimed pages: the page cache, the pages of memory-mapped files such as a spilled feature
# cache) and whether it was killed for memory. Shows that file-backed pages counted in RSS are
# memory the process can do without. Needs root and cgroup v1's memory controller or cgroup v2.
#   bench/in_memory_limit.sh LIMIT_MB CMD [ARG ...]   (exits with the command's status)
set -euo pipefail
[[ $# -ge 2 && $1 =~ ^[0-9]+$ ]] || { echo "usage: bench/in_memory_limit.sh LIMIT_MB CMD [ARG ...]" >&2; exit 2; }
limit=$(( $1 * 1024 * 1024 )); shift
if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then  # cgroup v2
  parent=/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/self/cgroup)
  cg=$parent/tltrain_limit_$$
  mkdir "$cg"; echo "$limit" > "$cg/memory.max"; echo 0 > "$cg/memory.swap.max" 2>/dev/null || true
  report() { echo "memory limit $(( limit >> 20 )) MiB: peak $(( $(cat "$cg/memory.peak" 2>/dev/null || echo 0) >> 20 )) MiB, $(sed -n 's/^max //p' "$cg/memory.events") times at the limit, $(sed -n 's/^oom_kill //p' "$cg/memory.events") killed" >&2; }
else  # cgroup v1
  parent=/sys/fs/cgroup/memory$(sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup)
  cg=$parent/tltrain_limit_$$
  mkdir "$cg"; echo "$limit" > "$cg/memory.limit_in_bytes"; echo 0 > "$cg/memory.swappiness" 2>/dev/null || true
  report() { echo "memory limit $(( limit >> 20 )) MiB: peak $(( $(cat "$cg/memory.max_usage_in_bytes") >> 20 )) MiB, $(cat "$cg/memory.failcnt") times at the limit, $(sed -n 's/^oom_kill //p' "$cg/memory.oom_control") killed" >&2; }
fi
echo $$ > "$cg/cgroup.procs"
set +e
"$@"; rc=$?
set -e
report
echo $$ > "$parent/cgroup.procs"
rmdir "$cg"
exit $rc
