"""test_sse.py: GET /runs/{id}/events: live job events, resume from Last-Event-ID, the
heartbeat, and a client that disconnects freeing its stream. Job state changes are events
of their own, so none of this needs training."""
import os
import time

import pytest

from conftest import API, make_image_dataset
from sse_client import SSE


@pytest.fixture(scope="module")
def sse_run(daemon):
    root = make_image_dataset(os.path.join(daemon.datasets, "sse"), per_class=3)
    r = daemon.post(API + "/datasets", {"name": "sse", "path": root, "format": "folders"})
    assert r.status == 201, r
    r = daemon.post(API + "/runs", {"dataset": "sse", "arch": "resnet_small", "sz": 28})
    assert r.status == 201, r
    return r.json()["id"]


def job_events(events):
    return [e for e in events if e.get("event") == "job"]


def test_live_events_and_resume(daemon, sse_run):
    s = SSE(daemon, sse_run)
    try:
        assert s.status == 200 and s.ctype.startswith("text/event-stream")
        r = daemon.post(API + "/runs/%d/tta" % sse_run, {"n_aug": 1})
        assert r.status == 202, r
        job = r.json()["id"]
        s.wait_for(lambda ev, c: any(e["data"].get("job") == job for e in job_events(ev)))
        r = daemon.post(API + "/runs/%d/tta" % sse_run, {"n_aug": 2})
        job2 = r.json()["id"]
        s.wait_for(lambda ev, c: any(e["data"].get("job") == job2 for e in job_events(ev)))
        ids = [e["id"] for e in s.events]
        assert ids == sorted(ids) and len(set(ids)) == len(ids), ids
        for e in s.events:
            assert e["data"]["run"] == sse_run
        assert s.retry is not None
    finally:
        s.close()
    # Resume after the first event: everything later is replayed from the store, nothing
    # before it.
    first = ids[0]
    s2 = SSE(daemon, sse_run, last_event_id=first)
    try:
        s2.wait_for(lambda ev, c: len(ev) >= len(ids) - 1)
        replayed = [e["id"] for e in s2.events]
        assert replayed[0] > first
        assert replayed[:len(ids) - 1] == ids[1:]
    finally:
        s2.close()
    # And from the start with ?last_event_id=0, every event of the run.
    s3 = SSE(daemon, sse_run, last_event_id=0)
    try:
        s3.wait_for(lambda ev, c: len(ev) >= len(ids))
        assert set(ids) <= {e["id"] for e in s3.events}
    finally:
        s3.close()


def test_disconnect_frees_stream(daemon, sse_run):
    def streams():
        return daemon.get(API + "/health").json()["event_streams"]

    def settle(n):
        for _ in range(100):
            if streams() == n:
                return
            time.sleep(0.1)
        assert streams() == n

    settle(0)  # the streams of the test before have hung up too
    base = 0
    clients = [SSE(daemon, sse_run) for _ in range(3)]
    for c in clients:
        c.wait_for(lambda ev, cm: c.retry is not None, timeout=10)
    assert streams() == base + 3
    for c in clients:
        c.close()
    settle(base)


def test_heartbeat(daemon, sse_run):
    s = SSE(daemon, sse_run, last_event_id=10 ** 12)
    try:
        s.wait_for(lambda ev, c: "heartbeat" in c, timeout=40)
        assert s.events == []
    finally:
        s.close()


def test_stream_ends_when_its_run_is_deleted(daemon, sse_run):
    r = daemon.post(API + "/runs", {"dataset": "sse", "arch": "resnet_small", "sz": 28})
    assert r.status == 201, r
    run = r.json()["id"]
    s = SSE(daemon, run)
    try:
        s.wait_for(lambda ev, c: s.retry is not None, timeout=10)
        assert daemon.request("DELETE", API + "/runs/%d" % run).status == 204
        s.thread.join(10)   # well before the next heartbeat (15 s)
        assert not s.thread.is_alive(), "the stream of a deleted run stays open"
    finally:
        s.close()


def status_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError("no " + key)


def replay_all(d, run, n, burst):
    """n subscribers at once, each told apart by X-Forwarded-For, each reading the run's
    whole history (until it has been quiet for a moment); then all hang up."""
    import select
    import socket
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        s.sendall(("GET %s/runs/%d/events HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                   "Accept: text/event-stream\r\nX-Forwarded-For: 10.9.%d.%d\r\n\r\n"
                   % (API, run, d.port, burst, i)).encode())
        socks.append(s)
    got = {s: 0 for s in socks}
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 0.5:
        ready, _, _ = select.select(socks, [], [], 0.1)
        for s in ready:
            data = s.recv(1 << 16)
            got[s] += len(data)
            quiet_since = time.monotonic()
    for s in socks:
        s.close()
    return min(got.values())


def test_subscribers_replaying_a_long_history_leave_memory_flat(sgdrd_bin):
    """Each new subscriber replays the run's history from the store. Read in large
    batches by 32 threads at once, the replay raised the daemon's peak by tens of MiB and
    left much of it held as free memory after the subscribers were gone; in small batches
    both stay a few MiB."""
    import shutil
    import tempfile
    from conftest import Daemon, wait_job
    root = tempfile.mkdtemp(prefix="sgdrd-api-sse-mem-")
    d = Daemon(root, extra_args=["--trusted-proxy", "127.0.0.1", "--max-streams", "64",
                                 "--max-streams-per-client", "2"])
    try:
        ds = make_image_dataset(os.path.join(d.datasets, "hist"), per_class=3)
        assert d.post(API + "/datasets", {"name": "hist", "path": ds,
                                          "format": "folders"}).status == 201
        run = d.post(API + "/runs", {"dataset": "hist", "arch": "resnet_small",
                                     "sz": 28}).json()["id"]
        jobs = []
        for i in range(400):
            r = d.post(API + "/runs/%d/%s" % (run, "freeze" if i % 2 else "unfreeze"),
                       {"to": 1} if i % 2 else {})
            assert r.status == 202, r
            jobs.append(r.json()["id"])
        assert wait_job(d, jobs[-1], timeout=300)["state"] == "succeeded"
        pid = d.proc.pid
        rss0, hwm0, sizes = status_kb(pid, "VmRSS"), status_kb(pid, "VmHWM"), []
        for burst in range(6):
            assert replay_all(d, run, 32, burst) > 100000
            deadline = time.monotonic() + 15
            while d.get(API + "/health").json()["event_streams"] > 0:
                assert time.monotonic() < deadline, "streams still open after hang-up"
                time.sleep(0.2)
            sizes.append(status_kb(pid, "VmRSS"))
        peak_mib = (status_kb(pid, "VmHWM") - hwm0) / 1024
        kept_mib = (sizes[-1] - rss0) / 1024
        what = "RSS before: %d KiB, after each burst: %s, peak grew %.1f MiB" % (
            rss0, sizes, peak_mib)
        assert peak_mib < 16, what
        assert kept_mib < 12, what
        assert d.get(API + "/health").status == 200
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)
