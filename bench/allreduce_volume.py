#!/usr/bin/python3
"""The gradient all-reduce each data-parallel step sends, per backbone, from the exported
backbones' metadata (parameters per block): for a fine-tune of the top 20% of blocks (the
configs' recipe) and of the whole network, with the GAP -> Dense 256 -> Dense 2 head on top.
A ring all-reduce of B bytes sends and receives 2(N-1)/N * B per rank per step (about 2B at any
N), so its time is bandwidth-bound: 2B / link bandwidth, plus 2(N-1) latencies. Prints markdown.

Usage: bench/allreduce_volume.py [EXPORTED_DIR] [ARCH ...]   (default build/tests/exported, a chosen set)
"""
import json
import math
import os
import sys

DEFAULT = ["mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0", "resnet50", "convnext_tiny", "densenet121",
           "efficientnet_v2_s", "vit_b_16", "swin_t"]
LINKS = [("10 GbE", 1.25e9), ("25 GbE", 3.125e9), ("100 Gb/s IB", 12.5e9), ("NVLink 4 (H100, ~450 GB/s)", 450e9)]


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "build/tests/exported"
    archs = sys.argv[2:] or [a for a in DEFAULT if os.path.exists(f"{d}/{a}.meta.json")]
    print("| backbone | trainable params, top 20% / all | fp32 gradients MB, top 20% / all | ring traffic per rank MB/step, top 20% / all | "
          + " | ".join(f"ms/step on {n}, top 20% / all" for n, _ in LINKS) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(LINKS))
    for a in archs:
        m = json.load(open(f"{d}/{a}.meta.json"))
        blocks = [b["params"] for b in m["blocks"]]
        k = math.ceil(0.2 * len(blocks) - 1e-9)
        c = m["feature_channels"]
        head = c * 256 + 256 + 256 * 2 + 2
        top, whole = sum(blocks[-k:]) + head, sum(blocks) + head
        t_top, t_all = 2 * top * 4, 2 * whole * 4  # 2(N-1)/N -> 2 for large N
        times = " | ".join(f"{1e3 * t_top / bw:.{2 if bw > 1e11 else 1}f} / {1e3 * t_all / bw:.{2 if bw > 1e11 else 1}f}" for _, bw in LINKS)
        print(f"| `{a}` | {top / 1e6:.2f}M / {whole / 1e6:.2f}M | {top * 4 / 1e6:.1f} / {whole * 4 / 1e6:.1f} | "
              f"{t_top / 1e6:.0f} / {t_all / 1e6:.0f} | {times} |")


if __name__ == "__main__":
    main()
