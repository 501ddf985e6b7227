"""test_http.py: the REST contract (api/openapi.json) against the real daemon: success paths
that need no training, every documented error as problem+json with nothing queued or
written, the OpenAPI document against the router, static files, uploads, auth."""
import io
import json
import math
import os
import re
import shutil
import socket
import tarfile
import tempfile
import time

import pytest

from conftest import (API, SRC, Daemon, assert_problem, make_image_dataset, make_png,
                      png_bytes, wait_job)


# ---- helpers ------------------------------------------------------------------------------

def counts(d):
    """What the daemon holds: lists of datasets, runs, jobs, models, and the files under
    its data dir (tmp/ must stay empty between requests)."""
    out = {}
    for what in ("datasets", "runs", "jobs", "models"):
        r = d.get(API + "/" + what + "?limit=1000")
        assert r.status == 200, r
        out[what] = sorted(x["id"] for x in r.json()["items"])
    tmp = os.path.join(d.data, "tmp")
    out["tmp"] = sorted(os.listdir(tmp)) if os.path.isdir(tmp) else []
    ds = os.path.join(d.data, "datasets")
    out["dataset_dirs"] = sorted(os.listdir(ds)) if os.path.isdir(ds) else []
    return out


@pytest.fixture(scope="module")
def dataset(daemon):
    """A registered two-class folders dataset."""
    root = make_image_dataset(os.path.join(daemon.datasets, "colors"), per_class=6)
    r = daemon.post(API + "/datasets", {"name": "colors", "path": root, "format": "folders"})
    assert r.status == 201, r
    return r.json()


@pytest.fixture(scope="module")
def run(daemon, dataset):
    r = daemon.post(API + "/runs", {"dataset": "colors", "arch": "resnet_small", "sz": 28,
                                    "bs": 4})
    assert r.status == 201, r
    return r.json()


# ---- success paths ------------------------------------------------------------------------

def test_health(daemon):
    r = daemon.get(API + "/health")
    assert r.status == 200 and r.ctype.startswith("application/json")
    h = r.json()
    assert h["version"]
    assert h["uptime_s"] >= 0
    assert isinstance(h["blas"]["core"], str) and h["blas"]["core"]
    assert h["blas"]["threads"] >= 1
    assert h["queue_length"] >= 0
    assert isinstance(h["bf16"]["supported"], bool)
    assert isinstance(h["bf16"]["onednn_isa"], str) and h["bf16"]["onednn_isa"]
    # The kernels a bf16 run would use here: measured once per process, or null where
    # bf16 is refused.
    want = ("onednn", "fp32") if h["bf16"]["supported"] else (None,)
    assert h["bf16"]["kernels"] in want, h


def test_dataset_register_get_list(daemon, dataset):
    assert dataset["name"] == "colors"
    info = dataset["info"]
    assert info["classes"] == ["blue", "red"]
    assert info["counts"]["train"] == 12 and info["counts"]["valid"] == 4
    assert info["image_size"]["max"] == [32, 32]
    r = daemon.get(API + "/datasets/%d" % dataset["id"])
    assert r.status == 200 and r.json()["info"]["classes"] == ["blue", "red"]
    r = daemon.get(API + "/datasets")
    assert dataset["id"] in [x["id"] for x in r.json()["items"]]


def test_dataset_location_header(daemon):
    root = make_image_dataset(os.path.join(daemon.datasets, "loc"), per_class=3)
    r = daemon.post(API + "/datasets", {"name": "loc", "path": root, "format": "folders",
                                        "valid_pct": 0.25, "seed": 3})
    assert r.status == 201, r
    assert r.headers["location"] == API + "/datasets/%d" % r.json()["id"]
    assert daemon.get(r.headers["location"]).status == 200
    r2 = daemon.request("DELETE", r.headers["location"])
    assert r2.status == 204
    assert_problem(daemon.get(r.headers["location"]), 404)


def test_run_create_get_list_paged(daemon, dataset, run):
    assert run["arch"] == "resnet_small"
    assert run["config"]["sz"] == 28 and run["config"]["bs"] == 4
    assert run["config"]["tfms"] == "side_on" and run["config"]["head"] == "fastai"
    assert run["config"]["opt"] == "sgd"
    assert run["config"]["label_smoothing"] == 0 and run["config"]["pad"] == 0
    assert run["config"]["width"] == 32
    r = daemon.post(API + "/runs", {"dataset": dataset["id"], "arch": "resnet_small",
                                    "tfms": "flip"})
    assert r.status == 201 and r.json()["config"]["tfms"] == "flip", r
    assert daemon.request("DELETE", API + "/runs/%d" % r.json()["id"]).status == 204
    r = daemon.get(API + "/runs/%d" % run["id"])
    assert r.status == 200 and r.json()["id"] == run["id"]
    ids = {run["id"]}
    for _ in range(2):
        r = daemon.post(API + "/runs", {"dataset": dataset["id"], "arch": "resnet_small"})
        assert r.status == 201, r
        assert r.headers["location"] == API + "/runs/%d" % r.json()["id"]
        ids.add(r.json()["id"])
    seen, token = [], None
    while True:
        q = "?limit=1" + ("&page_token=" + token if token else "")
        page = daemon.get(API + "/runs" + q).json()
        assert len(page["items"]) <= 1
        seen += [x["id"] for x in page["items"]]
        token = page.get("next_page_token")
        if not token:
            break
    assert ids <= set(seen) and len(seen) == len(set(seen))
    for i in ids - {run["id"]}:
        assert daemon.request("DELETE", API + "/runs/%d" % i).status == 204
    assert_problem(daemon.get(API + "/runs?page_token=garbage!"), 400, field="page_token")


def test_label_smoothing_run_trains_on_smoothed_targets(daemon, dataset):
    """A run's label_smoothing reaches the loss it trains on: no batch's loss goes below
    the entropy of the smoothed target, while the same run without it does."""
    n = dataset["info"]["n_classes"]
    eps = 0.5
    on, off = 1 - eps + eps / n, eps / n
    floor = -on * math.log(on) - (n - 1) * off * math.log(off)
    lowest = {}
    for ls in (0.0, eps):
        r = daemon.post(API + "/runs", {"dataset": dataset["id"], "arch": "resnet_small",
                                        "sz": 28, "bs": 8, "head": "plain", "opt": "adamw",
                                        "tfms": "none", "label_smoothing": ls})
        assert r.status == 201, r
        run = r.json()
        assert run["config"]["label_smoothing"] == ls
        r = daemon.post(API + "/runs/%d/fit" % run["id"],
                        {"lrs": 1e-2, "n_cycle": 1, "cycle_len": 6, "schedule": "1cycle",
                         "wd": 0.01})
        assert wait_job(daemon, r.json()["id"])["state"] == "succeeded"
        pts = daemon.get(API + "/runs/%d/metrics?key=train_loss&limit=1000" % run["id"]).json()
        lowest[ls] = min(p["value"] for p in pts["points"])
        assert daemon.request("DELETE", API + "/runs/%d" % run["id"]).status == 204
    assert lowest[eps] >= floor - 1e-4, (lowest, floor)
    assert lowest[0.0] < floor, (lowest, floor)


