"""test_flow.py: the recipe through the API on a small generated image dataset: register,
create a run, LR sweep, fit one cycle, TTA, predict a PNG, with every curve read back and
live events over SSE that resume from Last-Event-ID."""
import json
import os

import pytest

from conftest import API, assert_problem, make_image_dataset, png_bytes, wait_job
from sse_client import SSE


@pytest.fixture(scope="module")
def flow(daemon):
    root = make_image_dataset(os.path.join(daemon.datasets, "flow"), per_class=24)
    r = daemon.post(API + "/datasets", {"name": "flow", "path": root, "format": "folders"})
    assert r.status == 201, r
    r = daemon.post(API + "/runs", {"dataset": "flow", "arch": "resnet_small", "sz": 28,
                                    "bs": 8, "tfms": "none", "seed": 1})
    assert r.status == 201, r
    run = r.json()["id"]
    s = SSE(daemon, run)
    assert s.status == 200
    yield daemon, run, s
    s.close()


def test_lr_find(flow):
    d, run, s = flow
    r = d.post(API + "/runs/%d/lr-find" % run, {"start_lr": 1e-5, "end_lr": 10, "num_it": 20})
    assert r.status == 202, r
    job = wait_job(d, r.json()["id"])
    assert job["state"] == "succeeded", job
    sweeps = d.get(API + "/runs/%d/lr-finds" % run).json()["items"]
    assert len(sweeps) == 1
    sw = d.get(API + "/lr-finds/%d" % sweeps[0]["id"]).json()
    assert 5 <= len(sw["points"]) <= 20
    lrs = [p["lr"] for p in sw["points"]]
    assert lrs == sorted(lrs) and lrs[0] >= 1e-5 * 0.999
    assert {"min_div10", "steep", "valley", "slide"} <= set(sw["suggestions"])
    s.wait_for(lambda ev, c: sum(e["event"] == "sweep_point" for e in ev) >= len(sw["points"]))


def test_fit_one_cycle(flow):
    d, run, s = flow
    # Read the page before the fit: pages are cached per store commit, and the same URL
    # afterwards must show the fit's points, not the cached empty page.
    before = d.get(API + "/runs/%d/metrics?key=train_loss" % run).json()
    assert before["points"] == []
    r = d.post(API + "/runs/%d/fit" % run, {"lrs": 0.01, "n_cycle": 1, "cycle_len": 1})
    assert r.status == 202, r
    assert r.headers["location"] == API + "/jobs/%d" % r.json()["id"]
    job = wait_job(d, r.json()["id"])
    assert job["state"] == "succeeded", job
    epochs = d.get(API + "/runs/%d/epochs" % run).json()["items"]
    assert len(epochs) == 1
    e = epochs[0]
    assert e["train_loss"] > 0 and e["valid_loss"] > 0 and 0 <= e["accuracy"] <= 1
    m = d.get(API + "/runs/%d/metrics?key=train_loss" % run).json()
    steps = [p["step"] for p in m["points"]]
    assert len(steps) == 6 and steps == sorted(steps)   # 48 images / bs 8
    assert e["step"] == steps[-1]   # the epoch's validation point sits on its last batch
    page = d.get(API + "/runs/%d/metrics?key=train_loss&limit=2&after_step=%d"
                 % (run, steps[1])).json()
    assert [p["step"] for p in page["points"]] == steps[2:4]
    mom = d.get(API + "/runs/%d/metrics?key=momentum" % run).json()["points"]
    assert [p["step"] for p in mom] == steps
    assert all(abs(p["value"] - 0.9) < 1e-6 for p in mom)    # SGDR keeps SGD's momentum
    s.wait_for(lambda ev, c: any(e["event"] == "epoch" for e in ev))
    r = d.get(API + "/runs/%d" % run).json()
    assert r["epochs"] == 1
    w = d.get(API + "/runs/%d/weights" % run)
    assert w.status == 200 and w.ctype == "application/octet-stream"
    assert int.from_bytes(w.body[:8], "little") < len(w.body)


