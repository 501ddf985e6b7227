"""test_registration.py: a dataset's scan runs off the request threads. A registration
whose scan is long answers 202 at once with the row "scanning" (progress: files seen), the
API stays responsive meanwhile, and the row ends "ready" with the scan's info or "failed"
with the reason; a run waits for a ready dataset (409). SIGTERM during a scan exits 0
within seconds, and the next start scans the leftover row again. A short scan still
answers 201 with the ready row."""
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import API, Daemon, assert_problem, make_image_dataset, make_png

N_MISSING = 400000


def wait_until(pred, timeout=120, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError("%s not reached within %d s" % (what, timeout))


def big_csv_dataset(path, real=True):
    """A labels.csv naming N_MISSING files that do not exist (and one real image): a
    scan of many rows, each probed on disk."""
    os.makedirs(os.path.join(path, "train"), exist_ok=True)
    rows = ["file,label"]
    if real:
        make_png(os.path.join(path, "train", "real.png"), 8, 8, (200, 40, 40))
        rows.append("real.png,a")
    rows.extend("m%d.png,b" % i for i in range(N_MISSING))
    with open(os.path.join(path, "labels.csv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    return path


@pytest.fixture
def root(sgdrd_bin):
    r = tempfile.mkdtemp(prefix="sgdrd-api-reg-")
    yield r
    shutil.rmtree(r, ignore_errors=True)


def dataset(d, ds_id):
    r = d.get(API + "/datasets/%d" % ds_id)
    assert r.status == 200, r
    return r.json()


def register_big(d, name, real=True):
    path = big_csv_dataset(os.path.join(d.datasets, name), real)
    t0 = time.monotonic()
    r = d.post(API + "/datasets", {"name": name, "path": path, "format": "csv",
                                   "valid_pct": 0})
    took = time.monotonic() - t0
    assert r.status == 202, r
    assert took < 2.5, took
    row = r.json()
    assert row["state"] == "scanning", row
    assert r.headers["location"] == API + "/datasets/%d" % row["id"]
    return row["id"]


def test_small_dataset_is_ready_at_once(daemon):
    path = make_image_dataset(os.path.join(daemon.datasets, "reg_small"), per_class=3)
    r = daemon.post(API + "/datasets", {"name": "reg_small", "path": path,
                                        "format": "folders"})
    assert r.status == 201, r
    assert r.json()["state"] == "ready"
    assert r.json()["info"]["n_classes"] == 2


def test_long_scan_answers_202_and_ends_ready(root):
    d = Daemon(root)
    try:
        ds = register_big(d, "big")
        t0 = time.monotonic()
        assert d.get(API + "/health").status == 200
        assert time.monotonic() - t0 < 1.0
        if dataset(d, ds)["state"] == "scanning":
            r = d.post(API + "/runs", {"dataset": ds, "arch": "resnet_small", "sz": 28})
            assert_problem(r, 409, field="dataset")
        wait_until(lambda: dataset(d, ds)["progress"] > 0 or
                   dataset(d, ds)["state"] != "scanning", what="progress")
        row = wait_until(lambda: (lambda x: x if x["state"] != "scanning" else None)(
            dataset(d, ds)), what="end of scan")
        assert row["state"] == "ready", row
        assert row["error"] is None
        assert row["info"]["counts"]["train"] == 1
        assert row["info"]["n_unreadable"] == N_MISSING
    finally:
        d.stop()


def test_failed_scan_names_the_reason(root):
    d = Daemon(root)
    try:
        ds = register_big(d, "nothing", real=False)
        row = wait_until(lambda: (lambda x: x if x["state"] != "scanning" else None)(
            dataset(d, ds)), what="end of scan")
        assert row["state"] == "failed", row
        assert "cannot be used" in row["error"], row
        r = d.post(API + "/runs", {"dataset": ds, "arch": "resnet_small", "sz": 28})
        assert_problem(r, 409, field="dataset")
    finally:
        d.stop()


def test_sigterm_during_scan_and_restart(root):
    d = Daemon(root)
    try:
        ds = register_big(d, "cut")
        d.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        try:
            rc = d.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pytest.fail("sgdrd did not exit within 5 s of SIGTERM during a scan")
        assert rc == 0, d.log_text()
        assert time.monotonic() - t0 < 5
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
        d.log.close()
    d = Daemon(root)
    try:
        row = wait_until(lambda: (lambda x: x if x["state"] != "scanning" else None)(
            dataset(d, ds)), what="end of the scan again")
        assert row["state"] == "ready", row
        assert row["info"]["n_unreadable"] == N_MISSING
    finally:
        d.stop()