def test_precision_run_trains_in_the_precision_health_allows(daemon, dataset):
    """precision reaches the run's config as fp32 or bf16 (auto resolved as health says the
    CPU allows); a bf16 run trains where the CPU has bf16, and is refused naming the field
    where it does not."""
    health = daemon.get(API + "/health").json()["bf16"]
    bf16 = health["supported"]
    r = daemon.post(API + "/runs", {"dataset": dataset["id"], "arch": "resnet_small"})
    assert r.status == 201 and r.json()["config"]["precision"] == "fp32", r
    assert "bf16_kernels" not in r.json()["config"], r
    assert daemon.request("DELETE", API + "/runs/%d" % r.json()["id"]).status == 204
    r = daemon.post(API + "/runs", {"dataset": dataset["id"], "arch": "resnet_small",
                                    "precision": "auto"})
    assert r.status == 201, r
    assert r.json()["config"]["precision"] == ("bf16" if bf16 else "fp32")
    assert daemon.request("DELETE", API + "/runs/%d" % r.json()["id"]).status == 204
    r = daemon.post(API + "/runs", {"dataset": dataset["id"], "arch": "resnet_small",
                                    "sz": 28, "bs": 8, "head": "plain", "precision": "bf16"})
    if not bf16:
        assert_problem(r, 400, field="precision")
        return
    assert r.status == 201 and r.json()["config"]["precision"] == "bf16", r
    assert r.json()["config"]["bf16_kernels"] == health["kernels"], r
    run = r.json()
    r = daemon.post(API + "/runs/%d/fit" % run["id"],
                    {"lrs": 3e-3, "n_cycle": 1, "schedule": "1cycle", "wd": 0.01})
    assert wait_job(daemon, r.json()["id"])["state"] == "succeeded"
    pts = daemon.get(API + "/runs/%d/metrics?key=train_loss&limit=1000" % run["id"]).json()
    assert pts["points"] and all(math.isfinite(p["value"]) for p in pts["points"])
    assert daemon.request("DELETE", API + "/runs/%d" % run["id"]).status == 204


def test_precision_bf16_refused_where_onednn_is_capped_below_it(sgdrd_bin, monkeypatch):
    """A daemon whose oneDNN is capped below AVX512_BF16 (as on a CPU without it) says so
    in health, refuses a bf16 run naming the field, and resolves auto to fp32."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")
    root = tempfile.mkdtemp(prefix="sgdrd-api-isa-")
    d = Daemon(root)
    try:
        h = d.get(API + "/health").json()
        assert h["bf16"]["supported"] is False and h["bf16"]["onednn_isa"], h
        assert h["bf16"]["kernels"] is None, h
        path = make_image_dataset(os.path.join(d.datasets, "colors"), per_class=6)
        r = d.post(API + "/datasets", {"name": "colors", "path": path, "format": "folders"})
        assert r.status == 201, r
        r = d.post(API + "/runs", {"dataset": "colors", "arch": "resnet_small",
                                   "precision": "bf16"})
        assert_problem(r, 400, field="precision")
        assert "AVX512_BF16" in r.json()["detail"]
        r = d.post(API + "/runs", {"dataset": "colors", "arch": "resnet_small",
                                   "precision": "auto"})
        assert r.status == 201 and r.json()["config"]["precision"] == "fp32", r
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("kernels", ["onednn", "fp32"])
def test_bf16_kernels_forced_by_the_environment(sgdrd_bin, monkeypatch, kernels):
    """SGDRD_BF16_KERNELS picks the bf16 kernels instead of the measurement: health reports
    them and a bf16 run's config records them (so the run keeps them when it resumes)."""
    monkeypatch.setenv("SGDRD_BF16_KERNELS", kernels)
    root = tempfile.mkdtemp(prefix="sgdrd-api-kernels-")
    d = Daemon(root)
    try:
        h = d.get(API + "/health").json()["bf16"]
        if not h["supported"]:
            pytest.skip("this CPU has no native bf16")
        assert h["kernels"] == kernels, h
        path = make_image_dataset(os.path.join(d.datasets, "colors"), per_class=6)
        r = d.post(API + "/datasets", {"name": "colors", "path": path, "format": "folders"})
        assert r.status == 201, r
        r = d.post(API + "/runs", {"dataset": "colors", "arch": "resnet_small",
                                   "precision": "bf16"})
        assert r.status == 201 and r.json()["config"]["bf16_kernels"] == kernels, r
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_adamw_run_trains_with_adam_state(daemon, dataset):
    """opt adamw is the run's optimizer: its epoch checkpoint holds Adam's two moments, one
    float per parameter more than SGD's momentum."""
    sizes = {}
    for opt in ("sgd", "adamw"):
        r = daemon.post(API + "/runs", {"dataset": dataset["id"], "arch": "resnet_small",
                                        "sz": 28, "bs": 8, "head": "plain", "opt": opt})
        assert r.status == 201, r
        run = r.json()
        assert run["config"]["opt"] == opt
        r = daemon.post(API + "/runs/%d/fit" % run["id"],
                        {"lrs": 3e-3, "n_cycle": 1, "schedule": "1cycle", "wd": 0.01})
        assert wait_job(daemon, r.json()["id"])["state"] == "succeeded"
        ck = os.path.join(daemon.data, "runs", str(run["id"]), "ckpt",
                          "last.ckpt.safetensors")
        sizes[opt] = os.path.getsize(ck)
        assert daemon.request("DELETE", API + "/runs/%d" % run["id"]).status == 204
    # resnet_small with a plain head has about 0.69 million parameters.
    assert 600000 * 4 < sizes["adamw"] - sizes["sgd"] < 800000 * 4, sizes


def test_run_reads_start_empty(daemon, run):
    rid = run["id"]
    r = daemon.get(API + "/runs/%d/epochs" % rid)
    assert r.status == 200 and r.json()["items"] == []
    r = daemon.get(API + "/runs/%d/metrics?key=train_loss&after_step=-1&limit=10" % rid)
    assert r.status == 200 and r.json()["points"] == []
    r = daemon.get(API + "/runs/%d/lr-finds" % rid)
    assert r.status == 200 and r.json()["items"] == []
    r = daemon.get(API + "/runs/%d/snapshots" % rid)
    assert r.status == 200 and r.json()["items"] == []
    assert_problem(daemon.get(API + "/runs/%d/weights" % rid), 404)
    r = daemon.get(API + "/jobs?run=%d" % rid)
    assert r.status == 200


def test_metrics_page_of_deleted_run_is_gone(daemon, dataset):
    """A metrics page served (and cached) before its run is deleted answers 404 after."""
    r = daemon.post(API + "/runs", {"dataset": dataset["id"], "arch": "resnet_small"})
    assert r.status == 201, r
    url = API + "/runs/%d/metrics?limit=7" % r.json()["id"]
    for _ in range(2):
        got = daemon.get(url)
        assert got.status == 200 and got.json()["points"] == []
    assert daemon.request("DELETE", API + "/runs/%d" % r.json()["id"]).status == 204
    assert_problem(daemon.get(url), 404)


