#!/usr/bin/python3
"""bench_load.py: connections under load during training (issue 18). Starts sgdrd on a free
loopback port with a temporary data dir (--trusted-proxy 127.0.0.1, so that subscribers
told apart by X-Forwarded-For count as separate clients, as behind nginx), registers
Fashion-MNIST, creates a resnet_small run and starts one fit. Then, --repeats times, a
window without HTTP load (A) and a window (B) in which another process keeps 64 keep-alive
clients on GET /jobs/{id} (each one request every --interval-ms) and 32 SSE subscribers on
/runs/{id}/events. Prints failures, latency p50/p99/max, the daemon's RSS after each
repeat, training img/s without and with load, and MET / NOT MET for each target:
no failure, p99 < 20 ms, RSS flat (last repeat within 5% of the first), training with load
within 10% of without.

Usage: /usr/bin/python3 bench/api/bench_load.py [--bin build/daemon/sgdrd] [--seconds 60]
       [--repeats 3] [--clients 64] [--streams 32] [--interval-ms 500] [--threads 2]
Standard library only; loopback only; the daemon is stopped at the end, also on failure."""
import argparse
import json
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import time

from bench_api import (API, BS, FMNIST, free_port, must, percentile, print_log_tail, stop_daemon,
                       stop_job, train_points, wait_training)

P99_TARGET_MS = 20.0
THROUGHPUT_TOL = 0.10
RSS_TOL = 0.05


# ---------------------------------------------------------------- load process

class Client:
    """One keep-alive connection that sends GET /jobs/{id} on a fixed pace."""

    def __init__(self, port, req, due):
        self.port, self.req, self.due = port, req, due
        self.sock, self.buf, self.sent = None, b"", None

    def connect(self, sel):
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.sock.setblocking(False)
        sel.register(self.sock, selectors.EVENT_READ, self)

    def drop(self, sel):
        if self.sock is not None:
            sel.unregister(self.sock)
            self.sock.close()
        self.sock, self.buf, self.sent = None, b"", None

    def answer(self):
        """(status, complete) of what is buffered."""
        head, sep, body = self.buf.partition(b"\r\n\r\n")
        if not sep:
            return 0, False
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        return status, len(body) >= length


