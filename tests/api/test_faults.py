"""test_faults.py: what a crash cannot break. The daemon is killed with SIGKILL at 20 seeded
random moments of a fit, a dataset registration by path and a tar upload, and restarted on
the same data folder each time. After every kill: the SQLite file passes
`PRAGMA integrity_check` and `foreign_key_check`; after every restart: every job and
dataset the daemon acknowledged (202 / 201) is still there, no fit lost an epoch it had
reported, no half-written file or folder is left (temporary uploads, extraction folders,
checkpoint `.tmp` files, dataset folders without a row), and an interrupted fit resumes
and finishes. Also: an interrupted job resumes once (a second resume is a 409), and SIGHUP
and SIGINT stop the daemon as cleanly as SIGTERM.

SGDRD_FAULT_SEED picks another sequence of moments (the default is fixed so that a failure
can be replayed)."""
import functools
import io
import os
import random
import signal
import sqlite3
import tarfile
import threading
import time

import pytest

import conftest
from conftest import API, Daemon, make_image_dataset

SEED = int(os.environ.get("SGDRD_FAULT_SEED", "1809"))
KILLS = 20


# These waits poll every 0.1 s, twice as often as the shared default, as they always have.
wait_until = functools.partial(conftest.wait_until, poll=0.1)


def check_db(data_dir):
    """The store after a SIGKILL: what SQLite itself says of the file, opened the way the
    daemon opens it (WAL recovery included)."""
    db = sqlite3.connect(os.path.join(data_dir, "sgdrd.db"))
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        db.close()


def leftovers(data_dir):
    """Files and folders a crash may have left half-written."""
    found = []
    tmp = os.path.join(data_dir, "tmp")
    if os.path.isdir(tmp):
        found += [os.path.join(tmp, n) for n in os.listdir(tmp)]
    for top, _dirs, files in os.walk(os.path.join(data_dir, "runs")):
        found += [os.path.join(top, f) for f in files if f.endswith(".tmp")]
    return found


def tar_gz_of(folder):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        t.add(folder, arcname=os.path.basename(folder))
    return buf.getvalue()


class Background:
    """One request on its own thread, so that the daemon can be killed while it is being
    answered; .reply is the answer, or None when the kill came first."""

    def __init__(self, fn):
        self.reply = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn):
        try:
            self.reply = fn()
        except OSError:
            self.reply = None

    def join(self):
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()
        return self.reply


class World:
    """What the daemon has acknowledged so far, checked after every restart."""

    def __init__(self):
        self.jobs = set()
        self.datasets = set()
        self.epochs = {}   # run id -> epochs seen before a kill

    def check(self, d):
        for j in sorted(self.jobs):
            r = d.get(API + "/jobs/%d" % j)
            assert r.status == 200, ("acknowledged job lost", j, r)
        names = {x["name"] for x in d.get(API + "/datasets?limit=1000").json()["items"]}
        assert self.datasets <= names, ("acknowledged datasets lost", self.datasets - names)
        for run, n in self.epochs.items():
            got = d.get(API + "/runs/%d/epochs" % run).json()["items"]
            assert len(got) >= n, ("epochs lost", run, n, len(got))
        assert leftovers(d.data) == [], leftovers(d.data)
        # Every folder under datasets/ is a registered upload.
        up = os.path.join(d.data, "datasets")
        if os.path.isdir(up):
            orphans = set(os.listdir(up)) - names
            assert not orphans, ("dataset folders without a row", orphans)


def scenario_fit(d, w, rnd, step):
    name = "fit%d" % step
    path = make_image_dataset(os.path.join(d.datasets, name), per_class=16)
    r = d.post(API + "/datasets", {"name": name, "path": path, "format": "folders"})
    assert r.status == 201, r
    w.datasets.add(name)
    r = d.post(API + "/runs", {"dataset": name, "arch": "resnet_small", "sz": 28, "bs": 8,
                               "tfms": "none"})
    assert r.status == 201, r
    run = r.json()["id"]
    r = d.post(API + "/runs/%d/fit" % run, {"lrs": 0.01, "n_cycle": 1, "cycle_len": 30})
    assert r.status == 202, r
    w.jobs.add(r.json()["id"])
    time.sleep(rnd.uniform(0.2, 3.0))
    w.epochs[run] = len(d.get(API + "/runs/%d/epochs" % run).json()["items"])
    return run, r.json()["id"]


def scenario_register(d, w, rnd, step):
    name = "reg%d" % step
    path = make_image_dataset(os.path.join(d.datasets, name), per_class=60)
    bg = Background(lambda: d.post(API + "/datasets",
                                   {"name": name, "path": path, "format": "folders"}))
    time.sleep(rnd.uniform(0.0, 0.4))
    return bg, name


def scenario_upload(d, w, rnd, step, blob):
    name = "up%d" % step
    bg = Background(lambda: d.post(API + "/datasets?name=" + name, blob,
                                   ctype="application/gzip"))
    time.sleep(rnd.uniform(0.0, 0.4))
    return bg, name