def test_job_queue_and_cancel(daemon, run):
    """A queued job answers 202 with its Location; cancel ends it; a second cancel is a
    conflict. (Whatever the worker does with it, the row is committed first.)"""
    r = daemon.post(API + "/runs/%d/tta" % run["id"], {"n_aug": 2})
    assert r.status == 202, r
    job = r.json()
    assert r.headers["location"] == API + "/jobs/%d" % job["id"]
    assert job["kind"] == "tta" and job["run"] == run["id"]
    assert job["params"] == {"n_aug": 2}
    r = daemon.get(API + "/jobs/%d" % job["id"])
    assert r.status == 200 and r.json()["id"] == job["id"]
    c = daemon.post(API + "/jobs/%d/cancel" % job["id"])
    if c.status == 202:
        assert c.json()["id"] == job["id"]
    else:
        assert_problem(c, 409)   # it finished before the cancel arrived
    for _ in range(200):
        state = daemon.get(API + "/jobs/%d" % job["id"]).json()["state"]
        if state not in ("queued", "running"):
            break
        import time
        time.sleep(0.05)
    assert_problem(daemon.post(API + "/jobs/%d/cancel" % job["id"]), 409)
    assert_problem(daemon.post(API + "/jobs/%d/resume" % job["id"]), 409)
    assert_problem(daemon.get(API + "/jobs/%d/predictions.csv" % job["id"]), 404)


def test_job_params_show_the_defaults_it_runs_with(daemon, run):
    """A job's params are what it runs with, every default filled in, not the body as
    sent: in the 202 and in GET /jobs/{id}."""
    fit = {"lrs": 0.01, "n_cycle": 1, "cycle_len": 1, "cycle_mult": 1, "wd": 0,
           "schedule": "sgdr", "snapshots": False, "stop_at_worse_cycle": False,
           "time_limit_minutes": 0}
    recipe = {"max_epochs": 7, "close_to_imagenet": False, "n_aug": 4, "budget_minutes": 0,
              "schedule": "sgdr"}
    ids = []
    for path, body, want in (("fit", {"lrs": 0.01, "n_cycle": 1}, fit),
                             ("recipe", {}, recipe)):
        r = daemon.post(API + "/runs/%d/%s" % (run["id"], path), body)
        assert r.status == 202, r
        assert r.json()["params"] == want
        ids.append(r.json()["id"])
        assert daemon.get(API + "/jobs/%d" % ids[-1]).json()["params"] == want
    for i in ids:
        c = daemon.post(API + "/jobs/%d/cancel" % i)
        assert c.status in (202, 409)
    for i in ids:
        for _ in range(600):
            if daemon.get(API + "/jobs/%d" % i).json()["state"] not in ("queued", "running"):
                break
            import time
            time.sleep(0.05)


def body_weights(daemon, **config):
    """A resnet_small body with a plain head, as a run's weights after a short fit."""
    r = daemon.post(API + "/runs", dict({"dataset": "colors", "arch": "resnet_small", "sz": 28,
                                         "bs": 4, "head": "plain"}, **config))
    assert r.status == 201, r
    run = r.json()["id"]
    r = daemon.post(API + "/runs/%d/fit" % run, {"lrs": 0.01, "n_cycle": 1})
    assert r.status == 202, r
    assert wait_job(daemon, r.json()["id"])["state"] == "succeeded"
    w = daemon.get(API + "/runs/%d/weights" % run)
    assert w.status == 200, w
    assert daemon.request("DELETE", API + "/runs/%d" % run).status == 204
    return w.body


def safetensors_shapes(blob):
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    return {k: v["shape"] for k, v in header.items() if k != "__metadata__"}


def test_width_builds_a_wider_resnet_small(daemon, dataset):
    """width sets resnet_small's channels: w in the stem and first stage, 2w and 4w in the
    next two, as the trained weights' shapes show."""
    default = safetensors_shapes(body_weights(daemon))
    wide = safetensors_shapes(body_weights(daemon, width=48))
    assert default["conv1.weight"] == [32, 3, 3, 3], default["conv1.weight"]
    assert wide["conv1.weight"] == [48, 3, 3, 3]
    assert wide["layer2.0.conv1.weight"] == [96, 48, 3, 3]
    assert wide["layer3.1.conv2.weight"] == [192, 192, 3, 3]
    assert wide["fc.weight"][1] == 192 and default["fc.weight"][1] == 128


