#!/usr/bin/python3
"""make_seeds.py: writes the seed corpora of the fuzz harnesses into corpus/<harness>/.

Run from anywhere with Debian's python3 (PIL comes with python3-torchvision); the output
is deterministic and committed, so the build never needs this script.
"""
import gzip
import io
import json
import os
import struct
import tarfile

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
IDX_SEP = b"\n--idx--\n"


def put(harness, name, data):
    folder = os.path.join(HERE, "corpus", harness)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def spec_seeds():
    bodies = {
        "run.json": {"dataset": "fmnist", "arch": "resnet_small", "sz": 28, "bs": 64,
                     "tfms": "side_on", "max_zoom": 1.1, "precompute": False, "ps": [0.25, 0.5],
                     "xtra_fc": [512], "multi_label": False, "seed": 42},
        "run_id.json": {"dataset": 3, "arch": "resnet18", "ps": 0.5, "xtra_fc": []},
        "fit.json": {"lrs": [1e-4, 1e-3, 1e-2], "early_stop": {"patience": 3, "wd": 1e-4}},
        "required.json": {"dataset": "d", "arch": "resnet34", "lrs": 0.01,
                          "early_stop": {"patience": 1}},
        "dataset.json": {"name": "pets", "path": "/data/pets"},
        "empty.json": {},
    }
    for name, body in bodies.items():
        put("spec", name, json.dumps(body))
    put("spec", "big_int.json", '{"seed": 123456789012345678901234567890, "dataset": 1e300}')
    put("spec", "edges.json", '{"seed": 9007199254740991, "sz": 8.0, "bs": 4096, '
        '"dataset": 9007199254740991.0, "name": "a\\u00e9"}')
    put("spec", "nul.json", '{"name": "a\\u0000b"}')
    put("spec", "not_object.json", "[1, 2, 3]")


def st_file(tensors, metadata=None, pad_header=True):
    header, blob = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    h = json.dumps(header).encode()
    if pad_header:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + blob


def safetensors_seeds():
    f32 = struct.pack("<6f", *range(6))
    i64 = struct.pack("<2q", 7, -1)
    put("safetensors", "one.safetensors", st_file([("w", "F32", [2, 3], f32)]))
    put("safetensors", "two.safetensors",
        st_file([("a.weight", "F32", [3, 2], f32), ("a.num_batches_tracked", "I64", [2], i64)],
                metadata={"format": "pt"}))
    put("safetensors", "scalar_empty.safetensors",
        st_file([("s", "F32", [], struct.pack("<f", 1.5)), ("e", "F32", [0, 4], b"")]))
    put("safetensors", "unpadded.safetensors",
        st_file([("x", "I64", [1], struct.pack("<q", 5))], pad_header=False))
    put("safetensors", "none.safetensors", st_file([]))


def image_seeds():
    rgb = Image.new("RGB", (8, 6))
    for y in range(6):
        for x in range(8):
            rgb.putpixel((x, y), (x * 30, y * 40, (x * y * 7) % 256))
    gray = rgb.convert("L")

    def save(name, im, **kw):
        buf = io.BytesIO()
        im.save(buf, **kw)
        put("image", name, buf.getvalue())

    save("rgb.png", rgb, format="PNG")
    save("gray.png", gray, format="PNG")
    save("palette.png", rgb.convert("P"), format="PNG")
    save("rgba.png", rgb.convert("RGBA"), format="PNG")
    save("gray_alpha.png", rgb.convert("LA"), format="PNG")
    save("gray16.png", gray.convert("I;16"), format="PNG")
    save("interlaced.png", rgb, format="PNG", interlace=1)
    save("rgb.jpg", rgb, format="JPEG", quality=90)
    save("gray.jpg", gray, format="JPEG", quality=90)
    save("progressive.jpg", rgb.resize((40, 24)), format="JPEG", quality=80, progressive=True)
    save("subsampled.jpg", rgb.resize((33, 17)), format="JPEG", quality=75, subsampling=2)
    save("cmyk.jpg", rgb.convert("CMYK"), format="JPEG")


