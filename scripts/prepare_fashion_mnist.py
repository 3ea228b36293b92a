#!/usr/bin/python3
"""Writes Fashion-MNIST (Debian package dataset-fashion-mnist) as class folders of PNGs.

    prepare_fashion_mnist.py --out DIR [--train-per-class 300] [--val-per-class 100]

DIR/train/<class>/*.png from the training set and DIR/val/<class>/*.png from the test set;
the first N images of each class in file order, so the result is the same on every machine.
"""
import argparse
import gzip
import os
import struct
import sys

SOURCE = "/usr/share/datasets/fashion-mnist"
CLASSES = ["tshirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot"]


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, count = struct.unpack(">II", data[:8])
    if magic == 2051:  # images: count, rows, cols, then bytes
        rows, cols = struct.unpack(">II", data[8:16])
        return [data[16 + i * rows * cols:16 + (i + 1) * rows * cols] for i in range(count)], (rows, cols)
    if magic == 2049:  # labels
        return list(data[8:8 + count]), None
    raise SystemExit(f"{path}: not an IDX file (magic {magic})")


def write_split(prefix, out_dir, per_class):
    from PIL import Image  # Debian's python3-pil, a dependency of python3-torchvision
    images, (rows, cols) = read_idx(os.path.join(SOURCE, f"{prefix}-images-idx3-ubyte.gz"))
    labels, _ = read_idx(os.path.join(SOURCE, f"{prefix}-labels-idx1-ubyte.gz"))
    counts = [0] * len(CLASSES)
    for i, (img, label) in enumerate(zip(images, labels)):
        if counts[label] >= per_class:
            continue
        d = os.path.join(out_dir, CLASSES[label])
        os.makedirs(d, exist_ok=True)
        Image.frombytes("L", (cols, rows), img).save(os.path.join(d, f"{i:05d}.png"))
        counts[label] += 1
        if min(counts) >= per_class:
            break
    return sum(counts)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--train-per-class", type=int, default=300)
    p.add_argument("--val-per-class", type=int, default=100)
    a = p.parse_args()
    if not os.path.isdir(SOURCE):
        sys.exit(f"prepare_fashion_mnist: {SOURCE} is missing: apt-get install dataset-fashion-mnist")
    n_train = write_split("train", os.path.join(a.out, "train"), a.train_per_class)
    n_val = write_split("t10k", os.path.join(a.out, "val"), a.val_per_class)
    print(f"prepare_fashion_mnist: {n_train} train / {n_val} val images in {a.out}")


if __name__ == "__main__":
    main()