def load_main(args):
    """Runs in its own process so that its CPU is not the driver's: one selector thread
    drives every client and subscriber; prints one JSON object."""
    sel = selectors.DefaultSelector()
    req = ("GET %s/jobs/%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
           % (API, args.job, args.port)).encode()
    interval = args.interval_ms / 1000.0
    start = time.monotonic()
    end = start + args.seconds
    clients = [Client(args.port, req, start + interval * k / args.clients)
               for k in range(args.clients)]
    lat, fails = [], []
    subs = []
    for k in range(args.streams):
        s = socket.create_connection(("127.0.0.1", args.port), timeout=10)
        s.sendall(("GET %s/runs/%d/events HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: "
                   "text/event-stream\r\nX-Forwarded-For: 10.1.%d.%d\r\n\r\n"
                   % (API, args.run, args.port, k // 250, k % 250 + 1)).encode())
        s.setblocking(False)
        sub = {"sock": s, "head": b"", "status": None, "events": 0, "closed": False}
        sel.register(s, selectors.EVENT_READ, sub)
        subs.append(sub)
    for c in clients:
        c.connect(sel)
    while True:
        now = time.monotonic()
        if now >= end and all(c.sent is None for c in clients):
            break
        if now >= end + 5:
            fails += ["no answer within 5 s" for c in clients if c.sent is not None]
            break
        for c in clients:
            if c.sent is None and now < end and c.due <= now:
                try:
                    if c.sock is None:
                        c.connect(sel)
                    c.sock.send(c.req)
                    c.sent = time.perf_counter()
                except OSError as e:
                    fails.append("send: %s" % e)
                    c.drop(sel)
                c.due += interval
                if c.due < now:
                    c.due = now + interval
        waits = [c.due for c in clients if c.sent is None and c.due < end]
        timeout = max(0.0, min(waits) - time.monotonic()) if waits else 0.05
        for key, _ in sel.select(min(timeout, 0.05)):
            o = key.data
            try:
                data = key.fileobj.recv(65536)
            except OSError as e:
                data, err = b"", e
            else:
                err = None
            if isinstance(o, Client):
                if not data:
                    fails.append("connection closed%s" % (": %s" % err if err else ""))
                    o.drop(sel)
                    continue
                o.buf += data
                status, done = o.answer()
                if done:
                    lat.append((time.perf_counter() - o.sent) * 1000.0)
                    if status != 200:
                        fails.append("HTTP %d" % status)
                    o.buf, o.sent = b"", None
            else:
                if not data:
                    o["closed"] = True
                    sel.unregister(key.fileobj)
                    continue
                if o["status"] is None:
                    o["head"] += data
                    if b"\r\n" in o["head"]:
                        o["status"] = int(o["head"].split(b" ", 2)[1])
                o["events"] += data.count(b"\nevent: ") + data.startswith(b"event: ")
    for c in clients:
        c.drop(sel)
    for s in subs:
        s["sock"].close()
    sse_bad = sum(1 for s in subs if s["status"] != 200 or s["closed"])
    json.dump({"lat": lat, "fails": fails, "sse_bad": sse_bad,
               "sse_events": sum(s["events"] for s in subs),
               "cpu_s": sum(os.times()[:2])}, sys.stdout)


# ---------------------------------------------------------------- driver

def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def start_daemon(args, root, port):
    log = open(os.path.join(root, "daemon.log"), "w+")
    proc = subprocess.Popen([args.bin, "--listen", "127.0.0.1:%d" % port,
                             "--data-dir", os.path.join(root, "var"),
                             "--dataset-root", os.path.dirname(FMNIST),
                             "--threads", str(args.threads), "--trusted-proxy", "127.0.0.1"],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError("sgdrd exited with %d" % proc.returncode)
        try:
            return proc, log, must(port, "GET", API + "/health")
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("sgdrd did not answer within 60 s")
            time.sleep(0.1)


def run_load(args, port, job, run):
    load = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--load", "--port", str(port),
         "--job", str(job), "--run", str(run), "--seconds", str(args.seconds),
         "--clients", str(args.clients), "--streams", str(args.streams),
         "--interval-ms", str(args.interval_ms)], stdout=subprocess.PIPE)
    try:
        out, _ = load.communicate(timeout=args.seconds + 60)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    if load.returncode != 0:
        raise RuntimeError("load process exited with %d" % load.returncode)
    return json.loads(out)


def rate(pts, t0, t1):
    """(images, seconds) of the batches ending inside [t0, t1]."""
    inside = [t for _, t in pts if t0 <= t <= t1]
    if len(inside) < 2:
        return 0.0, 0.0
    return (len(inside) - 1) * BS, inside[-1] - inside[0]


def report(args, health, res, mem, windows, pts):
    def phase(p):
        imgs = secs = 0.0
        for w in windows[p]:
            i, t = rate(pts, *w)
            imgs, secs = imgs + i, secs + t
        return imgs / secs if secs > 0 else float("nan")

    rss, load_growth = mem
    ips_a, ips_b = phase("A"), phase("B")
    ratio = ips_b / ips_a
    lat = res["lat"]
    p50, p99 = (percentile(lat, 50), percentile(lat, 99)) if lat else (float("nan"),) * 2
    growth = (rss[-1] - rss[0]) / rss[0]
    nfail = len(res["fails"]) + res["sse_bad"]
    with open("/proc/loadavg") as f:
        loadavg = " ".join(f.read().split()[:3])
    print("sgdrd load benchmark: %s, %d training threads, load average %s, %s"
          % (health.get("version", "?"), args.threads, loadavg,
             time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())))
    print("load: %d keep-alive clients on GET /jobs/{id} (one request each every %.0f ms) "
          "+ %d SSE subscribers, %d repeats of %.0f s, each after %.0f s without load"
          % (args.clients, args.interval_ms, args.streams, args.repeats, args.seconds,
             args.seconds))
    targets = [
        ("no failed request or stream", nfail == 0, "%d requests, %d failures, %d streams "
         "lost, %d events delivered" % (len(lat), len(res["fails"]), res["sse_bad"],
                                        res["sse_events"])),
        ("p99 < %g ms" % P99_TARGET_MS, bool(lat) and p99 < P99_TARGET_MS,
         "p50 %.2f ms, p99 %.2f ms, max %.2f ms" % (p50, p99, max(lat) if lat else 0)),
        ("RSS flat (last repeat within %d%% of the first)" % (RSS_TOL * 100),
         growth <= RSS_TOL, "RSS after each repeat: %s MiB (%+.1f%%); change during each "
         "load window: %s MiB" % (", ".join("%.1f" % x for x in rss), growth * 100,
                                  ", ".join("%+.1f" % x for x in load_growth))),
        ("training within %d%% of no load" % (THROUGHPUT_TOL * 100),
         ratio >= 1 - THROUGHPUT_TOL, "%.0f img/s without load, %.0f with it, ratio %.3f"
         % (ips_a, ips_b, ratio)),
    ]
    for name, ok, figures in targets:
        print("%-48s %-7s %s" % (name, "MET" if ok else "NOT MET", figures))
    for f in res["fails"][:5]:
        print("  failure: %s" % f)
    print("all targets: %s" % ("MET" if all(t[1] for t in targets) else "NOT MET"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                  "build", "daemon", "sgdrd"))
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--streams", type=int, default=32)
    ap.add_argument("--interval-ms", type=float, default=500.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--job", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--run", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.clients = max(1, min(args.clients, 256))
    args.streams = max(0, min(args.streams, 48))
    if args.load:
        load_main(args)
        return 0
    args.seconds = max(5.0, min(args.seconds, 300.0))
    args.repeats = max(1, min(args.repeats, 10))

    root = tempfile.mkdtemp(prefix="sgdrd-bench-load-")
    port = free_port()
    proc = log = None
    try:
        proc, log, health = start_daemon(args, root, port)
        must(port, "POST", API + "/datasets",
             {"name": "fmnist", "path": FMNIST, "format": "idx"}, want=(201,))
        run = must(port, "POST", API + "/runs",
                   {"dataset": "fmnist", "arch": "resnet_small", "sz": 28, "bs": BS,
                    "tfms": "none", "seed": 1}, want=(201,))["id"]
        job = must(port, "POST", "%s/runs/%d/fit" % (API, run),
                   {"lrs": 0.05, "n_cycle": 1, "cycle_len": 8}, want=(202,))["id"]
        wait_training(port, run, job, -1)
        windows = {"A": [], "B": []}
        res, rss, load_growth = None, [], []
        for _ in range(args.repeats):
            t0 = time.time()
            time.sleep(args.seconds)
            windows["A"].append((t0, time.time()))
            before = rss_mib(proc.pid)
            t0 = time.time()
            part = run_load(args, port, job, run)
            windows["B"].append((t0, time.time()))
            rss.append(rss_mib(proc.pid))
            load_growth.append(rss[-1] - before)
            if res is None:
                res = part
            else:
                for k in ("lat", "fails"):
                    res[k] += part[k]
                for k in ("sse_bad", "sse_events", "cpu_s"):
                    res[k] += part[k]
        stop_job(port, job)
        report(args, health, res, (rss, load_growth), windows, train_points(port, run, -1))
        return 0
    except Exception:
        print_log_tail(log)
        raise
    finally:
        stop_daemon(proc, log, root)


if __name__ == "__main__":
    sys.exit(main())