def test_models_import_list_delete(daemon, dataset):
    blob = body_weights(daemon)
    r = daemon.post(API + "/models?name=small&arch=resnet_small", blob,
                    ctype="application/octet-stream")
    assert r.status == 201, r
    m = r.json()
    assert m["name"] == "small" and m["arch"] == "resnet_small" and m["bytes"] == len(blob)
    assert r.headers["location"] == API + "/models/%d" % m["id"]
    assert m["id"] in [x["id"] for x in daemon.get(API + "/models").json()["items"]]
    # Imported bodies have the default width; another is refused before any job.
    assert_problem(daemon.post(API + "/runs", {"dataset": "colors", "arch": "resnet_small",
                                               "pretrained": m["id"], "width": 48}),
                   400, field="width")
    # A run starts from the imported body.
    r = daemon.post(API + "/runs", {"dataset": "colors", "arch": "resnet_small", "sz": 28,
                                    "bs": 4, "pretrained": m["id"]})
    assert r.status == 201, r
    run = r.json()["id"]
    r = daemon.post(API + "/runs/%d/fit" % run, {"lrs": 0.01, "n_cycle": 1})
    assert wait_job(daemon, r.json()["id"])["state"] == "succeeded"
    # The model stays while a run starts from it.
    p = assert_problem(daemon.request("DELETE", API + "/models/%d" % m["id"]), 409)
    assert "used by runs" in p["detail"], p
    assert daemon.get(API + "/models/%d" % m["id"]).status == 200
    assert daemon.request("DELETE", API + "/runs/%d" % run).status == 204

    before = counts(daemon)
    assert_problem(daemon.post(API + "/models?name=small&arch=resnet_small", blob,
                               ctype="application/octet-stream"), 409)
    assert_problem(daemon.post(API + "/models?name=bad&arch=resnet18", b"\x05" * 40,
                               ctype="application/octet-stream"), 400)
    # Files a run could not start from are refused at import: another arch's body, a
    # head alone, no tensors at all.
    r = daemon.post(API + "/models?name=other&arch=resnet18", blob,
                    ctype="application/octet-stream")
    assert_problem(r, 400)
    assert "not a resnet18 body" in r.json()["detail"], r
    for tensors in ({"fc.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}},
                    {}):
        header = json.dumps(tensors).encode()
        part = len(header).to_bytes(8, "little") + header + bytes(16 if tensors else 0)
        assert_problem(daemon.post(API + "/models?name=part&arch=resnet_small", part,
                                   ctype="application/octet-stream"), 400)
    assert_problem(daemon.post(API + "/models?name=x&arch=vgg", blob,
                               ctype="application/octet-stream"), 400, field="arch")
    assert_problem(daemon.post(API + "/models?arch=resnet18", blob,
                               ctype="application/octet-stream"), 400, field="name")
    assert counts(daemon) == before
    assert daemon.request("DELETE", API + "/models/%d" % m["id"]).status == 204
    assert_problem(daemon.get(API + "/models/%d" % m["id"]), 404)


# ---- documented errors: problem+json, nothing queued or written ---------------------------

BAD_BODIES = [
    # (path suffix, body, status, field)
    ("/runs", {"dataset": "colors", "arch": "resnet_small", "colour": 1}, 400, "colour"),
    ("/runs", {"dataset": "colors", "arch": "vgg16"}, 400, "arch"),
    ("/runs", {"dataset": "colors", "arch": "resnet_small", "head": "tiny"}, 400, "head"),
    ("/runs", {"dataset": "colors", "arch": "resnet_small", "sz": "big"}, 400, "sz"),
    ("/runs", {"dataset": "colors", "arch": "resnet_small", "sz": 4}, 400, "sz"),
    ("/runs", {"dataset": "colors", "arch": "resnet_small", "bs": 2.5}, 400, "bs"),
    ("/runs", {"dataset": "colors", "arch": "resnet_small", "ps": [0.1, 1.5]}, 400, "ps[1]"),
    ("/runs", {"dataset": "colors", "arch": "resnet_small", "precompute": "yes"}, 400,
     "precompute"),
    ("/runs", {"dataset": "colors", "arch": "resnet_small", "precompute": True}, 400,
     "precompute"),
    ("/runs", {"arch": "resnet_small"}, 400, "dataset"),
    ("/runs", {"dataset": "colors", "arch": "resnet_small", "opt": "lamb"}, 400, "opt"),
    ("/runs", {"dataset": "colors", "arch": "resnet_small", "precision": "fp16"}, 400,
     "precision"),
    ("/runs", {"dataset": "colors", "arch": "resnet_small", "label_smoothing": 1}, 400,
     "label_smoothing"),
    ("/runs", {"dataset": "colors", "arch": "resnet_small", "label_smoothing": -0.1}, 400,
     "label_smoothing"),
    ("/runs", {"dataset": "colors", "arch": "resnet_small", "label_smoothing": 0.1,
               "multi_label": True}, 400, "label_smoothing"),
    ("/runs", {"dataset": "colors", "arch": "resnet_small", "pad": -1}, 400, "pad"),
    ("/runs", {"dataset": "colors", "arch": "resnet_small", "pad": 2.5}, 400, "pad"),
    ("/runs", {"dataset": "colors", "arch": "resnet_small", "pad": 15}, 400, "pad"),
    ("/runs", {"dataset": "colors", "arch": "resnet_small", "sz": 16, "pad": 9}, 400, "pad"),
    ("/runs", {"dataset": "colors", "arch": "resnet_small", "width": 4}, 400, "width"),
    ("/runs", {"dataset": "colors", "arch": "resnet_small", "width": 1000}, 400, "width"),
    ("/runs", {"dataset": "colors", "arch": "resnet18", "width": 64}, 400, "width"),
    ("/runs", {"dataset": "colors", "arch": "resnet_small_silu", "width": 4}, 400, "width"),
    ("/runs", {"dataset": "nope", "arch": "resnet_small"}, 404, "dataset"),
    ("/runs", {"dataset": "colors", "arch": "resnet18", "pretrained": 999}, 404, "pretrained"),
    ("/runs/{run}/fit", {"lrs": 0.01}, 400, "n_cycle"),
    ("/runs/{run}/fit", {"lrs": -0.01, "n_cycle": 1}, 400, "lrs"),
    # The engine's own schedule rules, judged at the request rather than by a failing job.
    ("/runs/{run}/fit", {"lrs": 0.01, "n_cycle": 200}, 400, "n_cycle"),
    ("/runs/{run}/fit", {"lrs": 0.01, "n_cycle": 12, "cycle_len": 100, "cycle_mult": 4}, 400,
     "n_cycle"),
    ("/runs/{run}/fit", {"lrs": 0.01, "n_cycle": 1, "wd": 1}, 400, "wd"),
    # Integers beyond int64, which JSON allows and jansson cannot hold, still name the field.
    ("/runs/{run}/fit", {"lrs": 0.01, "n_cycle": 10 ** 20}, 400, "n_cycle"),
    ("/runs/{run}/fit", {"lrs": [0.01, 0.02, -10 ** 30], "n_cycle": 1}, 400, "lrs[2]"),
    ("/runs", {"dataset": "colors", "arch": "resnet_small", "seed": 2 ** 64}, 400, "seed"),
    ("/runs/{run}/fit", {"lrs": [0.01, "x", 0.1], "n_cycle": 1}, 400, "lrs[1]"),
    ("/runs/{run}/fit", {"lrs": 0.01, "n_cycle": 1, "schedule": "step"}, 400, "schedule"),
    ("/runs/{run}/fit", {"lrs": 0.01, "n_cycle": 1, "early_stop": {"patience": 0}}, 400,
     "early_stop.patience"),
    ("/runs/{run}/fit", {"lrs": 0.01, "n_cycle": 1, "early_stop": {"wait": 2}}, 400,
     "early_stop.wait"),
    ("/runs/{run}/fit", {"lrs": 0.01, "n_cycle": 1, "stop_at_worse_cycle": "yes"}, 400,
     "stop_at_worse_cycle"),
    ("/runs/{run}/fit", {"lrs": 0.01, "n_cycle": 1, "time_limit_minutes": -1}, 400,
     "time_limit_minutes"),
    ("/runs/{run}/fit", {"lrs": 0.01, "n_cycle": 1, "time_limit_minutes": "1h"}, 400,
     "time_limit_minutes"),
    ("/runs/{run}/fit", {"lrs": 0.01, "n_cycle": 0}, 400, "n_cycle"),
    ("/runs/{run}/lr-find", {"start_lr": 1, "end_lr": 0.1}, 400, "end_lr"),
    ("/runs/{run}/lr-find", {"start_lr": "small"}, 400, "start_lr"),
    ("/runs/{run}/lr-find", {"num_it": -5}, 400, "num_it"),
    ("/runs/{run}/freeze", {}, 400, "to"),
    ("/runs/{run}/freeze", {"to": 9}, 400, "to"),
    ("/runs/{run}/unfreeze", {"to": 1}, 400, "to"),
    ("/runs/{run}/precompute", {"on": 1}, 400, "on"),
    ("/runs/{run}/resize", {"sz": 5000}, 400, "sz"),
    ("/runs/{run}/tta", {"n_aug": 0}, 400, "n_aug"),
    ("/runs/{run}/recipe", {"max_epochs": 0}, 400, "max_epochs"),
    ("/runs/{run}/recipe", {"budget_minutes": -1}, 400, "budget_minutes"),
    ("/runs/{run}/recipe", {"schedule": "constant"}, 400, "schedule"),
    ("/runs/{run}/predict-test", {"tta": "no"}, 400, "tta"),
    ("/runs/99999/fit", {"lrs": 0.01, "n_cycle": 1}, 404, None),
    ("/datasets", {"name": "x", "path": "/etc", "format": "folders"}, 400, "path"),
    ("/datasets", {"name": "x", "path": "/nonexistent/dir", "format": "folders"}, 400, "path"),
    ("/datasets", {"name": "x", "path": "/tmp", "format": "zip"}, 400, "format"),
    ("/datasets", {"name": "../x", "path": "/tmp", "format": "folders"}, 400, "name"),
    ("/datasets", {"name": "colors", "path": "/tmp", "format": "folders", "valid_pct": 2},
     400, "valid_pct"),
    ("/datasets", {"name": "colors", "path": "/tmp", "format": "folders", "extra": True},
     400, "extra"),
]


@pytest.mark.parametrize("path,body,status,field", BAD_BODIES)
def test_bad_body_is_problem_and_changes_nothing(daemon, run, path, body, status, field):
    before = counts(daemon)
    r = daemon.post(API + path.replace("{run}", str(run["id"])), body)
    assert_problem(r, status, field=field)
    assert counts(daemon) == before


def test_threads_flag_holds_after_a_job(daemon, dataset):
    """--threads 1 (the fixture's) still holds once a job's thread has run OpenMP loops."""
    r = daemon.post(API + "/runs", {"dataset": "colors", "arch": "resnet_small", "sz": 28,
                                    "bs": 4})
    assert r.status == 201, r
    run = r.json()["id"]
    r = daemon.post(API + "/runs/%d/fit" % run, {"lrs": 0.01, "n_cycle": 1})
    assert wait_job(daemon, r.json()["id"])["state"] == "succeeded"
    assert daemon.get(API + "/health").json()["blas"]["threads"] == 1
    assert daemon.request("DELETE", API + "/runs/%d" % run).status == 204


def test_run_workers_default(daemon, dataset, run):
    """A run's workers (its jobs' default) is parsed like a job's: a bad value or one above
    --max-workers (1 here) is a 400 naming workers, with no run made; the config shows it."""
    assert run["config"]["workers"] == 1
    before = len(daemon.get(API + "/runs?limit=1000").json()["items"])
    for bad in (0, -1, 2, 1025, "two", 1.5, True):
        r = daemon.post(API + "/runs", {"dataset": dataset["id"], "arch": "resnet_small",
                                        "workers": bad})
        assert_problem(r, 400, field="workers")
    assert len(daemon.get(API + "/runs?limit=1000").json()["items"]) == before
    r = daemon.post(API + "/runs", {"dataset": dataset["id"], "arch": "resnet_small",
                                    "workers": 1})
    assert r.status == 201 and r.json()["config"]["workers"] == 1, r
    assert daemon.request("DELETE", API + "/runs/%d" % r.json()["id"]).status == 204


def test_run_on_one_class_is_refused(daemon, dataset):
    root = os.path.join(daemon.datasets, "one")
    for split in ("train", "valid"):
        for i in range(3):
            make_png(os.path.join(root, split, "only", "%d.png" % i), 32, 32, (90, 90, 90), i)
    r = daemon.post(API + "/datasets", {"name": "one", "path": root, "format": "folders"})
    assert r.status == 201, r
    ds_id = r.json()["id"]
    before = counts(daemon)
    r = daemon.post(API + "/runs", {"dataset": "one", "arch": "resnet_small"})
    assert_problem(r, 400, field="dataset")
    assert "1 class" in r.json()["detail"]
    assert counts(daemon) == before
    assert daemon.request("DELETE", API + "/datasets/%d" % ds_id).status == 204


def test_dataset_refusals_name_the_field(daemon, dataset):
    before = counts(daemon)
    # a folder under the root that is not a dataset
    empty = os.path.join(daemon.datasets, "empty")
    os.makedirs(empty, exist_ok=True)
    assert_problem(daemon.post(API + "/datasets", {"name": "empty", "path": empty,
                                                  "format": "folders"}), 400, field="path")
    # a link under the root that leads outside it
    link = os.path.join(daemon.datasets, "escape")
    if not os.path.islink(link):
        os.symlink("/usr", link)
    assert_problem(daemon.post(API + "/datasets", {"name": "escape", "path": link,
                                                  "format": "folders"}), 400, field="path")
    # the name is taken
    assert_problem(daemon.post(API + "/datasets", {"name": "colors", "path": empty,
                                                  "format": "folders"}), 409, field="name")
    assert counts(daemon) == before


@pytest.mark.parametrize("raw", [b"{", b"{\"a\":}", b"[1, 2]", b"\"text\"", b"\xff\xfe",
                                 b"{\"lrs\": 1, \"lrs\": 2}", b"nul"])
def test_malformed_json(daemon, run, raw):
    before = counts(daemon)
    r = daemon.post(API + "/runs/%d/fit" % run["id"], raw, ctype="application/json")
    p = assert_problem(r, 400)
    assert "field" not in p
    assert counts(daemon) == before


def test_missing_resources(daemon):
    for path in ("/datasets/424242", "/runs/424242", "/jobs/424242", "/lr-finds/424242",
                 "/models/424242", "/runs/424242/metrics", "/runs/424242/epochs",
                 "/runs/424242/lr-finds", "/runs/424242/snapshots", "/runs/424242/weights",
                 "/runs/424242/events", "/jobs/424242/predictions.csv", "/nothing/here",
                 "/runs/abc"):
        assert_problem(daemon.get(API + path), 404, code="RESOURCE_DOES_NOT_EXIST")
    for path in ("/jobs/424242/cancel", "/jobs/424242/resume"):
        assert_problem(daemon.post(API + path), 404)
    assert_problem(daemon.request("DELETE", API + "/runs/424242"), 404)
    assert_problem(daemon.request("DELETE", API + "/datasets/424242"), 404)


def test_wrong_method(daemon, run):
    before = counts(daemon)
    for method, path in (("DELETE", "/health"), ("PUT", "/runs"), ("GET", "/runs/%d/fit"),
                         ("PATCH", "/runs/%d"), ("POST", "/jobs/1"), ("DELETE", "/jobs")):
        r = daemon.request(method, API + path.replace("%d", str(run["id"])))
        assert_problem(r, 405)
        assert r.headers.get("allow"), r.headers
    r = daemon.request("PUT", API + "/runs/%d" % run["id"], {"x": 1})
    assert_problem(r, 405)
    assert set(r.headers["allow"].split(", ")) == {"GET", "DELETE"}
    assert counts(daemon) == before


def test_oversize_body(daemon, run):
    before = counts(daemon)
    big = b'{"lrs": 0.01, "n_cycle": 1, "pad": "' + b"x" * (1024 * 1024) + b'"}'
    assert_problem(daemon.post(API + "/runs/%d/fit" % run["id"], big,
                               ctype="application/json"), 413, code="REQUEST_LIMIT_EXCEEDED")
    # Chunked, so the size is only known at the end.
    c = daemon.connect()
    c.putrequest("POST", API + "/runs/%d/fit" % run["id"])
    c.putheader("Content-Type", "application/json")
    c.putheader("Transfer-Encoding", "chunked")
    c.endheaders()
    for i in range(0, len(big), 65536):
        chunk = big[i:i + 65536]
        c.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    c.send(b"0\r\n\r\n")
    resp = c.getresponse()
    from conftest import Reply
    r = Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    c.close()
    assert_problem(r, 413)
    # An upload over --max-upload (8 MiB for this daemon).
    assert_problem(daemon.post(API + "/datasets?name=huge", b"\0" * (9 * 1024 * 1024),
                               ctype="application/x-tar"), 413)
    assert counts(daemon) == before


def test_wrong_content_type(daemon, run):
    before = counts(daemon)
    body = json.dumps({"lrs": 0.01, "n_cycle": 1}).encode()
    for ct in ("text/plain", "application/x-www-form-urlencoded", None):
        r = daemon.post(API + "/runs/%d/fit" % run["id"], body,
                        headers={} if ct is None else {"Content-Type": ct})
        assert_problem(r, 415)
    assert_problem(daemon.post(API + "/runs/%d/predict" % run["id"], b"{}",
                               ctype="application/json"), 415)
    assert_problem(daemon.post(API + "/datasets", b"x", ctype="text/csv"), 415)
    assert_problem(daemon.post(API + "/models?name=a&arch=resnet18", b"{}",
                               ctype="application/json"), 415)
    assert_problem(daemon.post(API + "/jobs/1/cancel", b'{"x": 1}', ctype="application/json"),
                   415)
    assert counts(daemon) == before


def test_bad_query_parameters(daemon, run):
    rid = run["id"]
    assert_problem(daemon.get(API + "/runs?limit=0"), 400, field="limit")
    assert_problem(daemon.get(API + "/runs?limit=abc"), 400, field="limit")
    assert_problem(daemon.get(API + "/jobs?state=sleeping"), 400, field="state")
    assert_problem(daemon.get(API + "/runs/%d/metrics?after_step=x" % rid), 400,
                   field="after_step")
    assert_problem(daemon.get(API + "/runs/%d/metrics?limit=1000000" % rid), 400,
                   field="limit")
    assert_problem(daemon.get(API + "/runs/%d/events" % rid,
                              headers={"Last-Event-ID": "-3"}), 400, field="Last-Event-ID")
    # A misspelt or repeated parameter is refused, not silently replaced by its default.
    p = assert_problem(daemon.get(API + "/runs?limt=5"), 400, field="limt")
    assert "limit page_token" in p["detail"], p
    assert_problem(daemon.get(API + "/runs?limit=5&limit=6"), 400, field="limit")
    assert_problem(daemon.get(API + "/health?verbose=1"), 400, field="verbose")
    before = counts(daemon)
    assert_problem(daemon.post(API + "/runs/%d/fit?lrs=0.1" % rid, {"lrs": 0.01, "n_cycle": 1}),
                   400, field="lrs")
    assert counts(daemon) == before
    assert daemon.get(API + "/runs?limit=5&").status == 200


def test_bytes_that_are_not_utf8_are_quoted_not_a_500(daemon, run):
    assert_problem(daemon.get(API + "/runs/%ff"), 404)
    p = assert_problem(daemon.get(API + "/runs?%ff%fe=1"), 400)
    assert p["field"] == "\ufffd\ufffd", p
    # A detail cut by its buffer in the middle of a character.
    assert_problem(daemon.get(API + "/nothing/" + "%c3%a9" * 600), 404)
    # The request line is logged, but no control byte of the URL reaches the log.
    assert_problem(daemon.get(API + "/nothing/%1b[31m%0a2026-01-01T00:00:00Z%0dFORGED"), 404)
    log = daemon.log_text()
    assert "\x1b" not in log and "\r" not in log
    assert not any(line.startswith("2026-01-01T00:00:00Z") for line in log.splitlines())


def test_token_auth(token_daemon):
    d = token_daemon
    for hdr in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"},
                {"Authorization": "Bearer s3cret-token-for-test"},
                {"Authorization": "Bearer s3cret-token-for-testsX"}):
        r = d.request("GET", API + "/health", headers=hdr, auth=False)
        assert_problem(r, 401, code="UNAUTHENTICATED")
        assert r.headers.get("www-authenticate", "").startswith("Bearer")
    r = d.request("POST", API + "/runs", {"dataset": 1, "arch": "resnet18"}, auth=False)
    assert_problem(r, 401)
    assert d.get(API + "/health").status == 200
    assert d.get(API + "/runs").json()["items"] == []


