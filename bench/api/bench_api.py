#!/usr/bin/python3
"""bench_api.py: API latency under training (issue 5). Starts sgdrd on a free loopback port
with a temporary data dir, registers Fashion-MNIST, creates a resnet_small run, then
  A) fits for PHASE_S seconds with no HTTP load, and
  B) fits again for PHASE_S seconds while another process polls GET /jobs/{id},
     GET /runs/{id}/metrics?limit=1000 and GET /health over several keep-alive
     connections, with one SSE subscriber on /runs/{id}/events,
and prints per-endpoint latency (p50/p99/max), failures, and training img/s (from the
daemon's own per-batch metric times) without and with load, over the same number of
batches.

Usage: /usr/bin/python3 bench/api/bench_api.py [--bin build/daemon/sgdrd] [--seconds 30]
       [--clients 4] [--interval-ms 50] [--threads 2]
Standard library only; only loopback traffic; the daemon is killed at the end, also on
failure."""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

API = "/api/v1"
FMNIST = "/usr/share/datasets/fashion-mnist"
BS = 128
P99_TARGET_MS = 10.0
THROUGHPUT_TOL = 0.05


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port, method, path, body=None, timeout=30):
    """One request on a fresh connection; returns (status, parsed JSON or None)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = {}
        if body is not None:
            body = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        try:
            return r.status, json.loads(data) if data else None
        except ValueError:
            return r.status, None
    finally:
        c.close()


def must(port, method, path, body=None, want=(200,)):
    st, js = call(port, method, path, body)
    if st not in want:
        raise RuntimeError("%s %s -> %d %r" % (method, path, st, js))
    return js


def percentile(xs, q):
    """Nearest-rank percentile of a non-empty list."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(-(-q * len(s) // 100)) - 1))
    return s[k]


# ---------------------------------------------------------------- load process

def load_main(args):
    """Runs in its own process: paced GETs from several keep-alive connections plus one SSE
    reader, for args.seconds; prints one JSON object with every latency and failure."""
    port, job, run = args.port, args.job, args.run
    paths = [("jobs", "%s/jobs/%d" % (API, job)),
             ("metrics", "%s/runs/%d/metrics?limit=1000" % (API, run)),
             ("health", "%s/health" % API)]
    lat = {name: [] for name, _ in paths}
    fails = {name: [] for name, _ in paths}
    lock = threading.Lock()
    t0 = time.time()
    start = time.monotonic()
    end = start + args.seconds
    interval = args.interval_ms / 1000.0
    max_requests = int(args.seconds / interval) + 10

    def client(k):
        conn = None
        nxt = start + interval * k / max(1, args.clients)
        for i in range(max_requests):
            now = time.monotonic()
            if now >= end:
                break
            if nxt > now:
                time.sleep(nxt - now)
            nxt += interval
            name, path = paths[(i + k) % len(paths)]
            t = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", path)
                r = conn.getresponse()
                body = r.read()
                dt = (time.perf_counter() - t) * 1000.0
                ok = r.status == 200 and body[:1] == b"{"
                if ok and name == "metrics":
                    ok = "points" in json.loads(body)
                with lock:
                    lat[name].append(dt)
                    if not ok:
                        fails[name].append("HTTP %d" % r.status)
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except Exception as e:  # a failed request is a figure, not a crash
                with lock:
                    fails[name].append("%s: %s" % (type(e).__name__, e))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    sse = {"events": 0, "metric_events": 0, "error": None, "status": None}

    def sse_reader():
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "%s/runs/%d/events" % (API, run),
                         headers={"Accept": "text/event-stream"})
            r = conn.getresponse()
            sse["status"] = r.status
            if r.status != 200:
                sse["error"] = "HTTP %d" % r.status
                return
            for _ in range(10_000_000):
                if time.monotonic() >= end:
                    break
                line = r.readline()
                if not line:
                    sse["error"] = "stream closed early"
                    break
                if line.startswith(b"event:"):
                    sse["events"] += 1
                    if line.strip() == b"event: metric":
                        sse["metric_events"] += 1
            conn.close()
        except Exception as e:
            sse["error"] = "%s: %s" % (type(e).__name__, e)

    threads = [threading.Thread(target=sse_reader, daemon=True)]
    threads += [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.seconds + 20)
    json.dump({"t_start": t0, "t_end": time.time(), "lat": lat, "fails": fails, "sse": sse},
              sys.stdout)