def test_kill9_at_random_moments(root):
    rnd = random.Random(SEED)
    w = World()
    src = make_image_dataset(os.path.join(root, "upload-src", "imgs"), per_class=60)
    blob = tar_gz_of(src)
    last_fit = None
    for step in range(KILLS):
        d = Daemon(root)
        try:
            w.check(d)
            kind = ("fit", "register", "upload")[step % 3]
            if kind == "fit":
                run, job = scenario_fit(d, w, rnd, step)
                last_fit = (run, job)
                bg = None
            elif kind == "register":
                bg, name = scenario_register(d, w, rnd, step)
            else:
                bg, name = scenario_upload(d, w, rnd, step, blob)
        finally:
            d.kill()
        if bg is not None:
            rep = bg.join()
            if rep is not None and rep.status == 201:
                w.datasets.add(name)
        check_db(d.data)

    # Whatever the last kill interrupted, the last fit resumes and finishes.
    d = Daemon(root)
    try:
        w.check(d)
        run, job = last_fit
        state = d.get(API + "/jobs/%d" % job).json()["state"]
        assert state in ("interrupted", "succeeded"), state
        if state == "interrupted":
            r = d.post(API + "/jobs/%d/resume" % job)
            assert r.status == 202, r
            new = r.json()["id"]
            j = wait_until(lambda: (lambda s: s if s["state"] not in ("queued", "running")
                                    else None)(d.get(API + "/jobs/%d" % new).json()),
                           timeout=600, what="the resumed fit")
            assert j["state"] == "succeeded", j
        got = d.get(API + "/runs/%d/epochs" % run).json()["items"]
        assert [e["epoch"] for e in got] == list(range(len(got))), got
        assert len(got) == 30
    finally:
        d.stop()
    check_db(d.data)


def test_second_resume_is_a_conflict(root):
    d = Daemon(root)
    try:
        w = World()
        run, job = scenario_fit(d, w, random.Random(SEED), 0)
        wait_until(lambda: d.get(API + "/runs/%d/epochs" % run).json()["items"],
                   what="a first epoch")
    finally:
        d.kill()
    d = Daemon(root)
    try:
        assert d.get(API + "/jobs/%d" % job).json()["state"] == "interrupted"
        r = d.post(API + "/jobs/%d/resume" % job)
        assert r.status == 202, r
        first = r.json()["id"]
        r = d.post(API + "/jobs/%d/resume" % job)
        assert r.status == 409, r
        p = r.json()
        assert p["error_code"] == "RESOURCE_CONFLICT"
        assert str(first) in p["detail"], p
        d.post(API + "/jobs/%d/cancel" % first)
        wait_until(lambda: d.get(API + "/jobs/%d" % first).json()["state"]
                   not in ("queued", "running"), what="the cancel")
    finally:
        d.stop()


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGINT, signal.SIGTERM])
def test_signals_stop_cleanly_during_a_fit(root, sig):
    d = Daemon(root)
    try:
        w = World()
        run, job = scenario_fit(d, w, random.Random(SEED), 0)
        wait_until(lambda: d.get(API + "/runs/%d/epochs" % run).json()["items"],
                   what="a first epoch")
        d.exit_cleanly_on(sig, 10)
    finally:
        d.kill()
    d = Daemon(root)
    try:
        assert d.get(API + "/jobs/%d" % job).json()["state"] == "interrupted"
    finally:
        d.stop()


def test_a_failed_end_of_job_save_fails_the_job(root):
    """The job's work is done but its weights cannot be written (a folder has taken the
    weights file's name, so the rename into place fails): the job reads failed, naming the
    file, never succeeded."""
    d = Daemon(root)
    try:
        name = "save"
        path = make_image_dataset(os.path.join(d.datasets, name), per_class=8)
        assert d.post(API + "/datasets", {"name": name, "path": path,
                                          "format": "folders"}).status == 201
        r = d.post(API + "/runs", {"dataset": name, "arch": "resnet_small", "sz": 28,
                                   "bs": 8, "tfms": "none"})
        run = r.json()["id"]
        os.makedirs(os.path.join(d.data, "runs", str(run), "weights.safetensors"))
        r = d.post(API + "/runs/%d/unfreeze" % run, {})
        assert r.status == 202, r
        j = wait_until(lambda: (lambda s: s if s["state"] not in ("queued", "running")
                                else None)(d.get(API + "/jobs/%d" % r.json()["id"]).json()),
                       what="the unfreeze")
        assert j["state"] == "failed", j
        assert "weights.safetensors" in j["error"], j
    finally:
        d.stop()


def test_a_store_with_a_broken_foreign_key_is_refused_at_start(root):
    """foreign_key_check answers with rows, not an error: a job whose run is gone (written
    here behind the daemon's back, with foreign keys off) stops the start, naming it."""
    d = Daemon(root)
    d.stop()
    db = sqlite3.connect(os.path.join(d.data, "sgdrd.db"))
    try:
        db.execute("INSERT INTO jobs(run_id, kind, state, params, created_at) "
                   "VALUES (999, 'fit', 'succeeded', '{}', 0)")
        db.commit()
    finally:
        db.close()
    with pytest.raises(RuntimeError) as e:
        Daemon(root)
    assert "foreign_key_check" in str(e.value) and "jobs" in str(e.value), e.value
