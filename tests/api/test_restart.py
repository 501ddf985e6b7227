"""test_restart.py: what survives the daemon: a kill -9 with a fit running and a job queued
(the queued job still runs, the running one is `interrupted` and resumes from its last
epoch checkpoint, and the metrics' summaries still match their points), and SIGTERM during
a fit (exit 0 within 10 s, the last epoch kept)."""
import functools
import os
import signal
import sqlite3

import conftest
from conftest import API, Daemon, make_image_dataset

# The waits here span epochs of a fit, longer than the shared default allows.
wait_until = functools.partial(conftest.wait_until, timeout=240)


def job(d, jid):
    return d.get(API + "/jobs/%d" % jid).json()


def epochs(d, run):
    return d.get(API + "/runs/%d/epochs" % run).json()["items"]


def summaries_wrong(d):
    """Summary rows, at each of the five levels (level l: 64 * 4**l steps a bucket), that
    disagree with the metric points of their steps (count, first and last step, lowest and
    highest value), buckets with points but no summary, and summaries of no level."""
    db = sqlite3.connect(os.path.join(d.data, "sgdrd.db"), timeout=30)
    try:
        wrong = db.execute("SELECT count(*) FROM metric_summaries WHERE level NOT BETWEEN 0 "
                           "AND 4").fetchone()[0]
        for level in range(5):
            wrong += db.execute(
                "WITH m AS (SELECT run_id, key, step >> ?1 AS b, count(*) AS n, min(step) AS "
                "fs, max(step) AS ls, min(value) AS lo, max(value) AS hi FROM metrics "
                "GROUP BY 1, 2, 3), s AS (SELECT * FROM metric_summaries WHERE level = ?2) "
                "SELECT (SELECT count(*) FROM m LEFT JOIN s ON s.run_id = m.run_id AND "
                "s.key = m.key AND s.bucket = m.b WHERE s.n IS NOT m.n OR s.first_step IS NOT "
                "m.fs OR s.last_step IS NOT m.ls OR s.min_value IS NOT m.lo OR "
                "s.max_value IS NOT m.hi) + (SELECT count(*) FROM s) - (SELECT count(*) FROM m)",
                (6 + 2 * level, level)).fetchone()[0]
        return wrong
    finally:
        db.close()


def start_fit(d, name):
    path = make_image_dataset(os.path.join(d.datasets, name), per_class=24)
    r = d.post(API + "/datasets", {"name": name, "path": path, "format": "folders"})
    assert r.status == 201, r
    r = d.post(API + "/runs", {"dataset": name, "arch": "resnet_small", "sz": 28, "bs": 8,
                               "tfms": "none"})
    assert r.status == 201, r
    run = r.json()["id"]
    # Many short epochs, so the kill lands between two of them.
    r = d.post(API + "/runs/%d/fit" % run, {"lrs": 0.01, "n_cycle": 1, "cycle_len": 40})
    assert r.status == 202, r
    return run, r.json()["id"]


def test_kill9_with_running_and_queued_jobs(root):
    d = Daemon(root)
    try:
        run, fit = start_fit(d, "k9")
        r = d.post(API + "/runs/%d/tta" % run, {"n_aug": 1})
        assert r.status == 202
        queued = r.json()["id"]
        wait_until(lambda: len(epochs(d, run)) >= 1, what="a first epoch")
        assert job(d, fit)["state"] == "running"
        assert job(d, queued)["state"] == "queued"
    finally:
        d.kill()
    kept = None
    d = Daemon(root)
    try:
        assert job(d, fit)["state"] == "interrupted"
        kept = len(epochs(d, run))
        assert kept >= 1
        wait_until(lambda: job(d, queued)["state"] not in ("queued", "running"),
                   what="the queued job")
        assert job(d, queued)["state"] == "succeeded", job(d, queued)
        r = d.post(API + "/jobs/%d/resume" % fit)
        assert r.status == 202, r
        new = r.json()
        assert new["resumed_from"] == fit
        assert r.headers["location"] == API + "/jobs/%d" % new["id"]
        wait_until(lambda: len(epochs(d, run)) > kept, what="an epoch after the resume")
        c = d.post(API + "/jobs/%d/cancel" % new["id"])
        assert c.status in (202, 409)
        wait_until(lambda: job(d, new["id"])["state"] not in ("queued", "running"),
                   what="the cancel")
        # The resumed fit wrote again the steps after its checkpoint: the summaries
        # follow the points they replaced.
        assert summaries_wrong(d) == 0
    finally:
        d.stop()


def test_sigterm_during_fit_keeps_last_epoch(root):
    d = Daemon(root)
    try:
        run, fit = start_fit(d, "term")
        wait_until(lambda: len(epochs(d, run)) >= 1, what="a first epoch")
        before = len(epochs(d, run))
        d.exit_cleanly_on(signal.SIGTERM, 10)
    finally:
        d.kill()
    d = Daemon(root)
    try:
        assert job(d, fit)["state"] == "interrupted"
        assert len(epochs(d, run)) >= before
        snaps = d.get(API + "/runs/%d/snapshots" % run).json()["items"]
        assert any(s["kind"] == "checkpoint" for s in snaps), snaps
    finally:
        d.stop()
