"""test_interp.py: a run's interpretation (confusion matrix, per-class metrics, confused
pairs, top losses) checked against the same numbers computed here in plain Python from the
probabilities POST /predict gives for each validation file; thumbnails by item index only;
the augmentation preview (and the shifts pad gives it); the interpretation survives a restart and is recomputed only when
the weights change."""
import io
import math
import os
import random
import shutil
import tempfile

import pytest
from PIL import Image

from conftest import API, Daemon, assert_problem, wait_job

CLASSES = {"a": (150, 70, 70), "b": (70, 150, 70), "c": (110, 110, 110)}


def make_dataset(root, per_class=24, size=32):
    """Three classes of noisy squares whose colours overlap, so a short fit errs."""
    rnd = random.Random(5)
    files = {}
    for split, n in (("train", per_class), ("valid", per_class // 2)):
        for cls, base in CLASSES.items():
            for i in range(n):
                col = tuple(max(0, min(255, c + rnd.randint(-45, 45))) for c in base)
                img = Image.new("RGB", (size, size), col)
                px = img.load()
                for _ in range(size * size // 4):
                    x, y = rnd.randrange(size), rnd.randrange(size)
                    px[x, y] = tuple(max(0, min(255, c + rnd.randint(-60, 60))) for c in col)
                path = os.path.join(root, split, cls, "%s_%d.png" % (cls, i))
                os.makedirs(os.path.dirname(path), exist_ok=True)
                img.save(path, "PNG")
                if split == "valid":
                    files[path] = cls
    return files


@pytest.fixture(scope="module")
def setup(sgdrd_bin):
    root = tempfile.mkdtemp(prefix="sgdrd-api-interp-")
    d = Daemon(root)
    state = {"root": root, "d": d}
    try:
        state["files"] = make_dataset(os.path.join(d.datasets, "interp"))
        r = d.post(API + "/datasets", {"name": "interp", "path": os.path.join(d.datasets,
                                                                             "interp"),
                                       "format": "folders"})
        assert r.status == 201, r
        # sz is the images' size: the validation loader and /predict then resample
        # nothing, so their probabilities agree to rounding.
        r = d.post(API + "/runs", {"dataset": "interp", "arch": "resnet_small", "sz": 32,
                                   "bs": 8, "tfms": "side_on", "max_zoom": 1.1, "seed": 3})
        assert r.status == 201, r
        state["run"] = r.json()["id"]
        yield state
    finally:
        state["d"].stop()
        shutil.rmtree(root, ignore_errors=True)


def fit(d, run, epochs=1):
    r = d.post(API + "/runs/%d/fit" % run, {"lrs": 0.01, "n_cycle": 1, "cycle_len": epochs})
    assert r.status == 202, r
    job = wait_job(d, r.json()["id"])
    assert job["state"] == "succeeded", (job, d.log_text())


def interp(d, run):
    r = d.get(API + "/runs/%d/interpretation" % run)
    assert r.status == 200, r
    return r.json()


def png_pixels(data):
    im = Image.open(io.BytesIO(data))
    return im.size, im.convert("RGB").tobytes()


def test_images_before_training(setup):
    d, run = setup["d"], setup["run"]
    assert_problem(d.get(API + "/runs/%d/interpretation" % run), 404)
    assert_problem(d.get(API + "/runs/%d/interpretation/top-losses" % run), 404)
    r = d.get(API + "/runs/%d/thumbnail?item=0" % run)
    assert r.status == 200 and r.ctype == "image/png", r
    assert png_pixels(r.body)[0] == (32, 32)
    n_valid = len(setup["files"])
    assert_problem(d.get(API + "/runs/%d/thumbnail?item=%d" % (run, n_valid)), 400, "item")
    assert_problem(d.get(API + "/runs/%d/thumbnail?item=-1" % run), 400, "item")
    assert_problem(d.get(API + "/runs/%d/thumbnail" % run), 400, "item")
    # there is no way to name a file
    r = d.get(API + "/runs/%d/thumbnail?item=0&path=/etc/passwd" % run)
    assert_problem(r, 400)
    assert_problem(d.get(API + "/runs/%d/thumbnail?item=../../etc/passwd" % run), 400, "item")
    assert_problem(d.get(API + "/runs/424242/thumbnail?item=0"), 404)
    r = d.get(API + "/runs/%d/thumbnail?item=1&size=16" % run)
    assert r.status == 200 and png_pixels(r.body)[0] == (16, 16)

    r = d.get(API + "/runs/%d/augmentations?item=2&n=5&seed=9" % run)
    assert r.status == 200 and r.ctype == "image/png", r
    size, px = png_pixels(r.body)
    assert size == (5 * 32, 32)
    again = d.get(API + "/runs/%d/augmentations?item=2&n=5&seed=9" % run)
    assert again.body == r.body
    other = d.get(API + "/runs/%d/augmentations?item=2&n=5&seed=10" % run)
    assert other.status == 200 and other.body != r.body
    assert_problem(d.get(API + "/runs/%d/augmentations?n=0" % run), 400, "n")
    assert_problem(d.get(API + "/runs/%d/augmentations?n=33" % run), 400, "n")
    assert_problem(d.get(API + "/runs/%d/augmentations?item=100000" % run), 400, "item")


def tiles(d, run, n=6):
    r = d.get(API + "/runs/%d/augmentations?item=1&n=%d&seed=4" % (run, n))
    assert r.status == 200, r
    (w, h), px = png_pixels(r.body)
    assert (w, h) == (n * 32, 32)
    return [[[px[(y * w + t * 32 + x) * 3:(y * w + t * 32 + x) * 3 + 3] for x in range(32)]
             for y in range(32)] for t in range(n)]


def reflect(i, n):
    return -i - 1 if i < 0 else 2 * n - 1 - i if i >= n else i


def test_pad_shifts_the_preview(setup):
    """pad reaches the training transforms through the run's config: with no other
    augmentation every preview tile is the image itself shifted by at most pad pixels,
    with its border reflected (fast.ai's AddPadding and RandomCrop); without pad every tile
    is the image."""
    d = setup["d"]
    runs = {}
    for pad in (0, 4):
        r = d.post(API + "/runs", {"dataset": "interp", "arch": "resnet_small", "sz": 32,
                                   "bs": 8, "tfms": "none", "max_zoom": 1, "pad": pad})
        assert r.status == 201 and r.json()["config"]["pad"] == pad, r
        runs[pad] = r.json()["id"]
    plain = tiles(d, runs[0])
    assert all(t == plain[0] for t in plain)
    image, shifts = plain[0], set()
    for t in tiles(d, runs[4]):
        found = [(dx, dy) for dx in range(-4, 5) for dy in range(-4, 5)
                 if all(t[y][x] == image[reflect(y + dy, 32)][reflect(x + dx, 32)]
                        for y in range(32) for x in range(32))]
        assert found, "a tile is not a reflected shift of the image by at most 4 pixels"
        shifts.add(found[0])
    assert len(shifts) > 1, shifts
    for run in runs.values():
        assert d.request("DELETE", API + "/runs/%d" % run).status == 204


def item_files(d, run, files):
    """Validation item index -> (file, class), matched by the thumbnail's pixels."""
    by_px = {}
    for path in files:
        with open(path, "rb") as f:
            by_px[png_pixels(f.read())[1]] = path
    out = {}
    for i in range(len(files)):
        r = d.get(API + "/runs/%d/thumbnail?item=%d&size=512" % (run, i))
        assert r.status == 200, r
        path = by_px[png_pixels(r.body)[1]]
        out[i] = (path, files[path])
    assert len({p for p, _ in out.values()}) == len(files)
    return out


def expected(d, run, items, classes):
    """The interpretation computed here from /predict's probabilities of each file."""
    nc = len(classes)
    cm = [[0] * nc for _ in range(nc)]
    losses = {}
    for i, (path, cls) in items.items():
        with open(path, "rb") as f:
            r = d.post(API + "/runs/%d/predict" % run, f.read(), ctype="image/png")
        assert r.status == 200, r
        p = r.json()["probs"]
        a, pred = classes.index(cls), max(range(nc), key=lambda c: (p[c], -c))
        cm[a][pred] += 1
        losses[i] = (-math.log(max(p[a], 1e-12)), a, pred, p[a], p[pred])
    return cm, losses


def test_interpretation_matches_an_independent_computation(setup):
    d, run = setup["d"], setup["run"]
    fit(d, run)
    got = interp(d, run)
    s = got["summary"]
    classes = s["classes"]
    assert classes == sorted(CLASSES)
    items = item_files(d, run, setup["files"])
    cm, losses = expected(d, run, items, classes)
    n = len(items)
    assert s["n"] == n and not s["multi_label"]
    assert s["confusion"] == cm
    assert s["accuracy"] == pytest.approx(sum(cm[c][c] for c in range(3)) / n, abs=1e-6)
    assert s["loss"] == pytest.approx(sum(v[0] for v in losses.values()) / n, rel=1e-3,
                                      abs=1e-4)
    for c, row in enumerate(s["per_class"]):
        tp, pred, sup = cm[c][c], sum(cm[a][c] for a in range(3)), sum(cm[c])
        tn = n - sup - pred + tp
        assert row["class"] == classes[c] and row["support"] == sup and row["tp"] == tp
        assert row["precision"] == pytest.approx(tp / pred if pred else 0.0, abs=1e-6)
        assert row["recall"] == pytest.approx(tp / sup if sup else 0.0, abs=1e-6)
        assert row["accuracy"] == pytest.approx((tp + tn) / n, abs=1e-6)
    pairs = sorted(((cm[a][p], a, p) for a in range(3) for p in range(3)
                    if a != p and cm[a][p]), key=lambda x: (-x[0], x[1], x[2]))
    assert [(x["count"], x["actual"], x["predicted"]) for x in s["most_confused"]] == pairs

    # top losses: every item once, highest loss first, each as computed here
    seen = []
    token = None
    while True:
        q = "?limit=7" + ("&page_token=" + token if token else "")
        page = d.get(API + "/runs/%d/interpretation/top-losses%s" % (run, q)).json()
        assert page["total"] == n
        seen += page["items"]
        token = page.get("next_page_token")
        if not token:
            break
    assert [x["item"] for x in seen] and sorted(x["item"] for x in seen) == list(range(n))
    for k, x in enumerate(seen):
        loss, a, pred, pa, pp = losses[x["item"]]
        assert x["loss"] == pytest.approx(loss, rel=1e-3, abs=1e-4), x
        assert (x["actual"], x["predicted"]) == (a, pred)
        assert x["actual_class"] == classes[a] and x["predicted_class"] == classes[pred]
        assert x["p_actual"] == pytest.approx(pa, abs=1e-4)
        assert x["p_predicted"] == pytest.approx(pp, abs=1e-4)
        assert x["thumbnail"] == API + "/runs/%d/thumbnail?item=%d" % (run, x["item"])
        if k:
            assert seen[k - 1]["loss"] >= x["loss"]
    # one cell of the matrix
    for a in range(3):
        for p in range(3):
            page = d.get(API + "/runs/%d/interpretation/top-losses?actual=%d&predicted=%d"
                         % (run, a, p)).json()
            assert page["total"] == cm[a][p]
            assert all(x["actual"] == a and x["predicted"] == p for x in page["items"])
    url = API + "/runs/%d/interpretation/top-losses" % run
    assert_problem(d.get(url + "?actual=3"), 400, "actual")
    assert_problem(d.get(url + "?predicted=x"), 400, "predicted")
    assert_problem(d.get(url + "?limit=0"), 400, "limit")
    assert_problem(d.get(url + "?page_token=zz"), 400, "page_token")


def test_kept_until_the_weights_change_and_across_a_restart(setup):
    d, run = setup["d"], setup["run"]
    first = interp(d, run)
    r = d.post(API + "/runs/%d/tta" % run, {"n_aug": 1})
    assert r.status == 202
    assert wait_job(d, r.json()["id"])["state"] == "succeeded"
    assert interp(d, run) == first  # same weights: not computed again

    d.stop()
    setup["d"] = d = Daemon(setup["root"])
    assert interp(d, run) == first

    fit(d, run)
    second = interp(d, run)
    assert second["weights"] != first["weights"]
    assert second["created_at"] > first["created_at"]
    assert second["job"] != first["job"]


def test_multi_label_per_class_at_the_threshold(setup):
    """A multi-label run: per-class precision / recall / F2 at the threshold, from
    /predict's probabilities of each validation file; no confusion matrix to filter by."""
    d = setup["d"]
    root = os.path.join(d.datasets, "multi")
    rnd = random.Random(11)
    tags = {}
    rows = ["file,tags"]
    for i in range(48):
        red, blue = i % 3 != 1, i % 3 != 0
        col = (200 if red else 40, 40, 200 if blue else 40)
        img = Image.new("RGB", (32, 32), col)
        px = img.load()
        for _ in range(256):
            x, y = rnd.randrange(32), rnd.randrange(32)
            px[x, y] = tuple(max(0, min(255, c + rnd.randint(-60, 60))) for c in col)
        os.makedirs(os.path.join(root, "train"), exist_ok=True)
        img.save(os.path.join(root, "train", "m%d.png" % i), "PNG")
        t = [n for n, on in (("blue", blue), ("red", red)) if on]
        tags[os.path.join(root, "train", "m%d.png" % i)] = t
        rows.append("m%d.png,%s" % (i, " ".join(t)))
    with open(os.path.join(root, "labels.csv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    r = d.post(API + "/datasets", {"name": "multi", "path": root, "format": "csv",
                                   "valid_pct": 0.25, "seed": 1})
    assert r.status == 201, r
    r = d.post(API + "/runs", {"dataset": "multi", "arch": "resnet_small", "sz": 32, "bs": 8,
                               "tfms": "none", "seed": 2})
    assert r.status == 201, r
    run = r.json()["id"]
    fit(d, run)
    s = interp(d, run)["summary"]
    assert s["multi_label"] and s["confusion"] is None and s["most_confused"] == []
    assert s["threshold"] == pytest.approx(0.2)
    classes = s["classes"]
    assert classes == ["blue", "red"]
    by_px = {}
    for path in tags:
        with open(path, "rb") as f:
            by_px[png_pixels(f.read())[1]] = path
    tp, pred, sup = [0, 0], [0, 0], [0, 0]
    for i in range(s["n"]):
        r = d.get(API + "/runs/%d/thumbnail?item=%d&size=512" % (run, i))
        path = by_px[png_pixels(r.body)[1]]
        with open(path, "rb") as f:
            p = d.post(API + "/runs/%d/predict" % run, f.read(), ctype="image/png").json()["probs"]
        for c, name in enumerate(classes):
            truth, guess = name in tags[path], p[c] > 0.2
            sup[c] += truth
            pred[c] += guess
            tp[c] += truth and guess
    for c, row in enumerate(s["per_class"]):
        assert (row["support"], row["predicted"], row["tp"]) == (sup[c], pred[c], tp[c])
        pr = tp[c] / pred[c] if pred[c] else 0.0
        rc = tp[c] / sup[c] if sup[c] else 0.0
        assert row["precision"] == pytest.approx(pr, abs=1e-6)
        assert row["recall"] == pytest.approx(rc, abs=1e-6)
        assert row["f2"] == pytest.approx(5 * pr * rc / (4 * pr + rc) if pr + rc else 0.0,
                                          abs=1e-6)
    url = API + "/runs/%d/interpretation/top-losses" % run
    page = d.get(url).json()
    assert page["total"] == s["n"] and "actual" not in page["items"][0]
    assert_problem(d.get(url + "?actual=0"), 400, "actual")