# ---- OpenAPI ⇔ router ---------------------------------------------------------------------

def router_table():
    """(method, path) of every entry of api/routes.c's route table."""
    with open(os.path.join(SRC, "api", "routes.c")) as f:
        text = f.read()
    table = text[text.index("const api_route api_routes[]"):]
    table = table[:table.index("};")]
    routes = re.findall(r'\{"(GET|POST|PUT|DELETE|PATCH)", (V )?"([^"]+)"', table)
    assert len(routes) > 20
    return {(m, ("/api/v1" if v else "") + p) for m, v, p in routes}


def test_openapi_matches_router(daemon):
    r = daemon.get(API + "/openapi.json")
    assert r.status == 200 and r.ctype.startswith("application/json")
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops
                  if m in ("get", "post", "put", "delete", "patch")}
    routed = router_table()
    assert documented - routed == set(), "documented but not routed"
    assert routed - documented == set(), "routed but not documented"
    # Every documented operation reaches a handler: no 405, and no router 404.
    for method, path in sorted(documented):
        r = daemon.request(method, path.replace("{id}", "987654"),
                           headers={"Content-Type": "application/json"}
                           if method == "POST" else None)
        assert r.status != 405, (method, path, r)
        if r.status == 404:
            assert "no such resource" not in r.json()["detail"], (method, path, r)
    with open(os.path.join(SRC, "api", "openapi.json")) as f:
        assert json.load(f) == doc