def idx_file(dims, data):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + data


def idx_seeds():
    n, r, c = 3, 4, 5
    images = idx_file([n, r, c], bytes((i * 13) % 256 for i in range(n * r * c)))
    labels = idx_file([n], bytes([0, 2, 1]))
    valid = idx_file([2, r, c], bytes(range(2 * r * c)))
    vlabels = idx_file([2], bytes([1, 9]))
    classes = b"zero\n  one  \n\ntwo\n"
    put("idx", "train_only", b"\x00" + IDX_SEP.join([images, labels]))
    put("idx", "with_valid", b"\x00" + IDX_SEP.join([images, labels, valid, vlabels, classes]))
    gz = gzip.compress(images, mtime=0)
    put("idx", "gz_test_dot", b"\x07" + IDX_SEP.join([gz, labels, valid, vlabels]))
    put("idx", "fashion", b"\x08" + IDX_SEP.join([images, idx_file([n], bytes([9, 0, 3]))]))
    put("idx", "mismatch", b"\x00" + IDX_SEP.join([images, idx_file([2], bytes([0, 1]))]))


def csv_seeds():
    put("csv", "single.csv", "id,label\na.png,cat\nb,dog\nc.jpg,cat\nsub/e.png,dog\n")
    put("csv", "multi.csv",
        "image_name,tags\na,haze primary\nb,clear\nc,\n D.JPG , \"primary water\"\n")
    put("csv", "bad_rows.csv",
        "file,label\nt.png,x\nout.png,y\nloop,z\n../../secret.png,w\nin.png,x\n"
        "missing.png,q\n..,r\nsub,s\n\n")
    put("csv", "header_only.csv", "file,label\n")
    put("csv", "no_comma.csv", "file,label\na.png\n")


def tar_bytes(entries, fmt=tarfile.GNU_FORMAT, gz=False):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name, kind, data in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 0
            ti.mode = 0o644
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                tf.addfile(ti)
            elif kind == "file":
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            else:
                ti.type = kind
                ti.linkname = data
                tf.addfile(ti)
    # Without the zeros tarfile pads to a 10 KiB record: two end blocks are enough.
    raw = buf.getvalue().rstrip(b"\0")
    raw += b"\0" * (-len(raw) % 512 + 1024)
    return gzip.compress(raw, mtime=0) if gz else raw


def tar_seeds():
    plain = [("train", "dir", None), ("train/cat", "dir", None),
             ("train/cat/a.png", "file", b"\x89PNG fake"), ("./train/dog/b.jpg", "file", b"j"),
             ("labels.csv", "file", b"id,label\n")]
    put("tar", "plain.tar", tar_bytes(plain))
    put("tar", "plain.tar.gz", tar_bytes(plain, gz=True))
    put("tar", "pax_long.tar", tar_bytes([("d/" + "n" * 150 + ".txt", "file", b"x" * 10)],
                                         fmt=tarfile.PAX_FORMAT))
    put("tar", "symlink.tar", tar_bytes([("a", "file", b"1"), ("l", tarfile.SYMTYPE, "/etc")]))
    put("tar", "hardlink.tar", tar_bytes([("a", "file", b"1"), ("h", tarfile.LNKTYPE, "a")]))
    put("tar", "dotdot.tar", tar_bytes([("x/../../evil", "file", b"1")]))
    put("tar", "duplicate.tar", tar_bytes([("a", "file", b"1"), ("a", "file", b"2")]))
    put("tar", "fifo.tar", tar_bytes([("f", tarfile.FIFOTYPE, "")]))


def main():
    spec_seeds()
    safetensors_seeds()
    image_seeds()
    idx_seeds()
    csv_seeds()
    tar_seeds()


if __name__ == "__main__":
    main()
