"""test_limits.py: no small request can exhaust the daemon. Half-open connections from one
client are closed by the header deadline and, past the connection limit, make room for new
ones; the dashboard's requests answer meanwhile; a stalled body is closed, an open event
stream is not; one client past its share of event streams gets a 429 while another still
gets its stream. Loopback only, every loop bounded."""
import json
import os
import select
import shutil
import socket
import tempfile
import time

import pytest

from conftest import API, Daemon, assert_problem, make_image_dataset

HEADER_TIMEOUT = 2
IDLE_TIMEOUT = 2
MAX_CONNS = 128
MAX_STREAMS = 16
PER_CLIENT = 4


@pytest.fixture(scope="module")
def lim(sgdrd_bin):
    root = tempfile.mkdtemp(prefix="sgdrd-api-lim-")
    try:
        d = Daemon(root, extra_args=[
            "--header-timeout", str(HEADER_TIMEOUT), "--idle-timeout", str(IDLE_TIMEOUT),
            "--max-connections", str(MAX_CONNS), "--max-streams", str(MAX_STREAMS),
            "--max-streams-per-client", str(PER_CLIENT), "--trusted-proxy", "127.0.0.1"])
        yield d
        d.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def run_id(lim):
    path = make_image_dataset(os.path.join(lim.datasets, "lim"), per_class=3)
    r = lim.post(API + "/datasets", {"name": "lim", "path": path, "format": "folders"})
    assert r.status == 201, r
    r = lim.post(API + "/runs", {"dataset": "lim", "arch": "resnet_small", "sz": 28})
    assert r.status == 201, r
    return r.json()["id"]


def raw(d, data=b""):
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    if data:
        s.sendall(data)
    return s


