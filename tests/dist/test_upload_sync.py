"""test_upload_sync.py: through the real daemon (--max-workers 2), a dataset uploaded as a tar
is sent to a rank whose host lacks it. The daemon starts its ranks through a wrapper
(--worker) that puts rank 1 in a mount namespace of its own (root needed) where the data
dir's datasets folder is an empty tmpfs, as on a second host that never saw the upload,
while that flag file exists. A 2-worker fit with rank 1 lacking the dataset and the same fit
on a second run with the same seed, the folder present on both ranks, record the same epoch
losses and accuracy, bit for bit (the same files, so the same computation); rank 1's
folder then holds the dataset complete, identical to the upload.

usage: /usr/bin/python3 test_upload_sync.py SGDRD_BIN
"""
import io
import os
import shutil
import sys
import tarfile
import tempfile

os.environ["SGDRD_BIN"] = os.path.abspath(sys.argv[1])
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "api"))
sys.path.insert(0, os.path.dirname(__file__))
from conftest import API, Daemon, wait_job  # noqa: E402
from mpirun import ENV  # noqa: E402
from test_dataset_sync import same_tree  # noqa: E402
from test_worker import check, write_subset  # noqa: E402

# $HIDE, $DATASETS, $SEEN, $WORKER are filled in; rank 1 runs in its namespace while $HIDE
# exists, and leaves a copy of what its datasets folder holds at the end in $SEEN.
WRAPPER = """#!/bin/sh
if [ "$OMPI_COMM_WORLD_RANK" = 1 ] && [ -e '{hide}' ]; then
  exec unshare -m sh -c 'mount -t tmpfs none "$1" || exit 3; "$2" "$3"; rc=$?; \
cp -a "$1/." "$4" || exit 4; exit $rc' sh '{datasets}' '{worker}' "$1" '{seen}'
fi
exec '{worker}' "$@"
"""


def tar_of(folder):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        t.add(folder, arcname=os.path.basename(folder))
    return buf.getvalue()


def fit(d, seed):
    r = d.post(API + "/runs", {"dataset": "fmup", "arch": "resnet_small", "sz": 28, "bs": 32,
                               "tfms": "none", "seed": seed})
    assert r.status == 201, r
    run = r.json()["id"]
    r = d.post(API + "/runs/%d/fit" % run, {"lrs": 0.05, "n_cycle": 1, "cycle_len": 1,
                                            "workers": 2})
    assert r.status in (201, 202), r
    job = wait_job(d, r.json()["id"], timeout=600)
    rows = d.get(API + "/runs/%d/epochs" % run).json()
    rows = rows.get("items", rows) if isinstance(rows, dict) else rows
    return job, [(e["train_loss"], e["valid_loss"], e["accuracy"]) for e in rows]


def main():
    root = tempfile.mkdtemp(prefix="sgdrd-upload-sync-")
    os.environ.update({k: v for k, v in ENV.items() if k.startswith("OMPI_")})
    worker = os.path.join(os.path.dirname(os.environ["SGDRD_BIN"]), "..", "worker",
                          "sgdrd-worker")
    hide, seen = os.path.join(root, "hide"), os.path.join(root, "seen")
    datasets = os.path.join(root, "var", "datasets")
    wrapper = os.path.join(root, "worker.sh")
    with open(wrapper, "w") as f:
        f.write(WRAPPER.format(hide=hide, datasets=datasets, worker=os.path.abspath(worker),
                               seen=seen))
    os.chmod(wrapper, 0o755)
    ok = True
    d = Daemon(root, extra_args=["--max-workers", "2", "--worker", wrapper])
    try:
        src = os.path.join(root, "fmup")
        os.mkdir(src)
        write_subset(src)
        r = d.post(API + "/datasets?name=fmup&format=idx", tar_of(src),
                   ctype="application/x-tar")
        assert r.status == 201, r
        ok &= check(r.json()["path"] == os.path.join(datasets, "fmup"),
                    f"the upload lives under the data dir: {r.json()['path']}")

        os.mkdir(seen)
        open(hide, "w").close()
        job, sent = fit(d, 7)
        os.remove(hide)
        ok &= check(job["state"] == "succeeded" and sent,
                    f"the fit runs with rank 1 lacking the upload: {job['state']} "
                    f"{job.get('error')}")
        ok &= check(os.listdir(seen) == ["fmup"] and same_tree(src, os.path.join(seen, "fmup")),
                    f"rank 1's datasets folder holds the upload, complete: {os.listdir(seen)}")
        job, both = fit(d, 7)
        ok &= check(job["state"] == "succeeded" and sent == both,
                    f"the same fit with the folder on both ranks: the same epochs, bit for bit "
                    f"({sent} and {both})")
    finally:
        if not ok:
            print(d.log_text())
        d.stop()
    shutil.rmtree(root, ignore_errors=True)
    print("upload_sync ok" if ok else "upload_sync FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