def documented_query(doc, path, method):
    def resolve(x):
        if "$ref" not in x:
            return x
        o = doc
        for part in x["$ref"].lstrip("#/").split("/"):
            o = o[part]
        return o
    ops = doc["paths"][path]
    params = ops[method].get("parameters", []) + ops.get("parameters", [])
    return [resolve(x)["name"] for x in params if resolve(x)["in"] == "query"]


def test_openapi_query_parameters_match_router(daemon):
    """Each operation's router takes exactly the query parameters openapi.json lists."""
    doc = daemon.get(API + "/openapi.json").json()
    for path, ops in doc["paths"].items():
        for method in (m for m in ops if m in ("get", "post", "delete")):
            url = path.replace("{id}", "987654")
            for name in documented_query(doc, path, method):
                r = daemon.request(method.upper(), url + "?" + name + "=x")
                if r.status == 400:
                    assert "unknown query parameter" not in r.json()["detail"], (path, name)
            r = daemon.request(method.upper(), url + "?undocumented=1")
            p = assert_problem(r, 400, field="undocumented")
            assert "unknown query parameter" in p["detail"], (path, p)


# ---- static files -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def web_daemon(sgdrd_bin, tmp_path_factory):
    from conftest import Daemon
    root = str(tmp_path_factory.mktemp("web"))
    web = os.path.join(root, "web")
    os.makedirs(os.path.join(web, "node_modules", "uplot", "dist"))
    os.makedirs(os.path.join(web, "css"))
    with open(os.path.join(web, "index.html"), "w") as f:
        f.write("<!doctype html><title>sgdrd</title>")
    with open(os.path.join(web, "app.js"), "w") as f:
        f.write("console.log(1);")
    with open(os.path.join(web, "css", "style.css"), "w") as f:
        f.write("body{}")
    with open(os.path.join(web, "node_modules", "uplot", "dist", "uPlot.iife.min.js"),
              "w") as f:
        f.write("var uPlot;")
    with open(os.path.join(root, "secret.txt"), "w") as f:
        f.write("SECRET")
    os.symlink(os.path.join(root, "secret.txt"), os.path.join(web, "leak.txt"))
    d = Daemon(root, web_dir=web)
    yield d
    d.stop()


