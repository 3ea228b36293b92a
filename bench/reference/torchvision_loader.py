#!/usr/bin/python3
"""torchvision reference for `tltrain bench data`: the same transforms on the same folder, the
same worker count and batch size, timed the same way (steady state after a warm-up batch).

Usage: bench/reference/torchvision_loader.py ROOT --workers 2 --batch-size 32 --seconds 10 --size 224
"""
import argparse
import time

import torch
from torchvision import datasets, transforms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--size", type=int, default=224)
    a = ap.parse_args()
    torch.set_num_threads(1)  # the workers are the parallelism, as in tltrain
    tf = transforms.Compose([
        transforms.RandomResizedCrop(a.size),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    # ImageFolder skips the .gif itself (not in IMG_EXTENSIONS), as tltrain does.
    ds = datasets.ImageFolder(a.root, tf)
    # persistent_workers: do not charge torchvision a process start per epoch.
    dl = torch.utils.data.DataLoader(ds, batch_size=a.batch_size, shuffle=True, num_workers=a.workers,
                                     persistent_workers=a.workers > 0)
    images, t0, warm = 0, None, False
    while True:
        for x, _ in dl:
            if not warm:
                warm, t0 = True, time.perf_counter()
                continue
            images += x.shape[0]
            dt = time.perf_counter() - t0
            if dt >= a.seconds:
                print(f"torchvision: {images / dt:.1f} images/s ({images} images in {dt:.2f} s, "
                      f"{a.workers} workers, batch {a.batch_size}, {a.size}x{a.size}, {len(ds)} images)")
                return


if __name__ == "__main__":
    main()
