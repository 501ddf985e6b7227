"""test_fail_fast.py: a rank whose job fails takes the world down at once, through the real
daemon (--max-workers 2, --worker-timeout far above the bound checked here). The dataset's
training split has 2000 images, 100 of which have a PNG header that reads and pixels that do
not decode; the daemon's registration and the ranks' statistics sample (every other file)
do not open them, so they fail only when a rank's loader reaches one, within the first few
batches. With a global batch of 2 on 2 workers each shard is one image: one rank's whole
shard fails while the other rank waits in the batch's sums. The 2-worker fit must fail
within seconds, not at the timeout, with that rank's reason (the file named) in the job
row and the daemon's log; the daemon keeps serving and runs the next job (an LR sweep in
the daemon, where one process leaves the images out of their batches and goes on).

usage: /usr/bin/python3 test_fail_fast.py SGDRD_BIN
"""
import os
import re
import sys
import time

os.environ["SGDRD_BIN"] = os.path.abspath(sys.argv[1])
sys.path.insert(0, os.path.dirname(__file__))
from daemon_world import API, check, daemon_world, verdict, wait_job  # noqa: E402
from conftest import make_png  # noqa: E402

# Far above FAIL_WITHIN_S: a world that only fails at the timeout fails this test. The
# bound covers mpirun's start, the ranks' dataset scan and the few batches before the first
# bad image, on a loaded machine.
WORKER_TIMEOUT_S = 300
FAIL_WITHIN_S = 60
PER_CLASS = 1000
# Odd indices (the statistics sample takes the even ones), one in ten of them, per class.
BAD = [i for i in range(1, PER_CLASS, 20)]


def corrupt(path):
    with open(path, "rb") as f:
        data = bytearray(f.read())
    # Every chunk stays in place (the size probe walks them up to IDAT); the pixels' zlib
    # stream inside IDAT becomes garbage, which only a full decode finds.
    at = data.index(b"IDAT") + 4
    n = int.from_bytes(data[at - 8:at - 4], "big")
    data[at:at + n] = b"\xff" * n
    with open(path, "wb") as f:
        f.write(bytes(data))


def write_dataset(root):
    colors = {"blue": (40, 40, 200), "red": (200, 40, 40)}
    for cls, color in colors.items():
        for i in range(PER_CLASS):
            make_png(os.path.join(root, "train", cls, "%04d.png" % i), 16, 16, color,
                     noise_seed=i)
        for i in range(2):
            make_png(os.path.join(root, "valid", cls, "%04d.png" % i), 16, 16, color,
                     noise_seed=5000 + i)
        for i in BAD:
            corrupt(os.path.join(root, "train", cls, "%04d.png" % i))


def main():
    ok = True
    with daemon_world("sgdrd-failfast-", ["--worker-timeout", str(WORKER_TIMEOUT_S)]) as d:
        ds = os.path.join(d.datasets, "bad")
        write_dataset(ds)
        r = d.post(API + "/datasets", {"name": "bad", "path": ds, "format": "folders"})
        assert r.status == 201, r
        r = d.post(API + "/runs", {"dataset": "bad", "arch": "resnet_small", "sz": 16,
                                   "bs": 2, "tfms": "none", "seed": 1})
        assert r.status == 201, r
        run = r.json()["id"]

        fit = {"lrs": 0.01, "n_cycle": 1, "cycle_len": 1}
        t0 = time.monotonic()
        r = d.post(API + "/runs/%d/fit" % run, dict(fit, workers=2))
        ok &= check(r.status == 202, "fit with workers 2 queued")
        job = wait_job(d, r.json()["id"], timeout=WORKER_TIMEOUT_S + 60)
        secs = time.monotonic() - t0
        err = job.get("error") or ""
        ok &= check(job["state"] in ("failed", "interrupted") and secs < FAIL_WITHIN_S,
                    f"the world fails in {secs:.1f} s (under {FAIL_WITHIN_S}): {job['state']}")
        named = re.search(r"train/(blue|red)/(\d{4})\.png", err)
        ok &= check(re.match(r"workers: rank [01] on ", err) and "decode" in err and named
                    and int(named.group(2)) in BAD,
                    f"the job row has the rank's reason: {err}")
        ok &= check(named and named.group(0) in d.log_text(), "the daemon's log has it too")

        ok &= check(d.get(API + "/health").status == 200, "the daemon keeps serving")
        r = d.post(API + "/runs/%d/lr-find" % run, {"num_it": 20, "workers": 1})
        job = wait_job(d, r.json()["id"], timeout=600)
        ok &= check(job["state"] == "succeeded",
                    f"the next job runs (in the daemon): {job['state']} {job.get('error')}")
        if not ok:
            print(d.log_text()[-20000:])
    return verdict("fail_fast", ok)


if __name__ == "__main__":
    sys.exit(main())