def test_tta_and_predict(flow):
    d, run, s = flow
    r = d.post(API + "/runs/%d/tta" % run, {"n_aug": 2})
    assert r.status == 202, r
    job = wait_job(d, r.json()["id"])
    assert job["state"] == "succeeded", job
    assert job["result"] is not None
    for tta in (0, 1):
        r = d.post(API + "/runs/%d/predict?tta=%d" % (run, tta), png_bytes((200, 40, 40)),
                   ctype="image/png")
        assert r.status == 200, r
        p = r.json()
        assert p["classes"] == ["blue", "red"]
        assert abs(sum(p["probs"]) - 1) < 1e-3
        assert p["top"]["class"] in p["classes"]
    r = d.post(API + "/runs/%d/predict" % run, b"\x89PNG\r\n\x1a\n broken", ctype="image/png")
    assert_problem(r, 400)


def test_events_resume(flow):
    d, run, s = flow
    metric = [e for e in s.events if e["event"] == "metric"]
    assert len(metric) >= 6
    ids = [e["id"] for e in s.events]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    mid = ids[len(ids) // 2]
    s2 = SSE(d, run, last_event_id=mid)
    try:
        want = [i for i in ids if i > mid]
        s2.wait_for(lambda ev, c: len(ev) >= len(want))
        assert [e["id"] for e in s2.events][:len(want)] == want
    finally:
        s2.close()


def test_plain_head_recipe_within_a_budget(flow):
    """A run with the plain head (the usual start from scratch) through the recipe with a
    time budget too small for more than one epoch: the recipe still trains one, says how
    it planned, and TTA's result comes back."""
    d, _, _ = flow
    r = d.post(API + "/runs", {"dataset": "flow", "arch": "resnet_small", "sz": 28, "bs": 8,
                               "tfms": "none", "head": "plain", "seed": 2})
    assert r.status == 201, r
    run = r.json()
    assert run["config"]["head"] == "plain"
    r = d.post(API + "/runs/%d/recipe" % run["id"],
               {"max_epochs": 3, "n_aug": 1, "budget_minutes": 0.0001})
    assert r.status == 202, r
    job = wait_job(d, r.json()["id"])
    assert job["state"] == "succeeded", (job, d.log_text())
    assert 0 <= job["result"]["tta_accuracy"] <= 1
    epochs = d.get(API + "/runs/%d/epochs" % run["id"]).json()["items"]
    assert len(epochs) == 1
    p = d.post(API + "/runs/%d/predict" % run["id"], png_bytes((200, 40, 40)),
               ctype="image/png")
    assert p.status == 200 and p.json()["classes"] == ["blue", "red"]


def test_adamw_recipe_with_one_cycle(flow):
    """An AdamW run through the recipe with schedule 1cycle: one cycle over every epoch
    allowed, from lr/10 up and down again, with Adam's beta1 moving against the LR; its
    first epoch at 20 pixels (progressive resizing), and the run ends at its sz."""
    d, _, _ = flow
    r = d.post(API + "/runs", {"dataset": "flow", "arch": "resnet_small", "sz": 28, "bs": 8,
                               "tfms": "none", "head": "plain", "opt": "adamw", "seed": 4})
    assert r.status == 201, r
    run = r.json()["id"]
    s = SSE(d, run)
    try:
        r = d.post(API + "/runs/%d/recipe" % run, {"max_epochs": 2, "n_aug": 1,
                                                   "schedule": "1cycle"})
        assert r.status == 202, r
        job = wait_job(d, r.json()["id"])
        assert job["state"] == "succeeded", (job, d.log_text())
        grew = "28 pixels from here on instead of 16"
        s.wait_for(lambda ev, c: any(e["event"] == "note" and
                                     e["data"]["data"]["what"] == "resize" and
                                     grew in e["data"]["data"]["why"] for e in ev))
    finally:
        s.close()
    assert len(d.get(API + "/runs/%d/epochs" % run).json()["items"]) == 2
    lrs = [p["value"] for p in
           d.get(API + "/runs/%d/metrics?key=lr_2" % run).json()["points"]]
    assert len(lrs) == 12   # 2 epochs of 48 images / bs 8
    peak = max(lrs)
    assert abs(lrs[0] * 10 - peak) < 1e-6 * peak and lrs[-1] < lrs[0], lrs   # annealed
    mom = [p["value"] for p in d.get(API + "/runs/%d/metrics?key=momentum" % run).json()["points"]]
    assert max(mom) > 0.94 and min(mom) < 0.86, mom
    assert d.get(API + "/runs/%d" % run).json()["state"]["sz"] == 28
    assert_problem(d.post(API + "/runs/%d/recipe" % run, {"schedule": "cosine"}), 400,
                   field="schedule")


def test_fit_stops_at_its_time_limit(flow):
    """A fit whose time limit the first cycle already uses up stops at that cycle's end,
    keeps its weights and says why in a note."""
    d, _, _ = flow
    r = d.post(API + "/runs", {"dataset": "flow", "arch": "resnet_small", "sz": 28, "bs": 8,
                               "tfms": "none", "seed": 3})
    assert r.status == 201, r
    run = r.json()["id"]
    s = SSE(d, run)
    try:
        r = d.post(API + "/runs/%d/fit" % run,
                   {"lrs": 0.01, "n_cycle": 3, "cycle_len": 1, "cycle_mult": 2,
                    "time_limit_minutes": 0.0001})
        assert r.status == 202, r
        job = wait_job(d, r.json()["id"])
        assert job["state"] == "succeeded", (job, d.log_text())
        assert len(d.get(API + "/runs/%d/epochs" % run).json()["items"]) == 1
        s.wait_for(lambda ev, c: any(e["event"] == "note" and
                                     e["data"]["data"]["what"] == "time_limit" for e in ev))
    finally:
        s.close()


def fit_one_epoch(d, arch):
    """A run of arch at width 16 fitted for one epoch; its id and that epoch."""
    r = d.post(API + "/runs", {"dataset": "flow", "arch": arch, "width": 16, "sz": 28,
                               "bs": 8, "tfms": "none", "head": "plain", "seed": 2})
    assert r.status == 201, r
    run = r.json()
    assert run["arch"] == arch and run["config"]["width"] == 16
    r = d.post(API + "/runs/%d/fit" % run["id"], {"lrs": 0.01, "n_cycle": 1, "cycle_len": 1})
    assert r.status == 202, r
    job = wait_job(d, r.json()["id"])
    assert job["state"] == "succeeded", job
    return run["id"], d.get(API + "/runs/%d/epochs" % run["id"]).json()["items"][0]


def test_resnet_small_silu_trains_predicts_and_differs_from_relu(flow):
    """The SiLU variant trains and predicts; from the same seed (the same initial weights,
    the same names) and the same batches, its loss is not resnet_small's."""
    d, _, _ = flow
    run, silu = fit_one_epoch(d, "resnet_small_silu")
    _, relu = fit_one_epoch(d, "resnet_small")
    assert silu["train_loss"] > 0 and 0 <= silu["accuracy"] <= 1
    assert silu["train_loss"] != relu["train_loss"], (silu, relu)
    r = d.post(API + "/runs/%d/predict?tta=1" % run, png_bytes((40, 40, 200)),
               ctype="image/png")
    assert r.status == 200 and abs(sum(r.json()["probs"]) - 1) < 1e-3, r
    w = d.get(API + "/runs/%d/weights" % run)
    assert w.status == 200
    n = int.from_bytes(w.body[:8], "little")
    assert json.loads(w.body[8:8 + n])["layer3.1.conv2.weight"]["shape"] == [64, 64, 3, 3]
