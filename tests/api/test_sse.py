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
