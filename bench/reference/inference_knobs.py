#!/usr/bin/python3
"""Two inference knobs measured in docs/benchmarks.md, with Debian's torch (same libgomp and
LibTorch build as tltrain): MobileNetV2 forward at batch 8, 224x224, 2 threads.

    inference_knobs.py BACKBONE.pt          saved graph vs frozen + optimize_for_inference
    OMP_WAIT_POLICY=PASSIVE inference_knobs.py BACKBONE.pt --saved-only
                                            the wait policy: run once with and once without the
                                            variable, alone and while another job uses the cores
"""
import sys
import time

import torch


def rate(module, x, reps=5):
    with torch.no_grad():
        module(x)
        t = time.time()
        for _ in range(reps):
            module(x)
    return reps * x.shape[0] / (time.time() - t)


def main():
    torch.set_num_threads(2)
    m = torch.jit.load(sys.argv[1]).eval()
    x = torch.randn(8, 3, 224, 224)
    print(f"saved graph: {rate(m, x):.1f} images/s")
    if "--saved-only" in sys.argv:
        return
    fast = torch.jit.optimize_for_inference(torch.jit.freeze(m))
    print(f"frozen + optimize_for_inference: {rate(fast, x):.1f} images/s")
    print(f"saved graph again: {rate(m, x):.1f} images/s")
    with torch.no_grad():
        print(f"max |difference|: {(m(x) - fast(x)).abs().max().item():.2e}")


if __name__ == "__main__":
    main()
