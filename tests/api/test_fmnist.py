"""test_fmnist.py: issue 5's full flow on Fashion-MNIST through the API, on the real data
(60,000 training and 10,000 validation images from the idx files scripts/install-deps.sh
installs): register, create a resnet_small run, LR sweep, fit one cycle, TTA, predict PNGs
of test images, with every curve read back and the live events checked. A whole epoch on
two training threads: several minutes, so it is its own meson test (api_fmnist)."""
import gzip
import io
import os
import shutil
import tempfile

import pytest

from conftest import API, Daemon, assert_problem, wait_job
from sse_client import SSE

FMNIST = "/usr/share/datasets/fashion-mnist"
BS = 128


def fmnist_pngs(n):
    """The first n validation images as PNG bytes, with their labels (from the idx files
    themselves, not through the daemon)."""
    from PIL import Image
    with gzip.open(os.path.join(FMNIST, "t10k-images-idx3-ubyte.gz")) as f:
        raw = f.read(16 + 28 * 28 * n)
    with gzip.open(os.path.join(FMNIST, "t10k-labels-idx1-ubyte.gz")) as f:
        labels = list(f.read(8 + n)[8:])
    out = []
    for i in range(n):
        img = Image.frombytes("L", (28, 28), raw[16 + 784 * i:16 + 784 * (i + 1)])
        buf = io.BytesIO()
        img.save(buf, "PNG")
        out.append(buf.getvalue())
    return out, labels


@pytest.fixture(scope="module")
def fm(sgdrd_bin):
    assert os.path.isdir(FMNIST), "Fashion-MNIST is missing: run scripts/install-deps.sh"
    root = tempfile.mkdtemp(prefix="sgdrd-api-fm-")
    try:
        d = Daemon(root, extra_args=["--dataset-root", os.path.dirname(FMNIST),
                                     "--threads", "2"])
        r = d.post(API + "/datasets", {"name": "fmnist", "path": FMNIST, "format": "idx"})
        assert r.status == 201, r
        ds = r.json()
        r = d.post(API + "/runs", {"dataset": "fmnist", "arch": "resnet_small", "sz": 28,
                                   "bs": BS, "tfms": "none", "seed": 1})
        assert r.status == 201, r
        run = r.json()["id"]
        s = SSE(d, run, timeout=120)
        assert s.status == 200
        yield d, ds, run, s
        s.close()
        d.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_register(fm):
    d, ds, run, s = fm
    assert ds["format"] == "idx"
    info = ds["info"]
    assert info["counts"]["train"] == 60000 and info["counts"]["valid"] == 10000
    assert info["n_classes"] == 10 and info["channels"] == 1
    again = d.get(API + "/datasets/%d" % ds["id"])
    assert again.status == 200 and again.json()["id"] == ds["id"]


def test_lr_find(fm):
    d, ds, run, s = fm
    r = d.post(API + "/runs/%d/lr-find" % run, {"start_lr": 1e-5, "end_lr": 10, "num_it": 40})
    assert r.status == 202, r
    job = wait_job(d, r.json()["id"], 300, poll=0.5)
    assert job["state"] == "succeeded", job
    sweeps = d.get(API + "/runs/%d/lr-finds" % run).json()["items"]
    assert len(sweeps) == 1
    sw = d.get(API + "/lr-finds/%d" % sweeps[0]["id"]).json()
    pts = sw["points"]
    assert 10 <= len(pts) <= 40
    lrs = [p["lr"] for p in pts]
    assert lrs == sorted(lrs) and lrs[0] >= 1e-5 * 0.999
    # At 1e-5 the net barely moves; by the sweep's best point the smoothed loss has fallen.
    assert min(p["smooth_loss"] for p in pts) < pts[0]["smooth_loss"]
    assert {"min_div10", "steep", "valley", "slide"} <= set(sw["suggestions"])
    s.wait_for(lambda ev, c: sum(e["event"] == "sweep_point" for e in ev) >= len(pts),
               timeout=60)


def test_fit_one_cycle(fm):
    d, ds, run, s = fm
    r = d.post(API + "/runs/%d/fit" % run, {"lrs": 0.05, "n_cycle": 1, "cycle_len": 1})
    assert r.status == 202, r
    job = wait_job(d, r.json()["id"], 1500, poll=0.5)
    assert job["state"] == "succeeded", (job, d.log_text())
    epochs = d.get(API + "/runs/%d/epochs" % run).json()["items"]
    assert len(epochs) == 1
    e = epochs[0]
    # One epoch of resnet_small on Fashion-MNIST lands near 87-89%; 80% leaves room for
    # thread-count differences while still failing a net that did not learn.
    assert e["accuracy"] >= 0.80, e
    assert 0 < e["valid_loss"] < 0.6 and 0 < e["train_loss"] < 1.0, e
    steps, losses, after = [], [], -1
    while True:    # the whole curve, page by page
        page = d.get(API + "/runs/%d/metrics?key=train_loss&limit=200&after_step=%d"
                     % (run, after)).json()
        steps += [p["step"] for p in page["points"]]
        losses += [p["value"] for p in page["points"]]
        if page["next_after_step"] is None:
            break
        after = page["next_after_step"]
    assert len(steps) in (468, 469) and steps == sorted(steps) and len(set(steps)) == len(steps)
    assert sum(losses[-50:]) / 50 < 0.6 * sum(losses[:50]) / 50
    s.wait_for(lambda ev, c: any(x["event"] == "epoch" for x in ev), timeout=60)
    w = d.get(API + "/runs/%d/weights" % run)
    assert w.status == 200 and int.from_bytes(w.body[:8], "little") < len(w.body)


def test_tta_and_predict(fm):
    d, ds, run, s = fm
    r = d.post(API + "/runs/%d/tta" % run, {"n_aug": 2})
    assert r.status == 202, r
    job = wait_job(d, r.json()["id"], 600, poll=0.5)
    assert job["state"] == "succeeded", job
    res = job["result"]
    assert res["accuracy"] >= 0.80 and res["tta_accuracy"] >= 0.80, res
    classes = d.get(API + "/datasets/%d" % ds["id"]).json()["info"]["classes"]
    images, labels = fmnist_pngs(20)
    right = 0
    for i, (png, label) in enumerate(zip(images, labels)):
        r = d.post(API + "/runs/%d/predict?tta=%d" % (run, i % 2), png, ctype="image/png")
        assert r.status == 200, r
        p = r.json()
        assert p["classes"] == classes and abs(sum(p["probs"]) - 1) < 1e-3
        right += p["top"]["class"] == classes[label]
    assert right >= 14, "%d of 20 test images right" % right
    r = d.post(API + "/runs/%d/predict" % run, images[0][:40], ctype="image/png")
    assert_problem(r, 400)
