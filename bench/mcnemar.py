"""Paired comparison of two evaluations of the same images (tltrain eval.json files).

    /usr/bin/python3 bench/mcnemar.py A/eval.json B/eval.json

Prints each side's mistakes, the images only one side gets wrong, and the exact two-sided McNemar
p-value: the chance of a split at least this uneven if both classifiers were equally good. Two
accuracies on the same images are correlated, so this says more than their two standard errors.
"""
import json
import math
import sys


def mistakes(path):
    e = json.load(open(path))
    return e["samples"], {m["path"] for m in e["mistakes"]}


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    (n_a, a), (n_b, b) = mistakes(sys.argv[1]), mistakes(sys.argv[2])
    if n_a != n_b:
        sys.exit(f"mcnemar: {sys.argv[1]} has {n_a} images and {sys.argv[2]} {n_b}: not the same set")
    only_a, only_b = len(a - b), len(b - a)
    n, k = only_a + only_b, min(only_a, only_b)
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0
    print(f"{n_a} images: A wrong {len(a)}, B wrong {len(b)}; wrong only in A {only_a}, only in B {only_b}; "
          f"exact McNemar two-sided p = {p:.3f}")


if __name__ == "__main__":
    main()
