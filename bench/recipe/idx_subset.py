#!/usr/bin/python3
"""idx_subset.py: writes the first N_TRAIN training and first N_TEST test images of an IDX
data set (gzipped or not, as Debian's dataset-fashion-mnist ships it) as a smaller IDX data
set, for benchmarks that need a short fit on a loaded machine.

Usage: idx_subset.py SRC_DIR OUT_DIR N_TRAIN N_TEST
"""
import gzip
import os
import struct
import sys


def read(path):
    for p in (path, path + ".gz"):
        if os.path.exists(p):
            opener = gzip.open if p.endswith(".gz") else open
            with opener(p, "rb") as f:
                return f.read()
    sys.exit(f"{path}: not found (nor .gz)")


def head(src, out, prefix, n):
    im, lb = read(f"{src}/{prefix}-images-idx3-ubyte"), read(f"{src}/{prefix}-labels-idx1-ubyte")
    magic, count, h, w = struct.unpack(">IIII", im[:16])
    if magic != 0x803 or struct.unpack(">II", lb[:8]) != (0x801, count) or n > count:
        sys.exit(f"{src}/{prefix}: not an IDX image/label pair of at least {n} items")
    with open(f"{out}/{prefix}-images-idx3-ubyte", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, h, w) + im[16:16 + n * h * w])
    with open(f"{out}/{prefix}-labels-idx1-ubyte", "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + lb[8:8 + n])


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    src, out, n_train, n_test = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    os.makedirs(out, exist_ok=True)
    head(src, out, "train", n_train)
    head(src, out, "t10k", n_test)


if __name__ == "__main__":
    main()
