"""test_dataset_hash.py: a dataset registered by path must be the same on every host. Two
ranks on one machine stand in for two hosts whose copies differ: rank 1 runs in a mount
namespace of its own (root needed, as for the netns test) where the dataset's path shows a
copy with one training label changed, as another host's stale copy would. The same spec
on both ranks, as the daemon writes it: the world must refuse the job before training
(no batch, epoch or done event) with an error event naming the dataset's path and rank 1;
the same world with both ranks on the same files runs.

usage: /usr/bin/python3 test_dataset_hash.py SGDRD_WORKER_EXE
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from mpirun import ENV  # noqa: E402
from test_worker import check, events, spec, write_subset  # noqa: E402

LABELS = "train-labels-idx1-ubyte"


def run_world(exe, path, ds=None, other=None):
    """2 ranks on path; with other, rank 1 sees other's files at ds."""
    rank1 = [exe, path]
    if other:
        rank1 = ["unshare", "-m", "sh", "-c",
                 'mount --bind "$1" "$2" && exec "$3" "$4"', "sh", other, ds, exe, path]
    cmd = ["mpirun", "--bind-to", "none", "-np", "1", exe, path, ":", "-np", "1", *rank1]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)


def main():
    exe = sys.argv[1]
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        ds = os.path.join(tmp, "fmnist")
        os.mkdir(ds)
        write_subset(ds)
        other = os.path.join(tmp, "stale")
        shutil.copytree(ds, other)
        with open(os.path.join(other, LABELS), "r+b") as f:
            f.seek(8)                                     # the first label
            first = f.read(1)[0]
            f.seek(8)
            f.write(bytes([(first + 1) % 10]))
        path = spec(tmp, ds, "fit", {"lrs": 0.05, "n_cycle": 1, "cycle_len": 1}, "fit")

        p = run_world(exe, path, ds, other)
        ev = events(p.stdout)
        err = [e for e in ev if e["ev"] == "error"]
        trained = [e["ev"] for e in ev if e["ev"] in ("batch", "epoch", "done")]
        msg = err[0]["message"] if err else ""
        ok &= check(p.returncode != 0 and err and not trained,
                    f"a rank with a different copy stops the world before training "
                    f"(exit {p.returncode}, events {sorted(set(trained))})")
        ok &= check(err and err[0].get("stage") == "dataset" and ds in msg
                    and msg.startswith("rank 1 "),
                    f"the error names rank 1 and the dataset: {msg}")
        if not ok:
            print(p.stdout[-3000:], p.stderr[-3000:])

        p = run_world(exe, path)
        ev = events(p.stdout)
        ok &= check(p.returncode == 0 and any(e["ev"] == "done" for e in ev),
                    f"the same world on the same files runs (exit {p.returncode})")
        if p.returncode:
            print(p.stdout[-3000:], p.stderr[-3000:])
    print("dataset_hash ok" if ok else "dataset_hash FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
