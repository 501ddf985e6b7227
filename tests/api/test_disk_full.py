"""test_disk_full.py: the daemon on a data folder whose disk fills up (a small tmpfs). A
write the store cannot make is a 507 that changes nothing; a checkpoint that does not fit
fails its job naming the file and leaves no partial file; once there is room again
everything works. Needs root to mount the tmpfs (CI runs as root); skipped otherwise."""
import errno
import os
import subprocess
import time

import pytest

from conftest import API, Daemon, assert_problem, make_image_dataset, wait_job


@pytest.fixture
def small_disk(tmp_path, request):
    size = getattr(request, "param", "4m")
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    var = tmp_path / "var"
    var.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", str(var)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip("cannot mount a tmpfs here: " + r.stderr.strip())
    try:
        yield str(tmp_path)
    finally:
        subprocess.run(["umount", "-l", str(var)])


def fill(folder):
    """Fills the file system of folder to the last byte; returns the filler's path."""
    path = os.path.join(folder, "filler")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)
    return path


def listing(d):
    return sorted(x["id"] for x in d.get(API + "/runs").json()["items"])


def test_a_full_disk_is_507_and_nothing_is_lost(small_disk):
    d = Daemon(small_disk)
    try:
        make_image_dataset(os.path.join(d.datasets, "colors"))
        r = d.post(API + "/datasets", {"name": "colors", "format": "folders",
                                       "path": os.path.join(d.datasets, "colors")})
        assert r.status == 201, r
        body = {"dataset": "colors", "arch": "resnet_small", "sz": 28, "bs": 8}
        r = d.post(API + "/runs", body)
        assert r.status == 201, r
        run = r.json()["id"]

        filler = fill(d.data)
        p = assert_problem(d.post(API + "/runs", body), 507)
        assert "full" in p["detail"], p
        assert_problem(d.post(API + "/runs/%d/fit" % run, {"lrs": 0.01, "n_cycle": 1}), 507)
        assert listing(d) == [run]
        assert d.get(API + "/jobs").json()["items"] == []
        os.remove(filler)

        # Room for the store, not for resnet_small's 5.6 MB epoch checkpoint.
        r = d.post(API + "/runs/%d/fit" % run, {"lrs": 0.01, "n_cycle": 1})
        assert r.status == 202, r
        job = wait_job(d, r.json()["id"])
        assert job["state"] == "failed", job
        assert "No space left on device" in job["error"], job
        assert "last.ckpt.safetensors" in job["error"], job
        ckpt = os.path.join(d.data, "runs", str(run), "ckpt")
        assert [f for f in os.listdir(ckpt) if not f.startswith(".")] == [], os.listdir(ckpt)
        assert os.listdir(os.path.join(d.data, "tmp")) == []

        # The run carries on with what it has.
        r = d.post(API + "/runs/%d/tta" % run, {"n_aug": 1})
        assert r.status == 202, r
        assert wait_job(d, r.json()["id"])["state"] == "succeeded"
        assert d.post(API + "/runs", body).status == 201
    finally:
        d.stop()


@pytest.mark.parametrize("small_disk", ["16m"], indirect=True)
def test_a_job_ending_on_a_full_disk_is_recorded_once_there_is_room(small_disk):
    """The disk fills while a fit runs: its next checkpoint fails, and so would the row
    saying so. The job stays "running" until the disk has room, then reads "failed"."""
    d = Daemon(small_disk)
    filler = None
    try:
        make_image_dataset(os.path.join(d.datasets, "colors"))
        assert d.post(API + "/datasets", {"name": "colors", "format": "folders",
                                          "path": os.path.join(d.datasets, "colors")}).status == 201
        r = d.post(API + "/runs", {"dataset": "colors", "arch": "resnet_small", "sz": 28,
                                   "bs": 8})
        run = r.json()["id"]
        r = d.post(API + "/runs/%d/fit" % run, {"lrs": 0.01, "n_cycle": 64,
                                                "schedule": "constant"})
        job = r.json()["id"]
        deadline = time.monotonic() + 120
        while not d.get(API + "/runs/%d/epochs" % run).json()["items"]:
            assert time.monotonic() < deadline, "no epoch recorded"
            time.sleep(0.05)
        filler = fill(d.data)
        deadline = time.monotonic() + 120
        while "cannot record the end" not in d.log_text():
            assert time.monotonic() < deadline, d.log_text()
            time.sleep(0.1)
        j = d.get(API + "/jobs/%d" % job).json()
        assert j["state"] == "running", j
        assert d.get(API + "/health").status == 200
        os.remove(filler)
        filler = None
        j = wait_job(d, job, timeout=30)
        assert j["state"] == "failed", j
        assert "No space left on device" in j["error"], j
        r = d.post(API + "/runs/%d/tta" % run, {"n_aug": 1})
        assert wait_job(d, r.json()["id"])["state"] == "succeeded"
    finally:
        if filler:
            os.remove(filler)
        d.stop()
