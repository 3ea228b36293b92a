#!/usr/bin/env bash
# Runs a command in a fresh memory cgroup limited to LIMIT_MB, then prints on stderr what the
# kernel charged it: the most memory it held, how often it reached the limit (the kernel then
# reclaimed pages: the page cache, the pages of memory-mapped files such as a spilled feature
# cache) and whether it was killed for memory. Shows that file-backed pages counted in RSS are
# memory the process can do without. Needs root and cgroup v1's memory controller, or cgroup v2
# with the memory controller enabled for this shell's cgroup's children.
#   bench/in_memory_limit.sh LIMIT_MB CMD [ARG ...]   (exits with the command's status)
set -euo pipefail
[[ $# -ge 2 && $1 =~ ^[0-9]+$ ]] || { echo "usage: bench/in_memory_limit.sh LIMIT_MB CMD [ARG ...]" >&2; exit 2; }
limit=$(( $1 * 1024 * 1024 )); shift
if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then  # cgroup v2
  parent=/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/self/cgroup)
  max=memory.max peak=memory.peak
  grep -qw memory "$parent/cgroup.subtree_control" || {
    echo "in_memory_limit: the memory controller is not enabled below $parent (echo +memory > $parent/cgroup.subtree_control from a shell outside it, or use systemd-run --scope -p MemoryMax=${limit})" >&2; exit 2; }
else  # cgroup v1
  parent=/sys/fs/cgroup/memory$(sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup)
  max=memory.limit_in_bytes peak=memory.max_usage_in_bytes
  [[ -d $parent ]] || { echo "in_memory_limit: no cgroup v1 memory controller at $parent" >&2; exit 2; }
fi
cg=$parent/tltrain_limit_$$
mkdir "$cg" || { echo "in_memory_limit: cannot make $cg (run as root)" >&2; exit 2; }
cleanup() { echo $$ > "$parent/cgroup.procs" 2>/dev/null || true; rmdir "$cg" 2>/dev/null || echo "in_memory_limit: $cg is left (processes still in it)" >&2; }
trap cleanup EXIT
trap 'exit 130' INT TERM
echo "$limit" > "$cg/$max"
echo $$ > "$cg/cgroup.procs"
set +e
"$@"; rc=$?
set -e
if [[ $max == memory.max ]]; then
  hits=$(sed -n 's/^max //p' "$cg/memory.events") killed=$(sed -n 's/^oom_kill //p' "$cg/memory.events")
else
  hits=$(cat "$cg/memory.failcnt") killed=$(sed -n 's/^oom_kill //p' "$cg/memory.oom_control")
fi
used=n/a
[[ -r $cg/$peak ]] && used="$(( $(cat "$cg/$peak") >> 20 )) MiB"
echo "memory limit $(( limit >> 20 )) MiB: peak $used, $hits times at the limit, ${killed:-0} killed" >&2
exit $rc
