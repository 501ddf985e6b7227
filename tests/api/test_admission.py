"""Memory and uploads: a model upload is checked by its safetensors header while it
streams, so a file that cannot be imported is refused without the daemon holding it; a run
whose learner would not fit in memory is refused at POST /runs before anything of it is
allocated, and a job whose learner no longer fits fails with the same explanation."""
import json
import os
import shutil
import tempfile
import time

import pytest

from conftest import API, Daemon, assert_problem, make_image_dataset, wait_job


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


# ---- memory admission -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def colors(big):
    root = make_image_dataset(os.path.join(big.datasets, "colors"), per_class=6)
    r = big.post(API + "/datasets", {"name": "colors", "path": root, "format": "folders"})
    assert r.status == 201, r
    return r.json()


def test_run_too_big_for_memory_refused_at_once(big, colors):
    before = vm_hwm_kb(big.proc.pid)
    t0 = time.monotonic()
    r = big.post(API + "/runs", {"dataset": "colors", "arch": "resnet_small", "sz": 1024,
                                 "bs": 4096})
    took = time.monotonic() - t0
    p = assert_problem(r, 422, field="bs")
    assert "bs 4096 at sz 1024" in p["detail"], p
    assert "MemAvailable" in p["detail"] and "lower bs to" in p["detail"], p
    assert "sz to" in p["detail"] or "lower bs and sz" in p["detail"], p
    assert took < 10, "refusal took %.1f s" % took
    grown_mb = (vm_hwm_kb(big.proc.pid) - before) / 1024
    assert grown_mb < 100, "peak RSS grew by %.0f MB for a refused run" % grown_mb
    assert big.get(API + "/runs").json()["items"] == []


def test_normal_run_admitted(big, colors):
    r = big.post(API + "/runs", {"dataset": "colors", "arch": "resnet_small", "sz": 28,
                                 "bs": 4})
    assert r.status == 201, r
    assert big.request("DELETE", API + "/runs/%d" % r.json()["id"]).status == 204


def test_job_fails_when_memory_shrank_since_the_run_was_admitted(sgdrd_bin):
    root = tempfile.mkdtemp(prefix="sgdrd-admit-")
    try:
        d = Daemon(root)
        try:
            ds = make_image_dataset(os.path.join(d.datasets, "colors"), per_class=6)
            assert d.post(API + "/datasets", {"name": "colors", "path": ds,
                                              "format": "folders"}).status == 201
            r = d.post(API + "/runs", {"dataset": "colors", "arch": "resnet_small", "sz": 64,
                                       "bs": 8})
            assert r.status == 201, r
            run = r.json()["id"]
        finally:
            d.stop()
        d = Daemon(root, extra_args=["--memory-limit", "16M"])
        try:
            r = d.post(API + "/runs/%d/fit" % run, {"lrs": 0.01, "n_cycle": 1})
            assert r.status == 202, r
            j = wait_job(d, r.json()["id"])
            assert j["state"] == "failed", j
            assert "not enough memory" in j["error"] and "--memory-limit" in j["error"], j
            # The same limit refuses such a run at once.
            p = assert_problem(d.post(API + "/runs", {"dataset": "colors",
                                                      "arch": "resnet_small", "sz": 64,
                                                      "bs": 8}), 422)
            assert "--memory-limit" in p["detail"], p
        finally:
            d.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def needs_gib(detail, part=None):
    """From a 422's detail: the total it needs, or one part of it (GiB)."""
    import re
    if part is None:
        return float(re.search(r"needs about ([0-9.]+) GiB", detail).group(1))
    return float(re.search(part + r" ([0-9.]+)", detail).group(1))


def test_jobs_that_add_memory_are_admitted_too(sgdrd_bin):
    """A resize to a larger size and a fit's snapshots (one copy of the weights per cycle)
    add to what the run's learner holds: a job whose addition does not fit in what is left
    of --memory-limit fails at once, saying what it needs; a smaller one runs."""
    root = tempfile.mkdtemp(prefix="sgdrd-admit-jobs-")
    run = {"dataset": "colors", "arch": "resnet18", "sz": 32, "bs": 8}
    try:
        d = Daemon(root, extra_args=["--memory-limit", "1M"])
        try:
            ds = make_image_dataset(os.path.join(d.datasets, "colors"), per_class=6)
            assert d.post(API + "/datasets", {"name": "colors", "path": ds,
                                              "format": "folders"}).status == 201
            small = assert_problem(d.post(API + "/runs", run), 422)["detail"]
            large = assert_problem(d.post(API + "/runs", dict(run, sz=512)), 422)["detail"]
        finally:
            d.stop()
        total, weights = needs_gib(small), needs_gib(small, "weights")
        assert weights >= 0.03 and needs_gib(large) - total > 0.4, (small, large)
        left = 0.25   # GiB beyond the learner's estimate
        limit_mib = int((total + left) * 1024)
        d = Daemon(root, extra_args=["--memory-limit", "%dM" % limit_mib])
        try:
            r = d.post(API + "/runs", run)
            assert r.status == 201, r
            rid = r.json()["id"]
            r = d.post(API + "/runs/%d/resize" % rid, {"sz": 512})
            assert r.status == 202, r
            j = wait_job(d, r.json()["id"])
            assert j["state"] == "failed", j
            assert "not enough memory: resizing to sz 512" in j["error"], j
            assert "--memory-limit" in j["error"], j
            assert d.get(API + "/runs/%d" % rid).json()["state"].get("sz", 32) == 32
            cycles = int(2 * left / weights) + 2
            r = d.post(API + "/runs/%d/fit" % rid, {"lrs": 0.01, "n_cycle": cycles,
                                                     "snapshots": True})
            j = wait_job(d, r.json()["id"])
            assert j["state"] == "failed", j
            assert "snapshots of %d cycles" % cycles in j["error"], j
            r = d.post(API + "/runs/%d/fit" % rid, {"lrs": 0.01, "n_cycle": 2,
                                                     "snapshots": True})
            j = wait_job(d, r.json()["id"])
            assert j["state"] == "succeeded", j
            r = d.post(API + "/runs/%d/resize" % rid, {"sz": 40})
            assert wait_job(d, r.json()["id"])["state"] == "succeeded"
            assert d.get(API + "/runs/%d" % rid).json()["state"]["sz"] == 40
        finally:
            d.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