def raw_get(d, path):
    """GET with the path sent exactly as given (no client-side normalisation)."""
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              b"Connection: close\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), head.decode("latin-1").lower(), body


def test_static_files(web_daemon):
    d = web_daemon
    r = d.get("/")
    assert r.status == 200 and r.ctype.startswith("text/html") and b"sgdrd" in r.body
    assert d.get("/index.html").body == r.body
    r = d.get("/app.js")
    assert r.status == 200 and r.ctype.startswith("text/javascript")
    r = d.get("/css/style.css")
    assert r.status == 200 and r.ctype.startswith("text/css")
    r = d.get("/vendor/uplot/uPlot.iife.min.js")
    assert r.status == 200 and r.body == b"var uPlot;"
    assert d.get("/missing.html").status == 404


@pytest.mark.parametrize("path", [
    "/../secret.txt", "/%2e%2e/secret.txt", "/css/../../secret.txt", "/..%2fsecret.txt",
    "/vendor/uplot/../../../../secret.txt", "/vendor/uplot/%2e%2e/%2e%2e/%2e%2e/index.html",
    "/leak.txt", "/./index.html", "//etc/passwd", "/css//style.css", "/..\\secret.txt",
    "/../../../../../../etc/passwd",
])
def test_static_traversal_refused(web_daemon, path):
    status, head, body = raw_get(web_daemon, path)
    assert status in (400, 404), (path, status)
    assert b"SECRET" not in body and b"root:" not in body


# ---- uploads ------------------------------------------------------------------------------

