"""test_worker.py: sgdrd-worker under mpirun on a small Fashion-MNIST subset (1024
training, 256 validation images, written here in IDX format): a fit on 1 and on 2 ranks
ends with a done event and accuracies within a few points of each other (the worlds
differ only in rounding, which training amplifies); an LR sweep on 2 ranks reports its
points and suggestions; killing one rank mid-fit makes the world fail within the
timeout, and the fit resumes from its epoch checkpoint on a different number of ranks
(1) to the same end. A bad spec fails with an error event naming the problem.

usage: /usr/bin/python3 test_worker.py SGDRD_WORKER_EXE
"""
import gzip
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from mpirun import ENV, mpirun  # noqa: E402

FMNIST = "/usr/share/datasets/fashion-mnist"
N_TRAIN, N_VALID = 1024, 256
# A world that lost a rank must be gone within this many seconds.
FAIL_WITHIN_S = 60


def write_subset(root):
    def sub(name, n, image):
        with gzip.open(os.path.join(FMNIST, name + ".gz")) as f:
            d = f.read()
        hdr = struct.pack(">IIII", 0x803, n, 28, 28) if image else struct.pack(">II", 0x801, n)
        body = d[16:16 + n * 784] if image else d[8:8 + n]
        with open(os.path.join(root, name), "wb") as f:
            f.write(hdr + body)
    sub("train-images-idx3-ubyte", N_TRAIN, True)
    sub("train-labels-idx1-ubyte", N_TRAIN, False)
    sub("t10k-images-idx3-ubyte", N_VALID, True)
    sub("t10k-labels-idx1-ubyte", N_VALID, False)


def spec(tmp, ds, kind, params, name, **extra):
    s = {"dataset": {"path": ds, "format": "idx"},
         "learner": {"arch": "resnet_small", "sz": 28, "bs": 32, "tfms": "none",
                     "max_zoom": 1.0, "seed": 3, "loader_threads": 1},
         "job": {"kind": kind, "params": params}}
    s.update(extra)
    path = os.path.join(tmp, name + ".json")
    with open(path, "w") as f:
        json.dump(s, f)
    return path


def events(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    return bool(cond)


def fit_accuracy(exe, np_, path):
    p = mpirun(np_, [exe, path])
    ev = events(p.stdout)
    done = [e for e in ev if e["ev"] == "done"]
    epochs = [e for e in ev if e["ev"] == "epoch"]
    if p.returncode != 0 or not done or not epochs:
        print(p.stdout[-2000:], p.stderr[-2000:])
        return None, ev
    return epochs[-1]["accuracy"], ev


def kill_mid_fit(exe, path):
    """Starts a 2-rank fit, kills rank 1 after the first epoch; (exit code, seconds)."""
    cmd = ["mpirun", "-np", "2", "--bind-to", "none", exe, path]
    p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    pid = None
    for line in p.stdout:
        if not line.startswith("{"):
            continue
        e = json.loads(line)
        if e["ev"] == "world" and e["steps"] > 0:
            pid = e["ranks"][1]["pid"]
            break
    if pid is None:
        p.kill()
        return None, 0.0
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    try:
        p.communicate(timeout=FAIL_WITHIN_S)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        return "hung", time.monotonic() - t0
    return p.returncode, time.monotonic() - t0


def main():
    exe = sys.argv[1]
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        ds = os.path.join(tmp, "fmnist")
        os.mkdir(ds)
        write_subset(ds)
        fit = {"lrs": 0.05, "n_cycle": 1, "cycle_len": 2}
        a1, _ = fit_accuracy(exe, 1, spec(tmp, ds, "fit", fit, "fit1"))
        a2, ev2 = fit_accuracy(exe, 2, spec(tmp, ds, "fit", fit, "fit2"))
        ok &= check(a1 is not None and a2 is not None, f"fit on 1 and 2 ranks: {a1} {a2}")
        if a1 is not None and a2 is not None:
            ok &= check(a1 > 0.5 and a2 > 0.5, "both learn (accuracy above 0.5)")
            ok &= check(abs(a1 - a2) <= 0.08, f"accuracies within 0.08: {abs(a1 - a2):.3f}")
        world = [e for e in ev2 if e["ev"] == "world"]
        ok &= check(world and world[-1]["size"] == 2 and len(world[-1]["ranks"]) == 2
                    and world[-1]["allreduce_bytes"] > 0,
                    "the world event lists 2 ranks and the bytes summed")

        p = mpirun(2, [exe, spec(tmp, ds, "lr_find", {"num_it": 12}, "sweep")])
        ev = events(p.stdout)
        pts = [e for e in ev if e["ev"] == "sweep_point"]
        done = [e for e in ev if e["ev"] == "done"]
        ok &= check(p.returncode == 0 and len(pts) >= 5 and done
                    and "suggestions" in done[0]["result"],
                    f"LR sweep on 2 ranks: {len(pts)} points, suggestions")

        ck = os.path.join(tmp, "ckpt")
        os.mkdir(ck)
        long_fit = {"lrs": 0.05, "n_cycle": 1, "cycle_len": 3}
        path = spec(tmp, ds, "fit", long_fit, "fault", checkpoint_dir=ck)
        rc, secs = kill_mid_fit(exe, path)
        ok &= check(rc not in (None, 0, "hung"),
                    f"killing rank 1 fails the world (exit {rc} after {secs:.1f} s)")
        resumed = spec(tmp, ds, "fit", long_fit, "resume", checkpoint_dir=ck,
                       job={"kind": "fit", "params": long_fit, "resume": True})
        p = mpirun(1, [exe, resumed])
        ev = events(p.stdout)
        done = [e for e in ev if e["ev"] == "done"]
        first = [e["epoch"] for e in ev if e["ev"] == "epoch"]
        ok &= check(p.returncode == 0 and done and done[0]["state"]["epochs_done"] >= 1
                    and first and first[0] >= 1,
                    f"resumed on 1 rank from the checkpoint: epochs {first}")

        bad = spec(tmp, ds, "fit", {"lrs": "fast"}, "bad")
        p = mpirun(2, [exe, bad])
        err = [e for e in events(p.stdout) if e["ev"] == "error"]
        ok &= check(p.returncode == 1 and err and "lrs" in err[0]["message"],
                    f"a bad spec fails with a reason: {err[0]['message'] if err else None}")
    print("worker ok" if ok else "worker FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