def closed_by_server(s, timeout):
    """True when the server closes s (EOF or reset) within timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([s], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            continue
        try:
            if s.recv(4096) == b"":
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


def open_stream(d, run, headers=None):
    """Opens GET /runs/{run}/events; returns (socket, status, head bytes)."""
    h = {"Host": "127.0.0.1:%d" % d.port, "Accept": "text/event-stream"}
    h.update(headers or {})
    req = "GET %s/runs/%d/events HTTP/1.1\r\n" % (API, run)
    req += "".join("%s: %s\r\n" % kv for kv in h.items()) + "\r\n"
    s = raw(d, req.encode())
    head = b""
    deadline = time.monotonic() + 5
    while b"\r\n\r\n" not in head and time.monotonic() < deadline:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
    return s, status, head


def problem_of(head, s):
    """The problem+json body that follows head on s (Content-Length framed)."""
    text, _, body = head.partition(b"\r\n\r\n")
    length = 0
    for line in text.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
        if k.strip().lower() == b"content-type":
            assert v.strip().startswith(b"application/problem+json"), head
    while len(body) < length:
        chunk = s.recv(4096)
        if not chunk:
            break
        body += chunk
    return json.loads(body[:length])


def no_streams(d, timeout=10):
    """Waits until the streams of earlier tests have noticed their clients gone."""
    deadline = time.monotonic() + timeout
    while d.get(API + "/health").json()["event_streams"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert d.get(API + "/health").json()["event_streams"] == 0


def timed_get(d, path, headers=None):
    t0 = time.monotonic()
    r = d.get(path, headers=headers)
    return r, time.monotonic() - t0


def test_half_open_flood_leaves_the_dashboard_usable(lim, run_id):
    flood = []
    try:
        for _ in range(300):
            flood.append(raw(lim, b"GET /api/v1/ru"))
        # The dashboard: its page, its list, its live stream, each within a few seconds.
        r, dt = timed_get(lim, "/")
        assert r.status == 200 and dt < 3, (r, dt)
        r, dt = timed_get(lim, API + "/runs")
        assert r.status == 200 and dt < 3, (r, dt)
        t0 = time.monotonic()
        s, status, head = open_stream(lim, run_id, {"Sec-Fetch-Site": "same-origin"})
        s.close()
        assert status == 200 and time.monotonic() - t0 < 3, head
        # Every half-open connection is closed: by the deadline, or evicted to make room.
        deadline = time.monotonic() + HEADER_TIMEOUT + 5
        for c in flood:
            assert closed_by_server(c, max(0.1, deadline - time.monotonic())), \
                "a half-open connection outlived the header deadline"
        h = lim.get(API + "/health").json()
        conns = h.get("connections")
        assert conns and conns["timed_out"] + conns["evicted"] >= 300 - MAX_CONNS, h
    finally:
        for c in flood:
            c.close()


def test_slow_headers_are_closed_by_the_deadline(lim):
    s = raw(lim, b"G")
    try:
        t0 = time.monotonic()
        closed = False
        # One byte every half second: activity that an idle timeout alone would accept.
        for ch in b"ET / HTTP/1.1\r\nX-Slow: " + b"a" * 40:
            try:
                s.sendall(bytes([ch]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if closed_by_server(s, 0.5):
                closed = True
                break
        assert closed, "a trickle of header bytes kept the connection past the deadline"
        assert time.monotonic() - t0 < HEADER_TIMEOUT + 2
    finally:
        s.close()


def test_stalled_body_is_closed(lim):
    head = ("POST %s/runs HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json"
            "\r\nContent-Length: 100\r\n\r\n{\"dat" % (API, lim.port))
    s = raw(lim, head.encode())
    try:
        assert closed_by_server(s, IDLE_TIMEOUT + 4), "a stalled body kept its connection"
    finally:
        s.close()


def test_open_stream_outlives_the_deadlines(lim, run_id):
    s, status, head = open_stream(lim, run_id)
    try:
        assert status == 200, head
        assert not closed_by_server(s, max(HEADER_TIMEOUT, IDLE_TIMEOUT) + 2), \
            "an open event stream was closed by a request deadline"
    finally:
        s.close()


def test_one_client_past_its_share_of_streams_gets_429(lim, run_id):
    no_streams(lim)
    mine = []
    try:
        for _ in range(PER_CLIENT):
            s, status, head = open_stream(lim, run_id)
            mine.append(s)
            assert status == 200, head
        s, status, head = open_stream(lim, run_id)
        mine.append(s)
        assert status == 429, head
        p = problem_of(head, s)
        assert p["status"] == 429 and p["error_code"] == "REQUEST_LIMIT_EXCEEDED", p
        assert b"retry-after" in head.lower(), head
        # Another client, the dashboard, still gets its stream.
        s, status, head = open_stream(lim, run_id, {"Sec-Fetch-Site": "same-origin"})
        mine.append(s)
        assert status == 200, head
    finally:
        for s in mine:
            s.close()


def test_streams_kept_for_the_dashboard_when_others_fill_the_rest(lim, run_id):
    """Clients behind the trusted proxy (127.0.0.1 here) are told apart by
    X-Forwarded-For; together they may take all streams but one share."""
    no_streams(lim)
    opened = []
    try:
        others = (MAX_STREAMS - PER_CLIENT) // PER_CLIENT
        for i in range(others):
            for _ in range(PER_CLIENT):
                s, status, head = open_stream(lim, run_id,
                                              {"X-Forwarded-For": "10.0.0.%d" % (i + 1)})
                opened.append(s)
                assert status == 200, head
        s, status, head = open_stream(lim, run_id, {"X-Forwarded-For": "10.0.9.9"})
        opened.append(s)
        assert status == 503, head
        assert problem_of(head, s)["error_code"] == "REQUEST_LIMIT_EXCEEDED"
        s, status, head = open_stream(lim, run_id, {"Sec-Fetch-Site": "same-origin"})
        opened.append(s)
        assert status == 200, head
    finally:
        for s in opened:
            s.close()


def test_limit_flags_are_checked(sgdrd_bin):
    import subprocess
    for flag, value in (("--max-connections", "3"), ("--header-timeout", "0"),
                        ("--max-streams-per-client", "x")):
        p = subprocess.run([sgdrd_bin, flag, value], capture_output=True, text=True,
                           timeout=20)
        assert p.returncode != 0
        assert flag.lstrip("-") in p.stderr, p.stderr


# ---- malloc arenas --------------------------------------------------------------------------

ARENA_HEAP = 64 << 20   # glibc's heap of a thread arena: 64 MiB reserved, aligned to its size


def arena_heaps(pid):
    """The heaps of glibc's thread arenas in /proc/PID/maps: a region aligned to 64 MiB,
    its used part read-write and the rest of the 64 MiB reserved (---p) right after."""
    rows = []
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            span, perms = line.split()[:2]
            lo, hi = (int(x, 16) for x in span.split("-"))
            rows.append((lo, hi, perms))
    n = 0
    for i, (lo, hi, perms) in enumerate(rows):
        if lo % ARENA_HEAP or not perms.startswith("rw"):
            continue
        end = hi
        if i + 1 < len(rows) and rows[i + 1][0] == hi and rows[i + 1][2].startswith("---"):
            end = rows[i + 1][1]
        n += end - lo == ARENA_HEAP
    return n


def hold_clients(d, n):
    """n keep-alive connections, each answered once (so each has its thread, which has
    allocated), all still open."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        s.sendall(("GET %s/runs HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
                   % (API, d.port)).encode())
        socks.append(s)
    for s in socks:
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
    return socks


@pytest.mark.parametrize("env", [None, "8"])
def test_malloc_arenas_are_few_unless_the_environment_says(sgdrd_bin, monkeypatch, env):
    """A connection is a thread; glibc would give many of them an arena of their own, each
    keeping what is freed into it, so the daemon's memory crept up under load. It keeps
    two (the main one and one more) unless MALLOC_ARENA_MAX is set."""
    if env:
        monkeypatch.setenv("MALLOC_ARENA_MAX", env)
    else:
        monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    root = tempfile.mkdtemp(prefix="sgdrd-api-arena-")
    d = Daemon(root)
    try:
        socks = hold_clients(d, 24)
        heaps = arena_heaps(d.proc.pid)
        for s in socks:
            s.close()
        assert d.get(API + "/health").status == 200
        if env:
            assert "as the environment sets them" in d.log_text()
            assert heaps > 1, heaps
        else:
            assert "malloc arenas: at most 2" in d.log_text()
            assert heaps <= 1, heaps
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)
