#!/usr/bin/python3
"""Save the ImageNet classifier head of a torchvision mobilenet_v2 state dict as TorchScript.

Usage:
  /usr/bin/python3 tests/python/save_classifier.py --weights PATH.pth --out classifier.pt

The result maps N x 1280 globally average-pooled mobilenet_v2 features to N x 1000 ImageNet
logits (the original Linear `classifier.1`; the Dropout before it is a no-op at inference).
The C++ tests combine it with a backbone exported by scripts/export_backbone.py from the same
weights to check end-to-end that a bee image is classified as 'bee' (ImageNet index 309).
"""

import argparse
import sys

import torch
from torch import nn


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True, metavar="PATH.pth", help="mobilenet_v2 state dict")
    p.add_argument("--out", required=True, metavar="classifier.pt")
    args = p.parse_args()

    state = torch.load(args.weights, map_location="cpu")
    for key in ("state_dict", "model"):  # same wrappers export_backbone.py accepts
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    try:
        head = {"weight": state["classifier.1.weight"], "bias": state["classifier.1.bias"]}
    except (KeyError, TypeError):
        print(f"save_classifier: error: '{args.weights}' has no classifier.1.weight/bias; "
              "pass a torchvision mobilenet_v2 state dict.", file=sys.stderr)
        return 3
    if list(head["weight"].shape) != [1000, 1280]:
        print(f"save_classifier: error: classifier.1.weight in '{args.weights}' is "
              f"{list(head['weight'].shape)}, expected the ImageNet head [1000, 1280].", file=sys.stderr)
        return 3

    fc = nn.Linear(1280, 1000)
    fc.load_state_dict(head, strict=True)
    scripted = torch.jit.script(fc.eval())
    torch.jit.save(scripted, args.out)
    print(f"saved mobilenet_v2 ImageNet classifier (1280 -> 1000) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
