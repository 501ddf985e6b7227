"""daemon_world.py: what the dist suite's drivers of the real daemon share: a daemon started
with --max-workers 2 in a fresh temporary folder, with mpirun's settings for the worlds it
starts; the small Fashion-MNIST subset of test_worker.py registered as the dataset "fm";
runs on it and their epochs; and the ok/FAIL lines a driver prints. A driver sets
SGDRD_BIN (the daemon under test) before it imports this module, as the tests/api helpers
read it when they are imported."""
import contextlib
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "api"))
sys.path.insert(0, os.path.dirname(__file__))
from conftest import API, Daemon, wait_job  # noqa: E402
from mpirun import ENV  # noqa: E402
from test_worker import check, write_subset  # noqa: E402

__all__ = ["API", "check", "daemon_world", "items", "last_accuracy", "new_run", "register_fm",
           "verdict", "wait_job"]


@contextlib.contextmanager
def daemon_world(prefix, extra_args=()):
    """Yields a Daemon started with --max-workers 2 and extra_args in a new temporary folder
    named from prefix, mpirun's OMPI_ settings put in this process's environment (the daemon
    passes them on to the worlds it starts); on leaving, stops it and removes the folder."""
    root = tempfile.mkdtemp(prefix=prefix)
    os.environ.update({k: v for k, v in ENV.items() if k.startswith("OMPI_")})
    d = Daemon(root, extra_args=["--max-workers", "2", *extra_args])
    try:
        yield d
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


def register_fm(d):
    """Writes the Fashion-MNIST subset under the daemon's dataset root and registers it as
    the IDX dataset "fm"."""
    ds = os.path.join(d.datasets, "fm")
    os.mkdir(ds)
    write_subset(ds)
    r = d.post(API + "/datasets", {"name": "fm", "path": ds, "format": "idx"})
    assert r.status == 201, r


def items(reply):
    """A list reply's rows, whether the body is the list itself or holds it as items."""
    rows = reply.json()
    return rows.get("items", rows) if isinstance(rows, dict) else rows


def new_run(d, seed, **extra):
    """A run on "fm" (resnet_small, 28 px, batch 32, no augmentation) with this seed and the
    extra settings; returns its id."""
    r = d.post(API + "/runs", dict({"dataset": "fm", "arch": "resnet_small", "sz": 28,
                                    "bs": 32, "tfms": "none", "seed": seed}, **extra))
    assert r.status == 201, r
    return r.json()["id"]


def last_accuracy(d, run):
    """The run's last recorded epoch accuracy (None before its first epoch) and how many
    epochs it has."""
    rows = items(d.get(API + "/runs/%d/epochs" % run))
    return rows[-1]["accuracy"] if rows else None, len(rows)


def verdict(name, ok):
    """Prints the driver's last line; returns its exit status."""
    print(name + " ok" if ok else name + " FAILED")
    return 0 if ok else 1
