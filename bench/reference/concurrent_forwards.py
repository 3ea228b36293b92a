#!/usr/bin/python3
"""Inference throughput of one frozen, optimize_for_inference'd backbone: one forward on 2 intra-op
threads vs 2 forwards side by side on 1 thread each (vs 1 forward on 1 thread), batch 8. The
measurement behind `tltrain serve --workers` (docs/benchmarks.md, Serving).

Usage: OMP_WAIT_POLICY=PASSIVE bench/reference/concurrent_forwards.py BACKBONE.pt
"""
import sys
import threading
import time

import torch


def main():
    m = torch.jit.load(sys.argv[1]).eval()
    f = torch.jit.optimize_for_inference(torch.jit.freeze(m))
    x = torch.randn(8, 3, 224, 224)

    def run(n):
        with torch.no_grad():
            for _ in range(n):
                f(x)

    torch.set_num_threads(2)
    run(3)  # warm-up
    t = time.time()
    run(15)
    one_by_two = 15 * 8 / (time.time() - t)
    torch.set_num_threads(1)  # threads started from here on get one intra-op thread each
    run(2)
    t = time.time()
    workers = [threading.Thread(target=run, args=(8,)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    two_by_one = 16 * 8 / (time.time() - t)
    t = time.time()
    run(8)
    one_by_one = 8 * 8 / (time.time() - t)
    print(f"1 forward x 2 threads: {one_by_two:.1f} img/s; 2 concurrent forwards x 1 thread: {two_by_one:.1f} img/s; "
          f"1 forward x 1 thread: {one_by_one:.1f} img/s")


if __name__ == "__main__":
    main()
