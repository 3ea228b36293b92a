#!/usr/bin/python3
"""Runs a command and reports its peak memory as one JSON line on stderr:
  hwm_mib   the kernel's high-water mark of resident memory (getrusage ru_maxrss: VmHWM)
  anon_mib  the largest private (anonymous) resident memory seen, sampled every 50 ms: what
            the process itself holds, which the kernel cannot drop without swap
  file_mib  the largest file-backed resident memory seen at the same samples: libraries and
            memory-mapped files, pages the kernel can drop and read again
  seconds   the command's wall time
Usage: bench/peak_memory.py [--trace FILE] CMD [ARG ...]   (exits with the command's status)
  --trace FILE  also writes every sample to FILE: seconds since start, private MiB, file-backed MiB
"""
import json
import resource
import subprocess
import sys
import time


def sample(pid):
    anon = file = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    anon = int(line.split()[1])
                elif line.startswith("RssFile:") or line.startswith("RssShmem:"):
                    file += int(line.split()[1])
    except OSError:
        pass
    return anon, file


def main():
    args, trace = sys.argv[1:], None
    if args[:1] == ["--trace"]:
        trace, args = open(args[1], "w"), args[2:]
    t0 = time.time()
    p = subprocess.Popen(args)
    anon = file = 0
    while p.poll() is None:
        a, f = sample(p.pid)
        anon, file = max(anon, a), max(file, f)
        if trace:
            trace.write("%.2f %.1f %.1f\n" % (time.time() - t0, a / 1024, f / 1024))
        time.sleep(0.05)
    hwm = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"hwm_mib": round(hwm / 1024, 1), "anon_mib": round(anon / 1024, 1),
                      "file_mib": round(file / 1024, 1), "seconds": round(time.time() - t0, 1)}), file=sys.stderr)
    sys.exit(p.returncode)


if __name__ == "__main__":
    main()