# ---------------------------------------------------------------- driver

def train_points(port, run, after_step):
    js = must(port, "GET", "%s/runs/%d/metrics?key=train_loss&after_step=%d&limit=100000"
              % (API, run, after_step))
    return [(p["step"], p["time"]) for p in js["points"]]


def wait_training(port, run, job, after_step, timeout=120):
    """Waits until the job has logged its first batch; returns the job row."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        j = must(port, "GET", "%s/jobs/%d" % (API, job))
        if j["state"] not in ("queued", "running"):
            raise RuntimeError("job %d ended early: %r" % (job, j))
        if train_points(port, run, after_step):
            return j
        time.sleep(0.2)
    raise RuntimeError("job %d logged no batch within %d s" % (job, timeout))


def stop_job(port, job, timeout=60):
    st, js = call(port, "POST", "%s/jobs/%d/cancel" % (API, job))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        j = must(port, "GET", "%s/jobs/%d" % (API, job))
        if j["state"] not in ("queued", "running"):
            return j
        time.sleep(0.2)
    raise RuntimeError("job %d did not stop within %d s after cancel (%d %r)"
                       % (job, timeout, st, js))


def img_per_s(points, n_batches):
    """Images/s over n_batches consecutive batches, timed from the end of the first listed
    batch to the end of the last one."""
    pts = points[:n_batches + 1]
    if len(pts) < 2:
        return float("nan")
    return (len(pts) - 1) * BS / (pts[-1][1] - pts[0][1])


def thread_nices(pid):
    """{nice: count} over the daemon's threads, from /proc (field 19 of stat)."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                nice = int(f.read().rsplit(")", 1)[1].split()[16])
        except (OSError, ValueError, IndexError):
            continue
        out[nice] = out.get(nice, 0) + 1
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                  "build", "daemon", "sgdrd"))
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--interval-ms", type=float, default=50.0,
                    help="each client's pacing between requests")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--job", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--run", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.load:
        load_main(args)
        return 0
    args.seconds = max(5.0, min(args.seconds, 120.0))
    args.clients = max(1, min(args.clients, 64))

    root = tempfile.mkdtemp(prefix="sgdrd-bench-api-")
    port = free_port()
    log = open(os.path.join(root, "daemon.log"), "w+")
    proc = None
    try:
        proc = subprocess.Popen([args.bin, "--listen", "127.0.0.1:%d" % port,
                                 "--data-dir", os.path.join(root, "var"),
                                 "--dataset-root", os.path.dirname(FMNIST),
                                 "--threads", str(args.threads)],
                                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError("sgdrd exited with %d" % proc.returncode)
            try:
                health = must(port, "GET", API + "/health")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("sgdrd did not answer within 60 s")
                time.sleep(0.1)
        must(port, "POST", API + "/datasets",
             {"name": "fmnist", "path": FMNIST, "format": "idx"}, want=(201,))
        run = must(port, "POST", API + "/runs",
                   {"dataset": "fmnist", "arch": "resnet_small", "sz": 28, "bs": BS,
                    "tfms": "none", "seed": 1}, want=(201,))["id"]
        fit = {"lrs": 0.05, "n_cycle": 1, "cycle_len": 1}

        # A: no HTTP load but our own sparse polling (one request every 2 s).
        job_a = must(port, "POST", "%s/runs/%d/fit" % (API, run), fit, want=(202,))["id"]
        wait_training(port, run, job_a, -1)
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            time.sleep(min(2.0, max(0.0, end - time.monotonic())))
        stop_job(port, job_a)
        pts_a = train_points(port, run, -1)
        last_a = pts_a[-1][0]

        # B: the same fit with the load process running.
        job_b = must(port, "POST", "%s/runs/%d/fit" % (API, run), fit, want=(202,))["id"]
        wait_training(port, run, job_b, last_a)
        load = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--load",
                                 "--port", str(port), "--job", str(job_b), "--run", str(run),
                                 "--seconds", str(args.seconds), "--clients", str(args.clients),
                                 "--interval-ms", str(args.interval_ms)],
                                stdout=subprocess.PIPE)
        try:
            time.sleep(args.seconds / 2)
            nices = thread_nices(proc.pid)    # mid-load: HTTP connection threads exist
            out, _ = load.communicate(timeout=args.seconds + 60)
        finally:
            if load.poll() is None:
                load.kill()
                load.wait()
        if load.returncode != 0:
            raise RuntimeError("load process exited with %d" % load.returncode)
        stop_job(port, job_b)
        res = json.loads(out)
        pts_b = [p for p in train_points(port, run, last_a)
                 if res["t_start"] <= p[1] <= res["t_end"]]
        n = min(len(pts_a), len(pts_b)) - 1
        # Skip A's first batch or two (warm caches) when A has enough to spare.
        skip = min(2, len(pts_a) - 1 - n)
        ips_a = img_per_s(pts_a[skip:], n)
        ips_b = img_per_s(pts_b, n)
        ratio = ips_b / ips_a

        with open("/proc/loadavg") as f:
            loadavg = f.read().split()[:3]
        print("sgdrd API latency benchmark: %s, %d training threads (BLAS %s), "
              "load average %s" % (health.get("version", "?"), args.threads,
                                   health.get("blas_core", health.get("blas", "?")),
                                   " ".join(loadavg)))
        print("load: %d keep-alive clients, one request each every %.0f ms, for %.0f s, "
              "+1 SSE subscriber; daemon threads by nice value during load: %s"
              % (args.clients, args.interval_ms, args.seconds,
                 ", ".join("nice %d: %d" % (k, v) for k, v in sorted(nices.items()))))
        print()
        print("| endpoint | requests | failures | p50 ms | p99 ms | max ms | target |")
        print("|---|---:|---:|---:|---:|---:|---|")
        met = True
        total_fail = 0
        for name, label in (("jobs", "GET /jobs/{id}"),
                            ("metrics", "GET /runs/{id}/metrics?limit=1000"),
                            ("health", "GET /health")):
            xs = res["lat"][name]
            nf = len(res["fails"][name])
            total_fail += nf
            p50 = percentile(xs, 50) if xs else float("nan")
            p99 = percentile(xs, 99) if xs else float("nan")
            mx = max(xs) if xs else float("nan")
            tgt = "-"
            if name != "health":
                ok = bool(xs) and p99 < P99_TARGET_MS
                met = met and ok
                tgt = "p99 < %g ms: %s" % (P99_TARGET_MS, "met" if ok else "NOT met")
            print("| %s | %d | %d | %.2f | %.2f | %.2f | %s |"
                  % (label, len(xs) + (nf - sum(1 for f in res["fails"][name]
                                                if f.startswith("HTTP"))),
                     nf, p50, p99, mx, tgt))
        sse = res["sse"]
        sse_ok = sse["status"] == 200 and sse["error"] is None and sse["metric_events"] > 0
        print("| SSE /runs/{id}/events | 1 | %d | - | - | - | %d events (%d metric)%s |"
              % (0 if sse_ok else 1, sse["events"], sse["metric_events"],
                 "" if sse_ok else ", error: %s" % sse["error"]))
        total_fail += 0 if sse_ok else 1
        print()
        print("training over %d batches of %d: %.0f img/s without HTTP load, %.0f img/s "
              "with it; ratio %.3f (target >= %.2f: %s)"
              % (n, BS, ips_a, ips_b, ratio, 1 - THROUGHPUT_TOL,
                 "met" if ratio >= 1 - THROUGHPUT_TOL else "NOT met"))
        print("batches logged: %d in phase A, %d inside the load window of phase B"
              % (len(pts_a), len(pts_b)))
        print("no failed request: %s" % ("met" if total_fail == 0 else
                                         "NOT met (%d)" % total_fail))
        for name in res["fails"]:
            for f in res["fails"][name][:3]:
                print("  failure on %s: %s" % (name, f))
        print("all targets: %s" % ("met" if met and total_fail == 0 and
                                   ratio >= 1 - THROUGHPUT_TOL else "NOT met"))
        return 0
    except Exception:
        log.flush()
        with open(log.name) as f:
            sys.stderr.write("daemon log tail:\n" + f.read()[-3000:])
        raise
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
