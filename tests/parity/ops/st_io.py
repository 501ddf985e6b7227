"""st_io.py: minimal safetensors read/write for the parity scripts (Debian has no Python
safetensors package). F32 and I64 only, as the engine."""
import json
import struct

import numpy as np

_DTYPES = {"F32": np.float32, "I64": np.int64}
_NAMES = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}


def write(path, tensors):
    """tensors: dict name -> numpy array (float32 or int64), written in dict order."""
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        if a.dtype not in _NAMES:
            raise ValueError(f"{name}: dtype {a.dtype} not supported")
        b = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _NAMES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read(path):
    """Returns dict name -> numpy array."""
    with open(path, "rb") as f:
        raw = f.read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen])
    data = raw[8 + hlen:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, en = e["data_offsets"]
        dt = np.dtype(_DTYPES[e["dtype"]]).newbyteorder("<")
        out[name] = np.frombuffer(data[b:en], dtype=dt).reshape(e["shape"]).copy()
    return out