def tar_bytes(members, gzip=False):
    """members: list of (TarInfo fields dict, data bytes or None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gzip else "w") as t:
        for info, data in members:
            ti = tarfile.TarInfo(info["name"])
            for k, v in info.items():
                setattr(ti, k, v)
            if data is not None:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
            else:
                t.addfile(ti)
    return buf.getvalue()


def dataset_members(prefix=""):
    from conftest import png_bytes as pb
    out = []
    for split, n in (("train", 4), ("valid", 2)):
        for cls, color in (("red", (200, 40, 40)), ("blue", (40, 40, 200))):
            for i in range(n):
                out.append(({"name": "%s%s/%s/%d.png" % (prefix, split, cls, i)},
                            pb(color)))
    return out


def test_upload_tar_and_gzip(daemon):
    r = daemon.post(API + "/datasets?name=up_plain", tar_bytes(dataset_members()),
                    ctype="application/x-tar")
    assert r.status == 201, r
    ds = r.json()
    assert ds["info"]["classes"] == ["blue", "red"] and ds["info"]["counts"]["train"] == 8
    assert r.headers["location"] == API + "/datasets/%d" % ds["id"]
    assert os.path.isdir(os.path.join(daemon.data, "datasets", "up_plain", "train", "red"))
    r = daemon.post(API + "/datasets?name=up_gz", tar_bytes(dataset_members("mydata/"), True),
                    ctype="application/gzip")
    assert r.status == 201, r
    assert r.json()["info"]["counts"]["valid"] == 4
    assert os.listdir(os.path.join(daemon.data, "tmp")) == []
    # deleting an uploaded dataset removes its files
    assert daemon.request("DELETE", API + "/datasets/%d" % ds["id"]).status == 204
    assert not os.path.exists(os.path.join(daemon.data, "datasets", "up_plain"))


@pytest.mark.parametrize("bad", ["absolute", "dotdot", "symlink", "hardlink", "device",
                                 "garbage", "not_a_dataset", "no_name", "bad_name"])
def test_upload_refusals(daemon, bad):
    members = dataset_members()
    ctype, query = "application/x-tar", "?name=bad_" + bad
    if bad == "absolute":
        members.append(({"name": "/tmp/sgdrd-evil-abs.png"}, b"x"))
    elif bad == "dotdot":
        members.append(({"name": "train/../../sgdrd-evil.png"}, b"x"))
    elif bad == "symlink":
        members.append(({"name": "train/red/link.png", "type": tarfile.SYMTYPE,
                         "linkname": "/etc/passwd"}, None))
    elif bad == "hardlink":
        members.append(({"name": "train/red/hard.png", "type": tarfile.LNKTYPE,
                         "linkname": "train/red/0.png"}, None))
    elif bad == "device":
        members.append(({"name": "train/null", "type": tarfile.CHRTYPE, "devmajor": 1,
                         "devminor": 3}, None))
    elif bad == "not_a_dataset":
        members = [({"name": "readme.txt"}, b"hello")]
    elif bad == "no_name":
        query = ""
    elif bad == "bad_name":
        query = "?name=../../etc"
    body = b"this is not a tar archive" * 40 if bad == "garbage" else tar_bytes(members)
    before = counts(daemon)
    r = daemon.post(API + "/datasets" + query, body, ctype=ctype)
    p = assert_problem(r, 400)
    if bad in ("no_name", "bad_name"):
        assert p["field"] == "name"
    assert counts(daemon) == before
    assert not os.path.exists("/tmp/sgdrd-evil-abs.png")
    assert not os.path.exists(os.path.join(daemon.data, "sgdrd-evil.png"))
    assert not os.path.exists(os.path.join(daemon.data, "tmp", "sgdrd-evil.png"))


def test_predict_refusals(daemon, run):
    rid = run["id"]
    assert_problem(daemon.post(API + "/runs/%d/predict" % rid, b"", ctype="image/png"), 400)
    assert_problem(daemon.post(API + "/runs/%d/predict?tta=2" % rid, png_bytes(),
                               ctype="image/png"), 400, field="tta")
    assert_problem(daemon.post(API + "/runs/424242/predict", png_bytes(),
                               ctype="image/png"), 404)
    # no weights yet (no job finished) or not an image: both are the client's problem
    r = daemon.post(API + "/runs/%d/predict" % rid, b"not an image at all",
                    ctype="image/png")
    assert r.status in (400, 409), r
    assert_problem(r, r.status)


# ---- many clients at once -----------------------------------------------------------------

def test_concurrent_clients(daemon, run):
    """Sixteen clients at once, mixing reads, refusals and 404s: every answer is the one a
    lone client gets, and nothing is written."""
    from concurrent.futures import ThreadPoolExecutor
    before = counts(daemon)
    rid = run["id"]
    cases = [
        ("GET", API + "/health", None, 200),
        ("GET", API + "/runs/%d" % rid, None, 200),
        ("GET", API + "/runs/%d/metrics?limit=10" % rid, None, 200),
        ("POST", API + "/runs/%d/fit" % rid, {"lrs": 0.01, "n_cycle": 1, "bogus": 1}, 400),
        ("GET", API + "/runs/777777", None, 404),
        ("DELETE", API + "/health", None, 405),
    ]

    def one(i):
        method, path, body, status = cases[i % len(cases)]
        r = daemon.request(method, path, body)
        return r.status == status and (status == 200 or
                                       r.ctype.startswith("application/problem+json"))

    with ThreadPoolExecutor(16) as ex:
        results = list(ex.map(one, range(16 * 24)))
    assert all(results), results.count(False)
    assert counts(daemon) == before


# ---- robustness (found by fuzzing the running daemon) -------------------------------------

def test_upload_overlong_file_name_is_refused(daemon):
    """A file name longer than the file system takes is the client's fault: a 400 that
    names the entry, not a 500 from the extraction."""
    members = dataset_members()
    members.append(({"name": "train/cat/" + "a" * 300 + ".png"}, png_bytes()))
    before = counts(daemon)
    r = daemon.post(API + "/datasets?name=x_longname", tar_bytes(members),
                    ctype="application/x-tar")
    p = assert_problem(r, 400)
    assert "train/cat/aaa" in p["detail"] and "too long" in p["detail"], p
    assert counts(daemon) == before


def test_tta_n_aug_bound_is_the_engines(daemon, run):
    """n_aug over what the engine takes is a 400 at the request, not a failed job, and
    the OpenAPI document states the same maximum."""
    before = counts(daemon)
    for path in ("tta", "recipe"):
        assert_problem(daemon.post(API + "/runs/%d/%s" % (run["id"], path), {"n_aug": 16}),
                       400, field="n_aug")
    assert counts(daemon) == before
    doc = daemon.get(API + "/openapi.json").json()
    for path in ("tta", "recipe"):
        body = doc["paths"][API + "/runs/{id}/" + path]["post"]["requestBody"]
        n_aug = body["content"]["application/json"]["schema"]["properties"]["n_aug"]
        assert n_aug["maximum"] == 15, (path, n_aug)


def test_fit_more_lrs_than_layer_groups(daemon, run):
    before = counts(daemon)
    assert_problem(daemon.post(API + "/runs/%d/fit" % run["id"],
                               {"lrs": [1e-4, 1e-3, 1e-2, 1e-1], "n_cycle": 1}),
                   400, field="lrs")
    assert counts(daemon) == before


def test_precompute_on_an_unfrozen_run_is_a_conflict(daemon, dataset):
    """A run without a pretrained body trains every group: precompute needs the body
    frozen, and the request says so instead of queueing a job that fails."""
    r = daemon.post(API + "/runs", {"dataset": "colors", "arch": "resnet_small", "sz": 28,
                                    "bs": 4})
    assert r.status == 201, r
    rid = r.json()["id"]
    before = counts(daemon)
    p = assert_problem(daemon.post(API + "/runs/%d/precompute" % rid, {"on": True}), 409,
                       field="on")
    assert "frozen" in p["detail"], p
    assert counts(daemon) == before
    assert daemon.request("DELETE", API + "/runs/%d" % rid).status == 204


def test_dataset_folder_gone_after_the_run(daemon):
    """A run whose dataset folder was deleted, or changed into something unusable, after
    the run was created still exists (200); predicting with it is a 409 naming the
    dataset and its folder, and a job on it fails saying the same."""
    import shutil
    from conftest import wait_job
    root = make_image_dataset(os.path.join(daemon.datasets, "gone"), per_class=3)
    r = daemon.post(API + "/datasets", {"name": "gone", "path": root, "format": "folders"})
    assert r.status == 201, r
    r = daemon.post(API + "/runs", {"dataset": "gone", "arch": "resnet_small", "sz": 16,
                                    "bs": 2})
    assert r.status == 201, r
    rid = r.json()["id"]
    r = daemon.post(API + "/runs/%d/fit" % rid, {"lrs": 0.01, "n_cycle": 1})
    assert r.status == 202, r
    assert wait_job(daemon, r.json()["id"])["state"] == "succeeded"
    shutil.rmtree(root)
    for broken in ("deleted", "train is a file"):
        if broken == "train is a file":
            os.makedirs(root)
            with open(os.path.join(root, "train"), "w") as f:
                f.write("not a folder")
        assert daemon.get(API + "/runs/%d" % rid).status == 200
        r = daemon.post(API + "/runs/%d/predict" % rid, png_bytes(), ctype="image/png")
        p = assert_problem(r, 409)
        assert '"gone"' in p["detail"] and root in p["detail"], p
    r = daemon.post(API + "/runs/%d/tta" % rid, {"n_aug": 1})
    assert r.status == 202, r
    j = wait_job(daemon, r.json()["id"])
    assert j["state"] == "failed" and '"gone"' in j["error"] and root in j["error"], j
    assert daemon.get(API + "/health").status == 200


def test_event_streams_have_their_own_cap(daemon, run):
    """Event streams hold their connections: one client past its share (8) gets a 429
    problem, and the rest of the API still answers (test_limits.py: the whole cap)."""
    streams = []
    try:
        for _ in range(8):
            s = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
            s.sendall(("GET %s/runs/%d/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                       % (API, run["id"])).encode())
            assert s.recv(64).startswith(b"HTTP/1.1 200"), "stream %d" % len(streams)
            streams.append(s)
        r = daemon.get(API + "/runs/%d/events" % run["id"])
        assert_problem(r, 429, code="REQUEST_LIMIT_EXCEEDED")
        assert r.headers.get("retry-after")
        assert daemon.get(API + "/health").status == 200
    finally:
        for s in streams:
            s.close()
    # the streams notice their clients gone within a second or two; later tests need room
    deadline = time.monotonic() + 10
    while daemon.get(API + "/health").json()["event_streams"] and time.monotonic() < deadline:
        time.sleep(0.2)
