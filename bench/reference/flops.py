#!/usr/bin/python3
"""What this CPU can do, and what each backbone asks of it, for bench/roofline.sh.

Prints one JSON object:
  peaks: GFLOP/s of fp32 GEMM (1024^3 torch.mm), and of four dense 3x3, 1x1 (pointwise) or 3x3
         depthwise convolutions with BatchNorm and ReLU at MobileNet-like shapes (batch 8), frozen
         and optimized for inference as tltrain runs frozen blocks (oneDNN),
         and the copy bandwidth in GB/s (256 MiB), all on --threads intra-op threads;
  archs: per architecture at its native input size, forward GFLOP per image counted from its
         convolutions and linear layers (2 per multiply-add), the depthwise share of them, and
         the forward GFLOP of each block in order (export_backbone.py's blocks).
Attention's matmuls are not counted (no transformer among the default architectures).

Usage: bench/reference/flops.py --threads 2 mobilenet_v2 resnet50 efficientnet_b0
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
import export_backbone as eb  # noqa: E402


def rate(fn, flops, seconds=1.5):
    fn()
    fn()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return flops * n / (time.perf_counter() - t0) / 1e9


def frozen(make, n=4):
    """N layers from MAKE, each with BatchNorm and ReLU, as tltrain runs frozen blocks: scripted,
    frozen and optimized for inference (BatchNorm folded, oneDNN layouts kept between layers,
    which needs more than one layer to pay off)."""
    layers = []
    for _ in range(n):
        conv = make()
        layers += [conv, torch.nn.BatchNorm2d(conv.out_channels), torch.nn.ReLU()]
    return torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.script(torch.nn.Sequential(*layers).eval())))


def peaks():
    out = {}
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    out["gemm"] = rate(lambda: torch.mm(a, b), 2 * 1024 ** 3)
    with torch.no_grad():
        x = torch.randn(8, 64, 56, 56)
        f = frozen(lambda: torch.nn.Conv2d(64, 64, 3, padding=1, bias=False))
        out["conv3x3"] = rate(lambda: f(x), 4 * 2 * 8 * 64 * 56 * 56 * 64 * 9)
        x = torch.randn(8, 144, 56, 56)
        f1 = frozen(lambda: torch.nn.Conv2d(144, 144, 1, bias=False))
        out["conv1x1"] = rate(lambda: f1(x), 4 * 2 * 8 * 144 * 56 * 56 * 144)
        fd = frozen(lambda: torch.nn.Conv2d(144, 144, 3, padding=1, groups=144, bias=False))
        out["depthwise3x3"] = rate(lambda: fd(x), 4 * 2 * 8 * 144 * 56 * 56 * 9)
    src, dst = torch.randn(64 << 20), torch.empty(64 << 20)
    out["copy_gbs"] = rate(lambda: dst.copy_(src), 2 * src.numel() * 4)  # bytes read + written
    return {k: round(v, 1) for k, v in out.items()}


def count(arch):
    spec = eb.ARCHS[arch]
    size = spec.input_size
    model = getattr(torchvision.models, arch)(weights=None, **spec.family.build(size)).eval()
    backbone, names = spec.family.wrap(model)
    totals = {"all": 0.0, "depthwise": 0.0}
    current = [None]
    per_block = {n: 0.0 for n in names}

    def conv_hook(m, _inp, out):
        f = 2.0 * out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        totals["all"] += f
        if m.groups > 1 and m.groups == m.in_channels:
            totals["depthwise"] += f
        if current[0]:
            per_block[current[0]] += f

    def linear_hook(m, _inp, out):
        f = 2.0 * out[0].numel() * m.in_features
        totals["all"] += f
        if current[0]:
            per_block[current[0]] += f

    hooks = []
    for m in backbone.modules():
        if isinstance(m, torch.nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, torch.nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    modules = dict(backbone.named_modules())
    for n in names:
        hooks.append(modules[n].register_forward_pre_hook(lambda _m, _i, n=n: current.__setitem__(0, n)))
    with torch.no_grad():
        backbone(torch.randn(1, 3, size, size))
    for h in hooks:
        h.remove()
    return {"input": size, "gflop": totals["all"] / 1e9, "depthwise_share": totals["depthwise"] / max(totals["all"], 1.0),
            "blocks": [[n, per_block[n] / 1e9] for n in names]}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("archs", nargs="+")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(json.dumps({"threads": a.threads, "torch": torch.__version__, "peaks": peaks(),
                      "archs": {arch: count(arch) for arch in a.archs}}))


if __name__ == "__main__":
    main()
