"""test_dataset_sync.py: an uploaded dataset is sent to the ranks that lack it; one registered
by path must already be on every host. Two ranks on one machine stand in for two hosts: rank
1 runs in a mount namespace of its own (root needed) where the data dir's datasets folder is
an empty tmpfs, as on a host that never saw the upload. The spec is the one the daemon
writes (an uploaded dataset is marked "uploaded").

- uploaded, absent on rank 1: the fit runs and its every batch loss and epoch figure is the
  same, bit for bit, as the same world's with the folder present on both ranks (the same
  files, so the same computation), and rank 1's datasets folder then holds the dataset,
  complete and identical to rank 0's, and nothing else (no temporary folder left);
- registered by path, absent on rank 1: the world stops before training with an error
  naming rank 1, its host and the path, and rank 1's folder stays empty;
- uploaded, absent on rank 0 too: an error naming rank 0 and the path;
- uploaded, with a link in rank 0's folder: rank 0 refuses to send it, naming the link.

usage: /usr/bin/python3 test_dataset_sync.py SGDRD_WORKER_EXE
"""
import filecmp
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from mpirun import ENV  # noqa: E402
from test_worker import check, events, spec, write_subset  # noqa: E402

PARAMS = {"lrs": 0.05, "n_cycle": 1, "cycle_len": 1}
# Rank 1: an empty tmpfs over the datasets folder ($1), the worker ($2 $3), then a copy of
# what the folder holds afterwards into $4, which outlives the namespace.
RANK1 = ('mount -t tmpfs none "$1" || exit 3; "$2" "$3"; rc=$?; '
         'cp -a "$1/." "$4" || exit 4; exit $rc')


def run_world(exe, path, datasets=None, seen=None):
    """2 ranks on the spec at path; with datasets, rank 1 sees it empty and leaves what it
    holds at the end in seen."""
    rank1 = [exe, path]
    if datasets:
        os.makedirs(seen)
        rank1 = ["unshare", "-m", "sh", "-c", RANK1, "sh", datasets, exe, path, seen]
    cmd = ["mpirun", "--bind-to", "none", "-np", "1", exe, path, ":", "-np", "1", *rank1]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)


def same_tree(a, b):
    c = filecmp.dircmp(a, b)
    if c.left_only or c.right_only or c.funny_files or c.common_funny:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, c.common_files, shallow=False)
    return not mismatch and not errors and all(
        same_tree(os.path.join(a, d), os.path.join(b, d)) for d in c.common_dirs)


def figures(ev):
    """What a fit computed: every batch's loss, every epoch's losses and accuracy."""
    return ([e["loss"] for e in ev if e["ev"] == "batch"],
            [(e["train_loss"], e["valid_loss"], e["accuracy"]) for e in ev if e["ev"] == "epoch"])


def refused(p, who, words, label):
    ev = events(p.stdout)
    err = [e for e in ev if e["ev"] == "error"]
    trained = [e["ev"] for e in ev if e["ev"] in ("batch", "epoch", "done")]
    msg = err[0]["message"] if err else ""
    ok = check(p.returncode != 0 and err and not trained,
               f"{label}: the world stops before training (exit {p.returncode}, events "
               f"{sorted(set(trained))})")
    ok &= check(err and err[0].get("stage") == "dataset" and msg.startswith(f"{who} on ")
                and all(w in msg for w in words), f"{label}: the error says why: {msg}")
    if not ok:
        print(p.stdout[-3000:], p.stderr[-3000:])
    return ok


def uploaded_spec(tmp, ds, name):
    """A one-epoch fit's spec on ds, marked uploaded as the daemon marks it."""
    path = spec(tmp, ds, "fit", PARAMS, name)
    with open(path) as f:
        s = json.load(f)
    s["dataset"]["uploaded"] = True
    with open(path, "w") as f:
        json.dump(s, f)
    return path


def check_sync(exe, tmp, datasets, ds):
    path = uploaded_spec(tmp, ds, "uploaded")
    both = run_world(exe, path)
    seen = os.path.join(tmp, "seen-uploaded")
    sent = run_world(exe, path, datasets, seen)
    ok = check(both.returncode == 0 and sent.returncode == 0,
               f"the fit runs with and without rank 1's copy (exit {both.returncode}, "
               f"{sent.returncode})")
    if not ok:
        print(both.stdout[-2000:], both.stderr[-2000:], sent.stdout[-3000:], sent.stderr[-3000:])
        return False
    a, b = figures(events(both.stdout)), figures(events(sent.stdout))
    ok &= check(a[0] and a[1] and a == b,
                f"the same losses and accuracy, bit for bit ({len(a[0])} batches, "
                f"epochs {a[1]} and {b[1]})")
    ok &= check(os.listdir(seen) == ["fmnist"] and same_tree(ds, os.path.join(seen, "fmnist")),
                f"rank 1's datasets folder holds the complete dataset and nothing else: "
                f"{sorted(os.listdir(seen))}")
    ok &= check("sending the dataset " + ds in sent.stderr, "rank 0 says what it sends")
    return ok


def check_refusals(exe, tmp, datasets, ds):
    host = socket.gethostname()
    path = spec(tmp, ds, "fit", PARAMS, "by-path")
    seen = os.path.join(tmp, "seen-by-path")
    p = run_world(exe, path, datasets, seen)
    ok = refused(p, "rank 1", [ds, "registered by path", "absent"], "registered by path")
    ok &= check(host in p.stdout and os.listdir(seen) == [],
                f"the error names the host and rank 1's folder stays empty: "
                f"{os.listdir(seen)}")

    missing = os.path.join(datasets, "missing")
    path = uploaded_spec(tmp, missing, "missing")
    ok &= refused(run_world(exe, path), "rank 0", [missing, "absent"], "absent on rank 0")

    linked = os.path.join(datasets, "linked")
    shutil.copytree(ds, linked)
    os.symlink("train-labels-idx1-ubyte", os.path.join(linked, "labels-link"))
    path = uploaded_spec(tmp, linked, "linked")
    p = run_world(exe, path, datasets, os.path.join(tmp, "seen-linked"))
    ok &= refused(p, "rank 0", [os.path.join(linked, "labels-link"), "link"], "a link")
    return ok


def main():
    exe = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        datasets = os.path.join(tmp, "data", "datasets")
        ds = os.path.join(datasets, "fmnist")
        os.makedirs(ds)
        write_subset(ds)
        ok = check_sync(exe, tmp, datasets, ds)
        ok &= check_refusals(exe, tmp, datasets, ds)
    print("dataset_sync ok" if ok else "dataset_sync FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
