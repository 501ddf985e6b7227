"""test_disk_full.py: the daemon on a data folder whose disk fills up (a small tmpfs). A
write the store cannot make is a 507 that changes nothing; a checkpoint that does not fit
fails its job naming the file and leaves no partial file; once there is room again
everything works. Needs root to mount the tmpfs (CI runs as root); skipped otherwise."""
import errno
import os
import subprocess

import pytest

from conftest import API, Daemon, assert_problem, make_image_dataset, wait_job


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    var = tmp_path / "var"
    var.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(var)],
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
