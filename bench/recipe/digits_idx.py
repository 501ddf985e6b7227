#!/usr/bin/python3
"""digits_idx.py: writes the handwritten digits that Debian's python3-sklearn ships
(1,797 images of 8x8 pixels in 17 gray levels, the UCI optical digits, each digit scaled
to fill its frame) as an IDX data set for bench_tta: every fifth image is validation
(t10k-*), the rest training (train-*), gray levels scaled to 0..255.

Usage: digits_idx.py OUT_DIR [DIGITS_CSV_GZ]
The CSV defaults to python3-sklearn's file; without the package installed, take it from
the package without installing: `apt-get download python3-sklearn && dpkg -x
python3-sklearn_*.deb sk` and pass sk/usr/lib/python3/dist-packages/sklearn/datasets/data/
digits.csv.gz. Only the standard library is used.
"""
import gzip
import os
import struct
import sys

DEFAULT = "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz"


def write_idx(prefix, rows):
    with open(prefix + "-images-idx3-ubyte", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, len(rows), 8, 8))
        for px, _ in rows:
            f.write(bytes(px))
    with open(prefix + "-labels-idx1-ubyte", "wb") as f:
        f.write(struct.pack(">II", 0x801, len(rows)))
        f.write(bytes(label for _, label in rows))


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    out, src = sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else DEFAULT
    rows = []
    with gzip.open(src, "rt") as f:
        for n, line in enumerate(f, 1):
            v = [int(float(x)) for x in line.split(",")]
            if len(v) != 65 or not all(0 <= x <= 16 for x in v[:64]) or not 0 <= v[64] <= 9:
                sys.exit(f"{src}: line {n}: expected 64 gray levels 0..16 and a digit")
            rows.append(([(x * 255 + 8) // 16 for x in v[:64]], v[64]))
    os.makedirs(out, exist_ok=True)
    write_idx(os.path.join(out, "train"), [r for i, r in enumerate(rows) if i % 5])
    write_idx(os.path.join(out, "t10k"), [r for i, r in enumerate(rows) if i % 5 == 0])
    print(f"{out}: {sum(1 for i in range(len(rows)) if i % 5)} training and "
          f"{(len(rows) + 4) // 5} validation images")


if __name__ == "__main__":
    main()
