"""test_dataset_confinement.py: registering a dataset reads nothing outside --dataset-root
(the csv field, csv rows, symlinks) and never blocks on a FIFO; whatever a scan leaves out
is listed among the dataset's unreadable files with the reason."""
import os

from conftest import API, assert_problem, make_image_dataset, make_png, png_bytes, wait_job
from test_http import counts, tar_bytes, dataset_members


def unreadable(ds):
    return {u["file"]: u["reason"] for u in ds["info"]["unreadable"]}


def outside_class(daemon):
    """A class folder of one image next to the dataset root, not under it."""
    d = os.path.join(daemon.root, "outside", "secretclass")
    make_png(os.path.join(d, "s0.png"), 32, 32, (0, 200, 0))
    return d


def test_fifo_is_listed_and_training_proceeds(daemon):
    root = make_image_dataset(os.path.join(daemon.datasets, "fifo"), per_class=6)
    os.mkfifo(os.path.join(root, "train", "red", "fifo.png"))
    r = daemon.post(API + "/datasets", {"name": "fifo", "path": root, "format": "folders"})
    assert r.status == 201, r
    assert "not a regular file" in unreadable(r.json())["train/red/fifo.png"]
    assert r.json()["info"]["counts"]["train"] == 12
    r = daemon.post(API + "/runs", {"dataset": "fifo", "arch": "resnet_small", "sz": 28,
                                    "bs": 4})
    assert r.status == 201, r
    r = daemon.post(API + "/runs/%d/fit" % r.json()["id"],
                    {"lrs": 0.01, "n_cycle": 1, "cycle_len": 1})
    assert r.status == 202, r
    assert wait_job(daemon, r.json()["id"], timeout=120)["state"] == "succeeded"


def test_csv_field_stays_in_the_dataset(daemon):
    root = make_image_dataset(os.path.join(daemon.datasets, "csvfield"), per_class=3)
    with open(os.path.join(root, "labels.csv"), "w") as f:
        f.write("file,label\nred/red_0.png,red\nblue/blue_0.png,blue\n")
    before = counts(daemon)
    for csv in ("../../../../../../etc/passwd", "/etc/passwd", "../../colors/x.csv"):
        r = daemon.post(API + "/datasets", {"name": "csvfield", "path": root,
                                            "format": "csv", "csv": csv})
        assert_problem(r, 400, field="csv")
        assert "root:" not in r.json()["detail"]
    r = daemon.post(API + "/datasets?name=up_csv&format=csv&csv=../../../../etc/passwd",
                    tar_bytes(dataset_members()), ctype="application/x-tar")
    assert_problem(r, 400, field="csv")
    assert "root:" not in r.json()["detail"]
    assert counts(daemon) == before
    r = daemon.post(API + "/datasets", {"name": "csvfield", "path": root, "format": "csv",
                                        "csv": "labels.csv"})
    assert r.status == 201, r


def test_csv_rows_stay_in_the_dataset(daemon):
    outside_class(daemon)
    root = make_image_dataset(os.path.join(daemon.datasets, "csvrows"), per_class=3)
    with open(os.path.join(root, "labels.csv"), "w") as f:
        f.write("file,label\nred/red_0.png,red\nred/red_1.png,red\nblue/blue_0.png,blue\n"
                "blue/blue_1.png,blue\n../../../outside/secretclass/s0.png,secret\n")
    r = daemon.post(API + "/datasets", {"name": "csvrows", "path": root, "format": "csv",
                                        "valid_pct": 0.25})
    assert r.status == 201, r
    info = r.json()["info"]
    assert info["counts"]["train"] + info["counts"]["valid"] == 4
    bad = unreadable(r.json())
    assert "outside the dataset root" in bad["train/../../../outside/secretclass/s0.png"]


def test_symlinks_out_of_the_root_are_refused(daemon):
    secret = outside_class(daemon)
    root = make_image_dataset(os.path.join(daemon.datasets, "links"), per_class=6)
    train = os.path.join(root, "train")
    os.symlink(secret, os.path.join(train, "secret"))
    os.symlink(os.path.join(secret, "s0.png"), os.path.join(train, "red", "leak.png"))
    os.symlink("loop.png", os.path.join(train, "red", "loop.png"))
    os.symlink("gone.png", os.path.join(train, "red", "dangling.png"))
    # a link that stays inside the root keeps working
    os.symlink("red_0.png", os.path.join(train, "red", "again.png"))
    r = daemon.post(API + "/datasets", {"name": "links", "path": root, "format": "folders"})
    assert r.status == 201, r
    info = r.json()["info"]
    assert info["classes"] == ["blue", "red"]
    assert info["counts"]["train"] == 13
    bad = unreadable(r.json())
    assert "outside the dataset root" in bad["train/secret"]
    assert "outside the dataset root" in bad["train/red/leak.png"]
    assert "symbolic link" in bad["train/red/loop.png"]
    assert "dangling" in bad["train/red/dangling.png"]
    assert info["n_unreadable"] == 4


def test_names_that_are_not_utf8(daemon):
    """File and folder names are bytes: the ones that are not UTF-8 reach every answer with
    U+FFFD in place of each bad byte, instead of vanishing from it."""
    root = make_image_dataset(os.path.join(daemon.datasets, "bytes"), per_class=6)
    for split, n in (("train", 6), ("valid", 2)):
        for i in range(n):
            make_png(os.fsdecode(os.path.join(root, split).encode() + b"/r\xffd/%d.png" % i),
                     32, 32, (40, 200, 40), noise_seed=i)
    bad = os.fsdecode(os.path.join(root, "train", "red").encode() + b"/bad\xfe.png")
    with open(bad, "wb") as f:
        f.write(b"not an image")
    r = daemon.post(API + "/datasets", {"name": "bytes", "path": root, "format": "folders"})
    assert r.status == 201, r
    for info in (r.json()["info"], daemon.get(API + "/datasets/%d" % r.json()["id"]).json()["info"]):
        assert info["classes"] == ["blue", "red", "r\ufffdd"]
        assert info["n_classes"] == 3
        assert list(unreadable({"info": info})) == ["train/red/bad\ufffd.png"]
        assert info["n_unreadable"] == 1

    r = daemon.post(API + "/runs", {"dataset": "bytes", "arch": "resnet_small", "sz": 28,
                                    "bs": 4})
    assert r.status == 201, r
    rid = r.json()["id"]
    r = daemon.post(API + "/runs/%d/fit" % rid, {"lrs": 0.01, "n_cycle": 1, "cycle_len": 1})
    assert r.status == 202, r
    assert wait_job(daemon, r.json()["id"], timeout=120)["state"] == "succeeded"
    r = daemon.post(API + "/runs/%d/predict" % rid, png_bytes(), ctype="image/png")
    assert r.status == 200, r
    assert r.json()["classes"] == ["blue", "red", "r\ufffdd"]
    assert len(r.json()["probs"]) == 3
