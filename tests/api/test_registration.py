"""test_registration.py: a dataset's scan runs off the request threads. A registration
whose scan is long answers 202 at once with the row "scanning" (progress: files seen), the
API stays responsive meanwhile, and the row ends "ready" with the scan's info or "failed"
with the reason; a run waits for a ready dataset (409). SIGTERM during a scan exits 0
within seconds, and the next start scans the leftover row again. A short scan still
answers 201 with the ready row. An uploaded archive goes the same way: its extraction runs
off the request threads too, an entry refused late ends the row "failed" naming it, and
SIGTERM during an extraction exits within seconds."""
import functools
import io
import os
import signal
import tarfile
import time

import pytest

from conftest import API, Daemon, assert_problem, make_image_dataset, make_png, wait_until

N_MISSING = 400000


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
        assert d.exit_cleanly_on(signal.SIGTERM, 5, "during a scan") < 5
    finally:
        d.kill()
    d = Daemon(root)
    try:
        row = wait_until(lambda: (lambda x: x if x["state"] != "scanning" else None)(
            dataset(d, ds)), what="end of the scan again")
        assert row["state"] == "ready", row
        assert row["info"]["n_unreadable"] == N_MISSING
    finally:
        d.stop()


# ---- uploads: the extraction is the registrar's too ---------------------------------------

# Enough entries that the extraction outlasts the registration's short wait on the
# machines the suite runs on; a faster one answers 201 (or the 400) within the wait.
N_ENTRIES = 40000


@functools.lru_cache(maxsize=None)
def slow_archive(bad_last=False):
    """A gzip tar whose extraction takes a while: a small dataset of real images, then
    N_ENTRIES empty files beside it (outside train/ and valid/, which the scan reads), and (bad_last) a link after all of them, refused only
    when the extraction reaches it."""
    from conftest import png_bytes
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as t:
        def add(name, data=b"", **kw):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            for k, v in kw.items():
                setattr(ti, k, v)
            t.addfile(ti, io.BytesIO(data))
        for split, n in (("train", 3), ("valid", 1)):
            for cls, color in (("red", (200, 40, 40)), ("blue", (40, 40, 200))):
                for i in range(n):
                    add("%s/%s/%d.png" % (split, cls, i), png_bytes(color))
        for i in range(N_ENTRIES):
            add("extra/%d/f%d" % (i // 1000, i))
        if bad_last:
            add("train/red/late-link.png", type=tarfile.SYMTYPE, linkname="/etc/passwd")
    return buf.getvalue()


def upload(d, name, blob):
    t0 = time.monotonic()
    r = d.post(API + "/datasets?name=" + name, blob, ctype="application/gzip")
    return r, time.monotonic() - t0


def ended(d, ds):
    return wait_until(lambda: (lambda x: x if x["state"] != "scanning" else None)(
        dataset(d, ds)), what="end of the registration")


def test_long_extraction_answers_202_and_ends_ready(root):
    d = Daemon(root)
    try:
        r, took = upload(d, "bigup", slow_archive())
        assert r.status in (201, 202), r
        assert took < 2.5, took
        row = r.json()
        assert r.headers["location"] == API + "/datasets/%d" % row["id"]
        if r.status == 202:
            assert row["state"] == "scanning", row
            t0 = time.monotonic()
            assert d.get(API + "/health").status == 200
            assert time.monotonic() - t0 < 1.0
        row = ended(d, row["id"])
        assert row["state"] == "ready", row
        assert row["info"]["counts"]["train"] == 6
        assert os.listdir(os.path.join(d.data, "tmp")) == []
        assert os.path.isfile(os.path.join(d.data, "datasets", "bigup", "train", "red",
                                           "0.png"))
    finally:
        d.stop()


def test_entry_refused_late_fails_the_row_naming_it(root):
    d = Daemon(root)
    try:
        r, took = upload(d, "lateup", slow_archive(bad_last=True))
        assert took < 2.5, took
        if r.status == 400:
            error = assert_problem(r, 400)["detail"]
        else:
            assert r.status == 202, r
            row = ended(d, r.json()["id"])
            assert row["state"] == "failed", row
            error = row["error"]
            r = d.post(API + "/runs", {"dataset": row["id"], "arch": "resnet_small",
                                       "sz": 28})
            assert_problem(r, 409, field="dataset")
            # The failed row is deleted like any other, and the name can be used again.
            assert d.request("DELETE", API + "/datasets/%d" % row["id"]).status == 204
        assert "the archive was refused" in error and "link" in error, error
        assert "train/red/late-link.png" in error, error
        assert os.listdir(os.path.join(d.data, "tmp")) == []
        assert not os.path.exists(os.path.join(d.data, "datasets", "lateup"))
        from test_http import tar_bytes, dataset_members
        r = d.post(API + "/datasets?name=lateup", tar_bytes(dataset_members()),
                   ctype="application/x-tar")
        assert r.status == 201, r
    finally:
        d.stop()


def test_sigterm_during_extraction(root):
    d = Daemon(root)
    try:
        r, _ = upload(d, "cutup", slow_archive())
        if r.status == 201:
            pytest.skip("the extraction ended within the registration's wait")
        assert r.status == 202, r
        ds = r.json()["id"]
        assert d.exit_cleanly_on(signal.SIGTERM, 5, "during an extraction") < 5
    finally:
        d.kill()
    d = Daemon(root)
    try:
        row = ended(d, ds)
        assert row["state"] in ("failed", "ready"), row
        if row["state"] == "failed":
            assert "upload it again" in row["error"], row
            assert not os.path.exists(os.path.join(d.data, "datasets", "cutup"))
        assert os.listdir(os.path.join(d.data, "tmp")) == []
    finally:
        d.stop()


def test_upload_deleted_during_extraction_leaves_the_new_one_alone(root):
    """A dataset deleted while its archive is extracted, and its name taken again by a
    new upload: the old extraction, when it ends, neither moves its files into the new
    dataset's folder nor removes that folder."""
    d = Daemon(root)
    try:
        r, _ = upload(d, "again", slow_archive())
        if r.status != 202:
            pytest.skip("the extraction ended within the registration's wait")
        old = r.json()["id"]
        assert d.request("DELETE", API + "/datasets/%d" % old).status == 204
        from test_http import tar_bytes, dataset_members
        r = d.post(API + "/datasets?name=again", tar_bytes(dataset_members()),
                   ctype="application/x-tar")
        assert r.status in (201, 202), r   # queued behind the old extraction
        new = r.json()["id"]
        assert ended(d, new)["state"] == "ready"
        assert os.listdir(os.path.join(d.data, "tmp")) == []
        folder = os.path.join(d.data, "datasets", "again")
        assert sorted(os.listdir(folder)) == ["train", "valid"], os.listdir(folder)
        assert d.get(API + "/datasets/%d" % old).status == 404
    finally:
        d.stop()
