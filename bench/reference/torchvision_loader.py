#!/usr/bin/python3
"""torchvision reference for `tltrain bench data`: the same transforms on the same folder, the
same worker count and batch size, timed the same way (steady state after a warm-up batch).

Usage: bench/reference/torchvision_loader.py ROOT --workers 2 --batch-size 32 --seconds 10 --size 224
                                           [--augment crop|keras]

--augment crop (default): RandomResizedCrop + horizontal flip, torchvision's ImageNet recipe.
--augment keras: the seeds' Keras ImageDataGenerator set as tltrain runs it with random_resized_crop
off (shorter side to 256, centre 224 crop, then rotation 40, shifts 0.2, shear 0.2 degrees, zoom
0.8-1.2, horizontal flip). torchvision 0.14's
RandomAffine fills with a constant, not Keras' "nearest"; the work per image is the same.
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
    ap.add_argument("--augment", choices=["crop", "keras"], default="crop")
    a = ap.parse_args()
    torch.set_num_threads(1)  # the workers are the parallelism, as in tltrain
    if a.augment == "crop":
        geometry = [transforms.RandomResizedCrop(a.size), transforms.RandomHorizontalFlip()]
    else:
        geometry = [transforms.Resize(a.size * 256 // 224), transforms.CenterCrop(a.size),
                    transforms.RandomAffine(40, translate=(0.2, 0.2), scale=(0.8, 1.2), shear=0.2),
                    transforms.RandomHorizontalFlip()]
    tf = transforms.Compose(geometry + [
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
                print(f"torchvision ({a.augment}): {images / dt:.1f} images/s ({images} images in {dt:.2f} s, "
                      f"{a.workers} workers, batch {a.batch_size}, {a.size}x{a.size}, {len(ds)} images)")
                return


if __name__ == "__main__":
    main()
