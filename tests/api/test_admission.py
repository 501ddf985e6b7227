"""Memory and uploads: a model upload is checked by its safetensors header while it
streams, so a file that cannot be imported is refused without the daemon holding it."""
import json
import os
import shutil
import tempfile

import pytest

from conftest import API, Daemon, assert_problem, make_image_dataset


def vm_hwm_kb(pid):
    """The process's peak resident set size (VmHWM) in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/%d/status" % pid)


@pytest.fixture(scope="module")
def big(sgdrd_bin):
    root = tempfile.mkdtemp(prefix="sgdrd-admit-")
    try:
        d = Daemon(root, extra_args=["--max-upload", str(1024 * 1024 * 1024)])
        yield d
        d.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def stream_post(d, path, head, total, chunk=1 << 20):
    """POSTs head followed by zeros up to total bytes, without holding them here."""
    def body():
        yield head
        left = total - len(head)
        zeros = bytes(chunk)
        while left > 0:
            n = min(chunk, left)
            yield zeros[:n]
            left -= n
    c = d.connect(timeout=120)
    try:
        c.request("POST", path, body=body(),
                  headers={"Content-Type": "application/octet-stream",
                           "Content-Length": str(total)})
        resp = c.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        c.close()


SIZE = 400 * 1024 * 1024


def header_for(tensors):
    h = json.dumps(tensors).encode()
    return len(h).to_bytes(8, "little") + h


@pytest.mark.parametrize("what,head", [
    # names the arch does not have, tiling the whole body: only the arch check refuses it
    ("names", header_for({"fc.weight": {"dtype": "F32", "shape": [SIZE // 4 // 1024, 1024],
                                        "data_offsets": [0, SIZE // 4 * 4]}})),
    ("json", (20).to_bytes(8, "little") + b"{not json at all.. }"),
    ("length", (SIZE * 2).to_bytes(8, "little")),
])
def test_model_bad_header_refused_without_holding_the_body(big, what, head):
    if what == "names":
        # the data section is what follows the header
        n = SIZE - len(head)
        head = header_for({"fc.weight": {"dtype": "F32", "shape": [n // 4],
                                         "data_offsets": [0, n // 4 * 4]}})
        n = SIZE - len(head)
        head = header_for({"fc.weight": {"dtype": "F32", "shape": [n // 4],
                                         "data_offsets": [0, n // 4 * 4]}})
        total = len(head) + n // 4 * 4
    else:
        total = SIZE
    before = vm_hwm_kb(big.proc.pid)
    status, p = stream_post(big, API + "/models?name=m-%s&arch=resnet_small" % what, head,
                            total)
    assert status == 400, p
    assert "safetensors" in p["detail"] or "not a resnet_small body" in p["detail"], p
    grown_mb = (vm_hwm_kb(big.proc.pid) - before) / 1024
    assert grown_mb < 100, "peak RSS grew by %.0f MB for a refused upload" % grown_mb
    assert os.listdir(os.path.join(big.data, "tmp")) == []
    assert big.get(API + "/models").json()["items"] == []


def test_model_bad_query_refused_on_first_bytes(big):
    status, p = stream_post(big, API + "/models?name=x&arch=vgg", header_for({}), 64 << 20)
    assert status == 400 and p.get("field") == "arch", p
