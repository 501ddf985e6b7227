#!/usr/bin/python3
"""bench_api.py: API latency under training (issue 5). Starts sgdrd on a free loopback port
with a temporary data dir, registers Fashion-MNIST, creates a resnet_small run and starts
one fit, during which
  A) windows with no HTTP load and
  B) windows in which another process polls GET /jobs/{id},
     GET /runs/{id}/metrics?limit=1000 and GET /health over several keep-alive
     connections, with one SSE subscriber on /runs/{id}/events,
alternate (ABBAAB...), and prints per-endpoint latency (p50/p99/max), failures, and
training img/s (from the daemon's own per-batch metric times) over the A and the B windows.

Usage: /usr/bin/python3 bench/api/bench_api.py [--bin build/daemon/sgdrd] [--seconds 30]
       [--clients 4] [--interval-ms 50] [--threads 2] [--rounds 3]
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

    requests = {name: ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path).encode()
                for name, path in paths}

    def exchange(sock, req):
        """Sends one pre-encoded request and reads its answer on a keep-alive socket:
        (status, body, close). Raw sockets: http.client costs the load process (which
        shares the daemon's two cores) about twice the CPU."""
        sock.sendall(req)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed in the headers")
            buf += chunk
        head, body = buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length, close = None, False
        for h in lines[1:]:
            k, _, v = h.partition(b":")
            k = k.strip().lower()
            if k == b"content-length":
                length = int(v)
            elif k == b"connection" and v.strip().lower() == b"close":
                close = True
        if length is None:
            raise ConnectionError("answer without Content-Length")
        parts = [body]
        got = len(body)
        while got < length:
            chunk = sock.recv(max(65536, length - got))
            if not chunk:
                raise ConnectionError("connection closed in the body")
            parts.append(chunk)
            got += len(chunk)
        return status, b"".join(parts), close

    def client(k):
        sock = None
        nxt = start + interval * k / max(1, args.clients)
        for i in range(max_requests):
            now = time.monotonic()
            if now >= end:
                break
            if nxt > now:
                time.sleep(nxt - now)
            nxt += interval
            name, _ = paths[(i + k) % len(paths)]
            t = time.perf_counter()
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                status, body, close = exchange(sock, requests[name])
                dt = (time.perf_counter() - t) * 1000.0
                ok = status == 200 and body[:1] == b"{"
                if ok and name == "metrics":
                    ok = b'"points"' in body    # no parse: keep the client's CPU small
                with lock:
                    lat[name].append(dt)
                    if not ok:
                        fails[name].append("HTTP %d" % status)
                if close:
                    sock.close()
                    sock = None
            except Exception as e:  # a failed request is a figure, not a crash
                with lock:
                    fails[name].append("%s: %s" % (type(e).__name__, e))
                if sock is not None:
                    sock.close()
                sock = None
        if sock is not None:
            sock.close()

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
    json.dump({"t_start": t0, "t_end": time.time(), "lat": lat, "fails": fails, "sse": sse,
               "cpu_s": sum(os.times()[:2])}, sys.stdout)


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


def print_log_tail(log):
    """The last 3,000 characters of the daemon's log on stderr (after a failure)."""
    if log is None:
        return
    log.flush()
    with open(log.name) as f:
        sys.stderr.write("daemon log tail:\n" + f.read()[-3000:])


def stop_daemon(proc, log, root):
    """SIGTERM to the daemon (SIGKILL after 20 s), then its log closed and root removed."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if log is not None:
        log.close()
    shutil.rmtree(root, ignore_errors=True)


def cpu_s(pid):
    """User + system CPU seconds the process has used so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternating unloaded/loaded windows; the load runs for "
                         "--seconds in all")
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
    args.rounds = max(1, min(args.rounds, 10))

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

        # One fit; unloaded (A) and loaded (B) windows alternate, so that a drift of the
        # machine (other jobs, caches) falls on both alike.
        job = must(port, "POST", "%s/runs/%d/fit" % (API, run), fit, want=(202,))["id"]
        wait_training(port, run, job, -1)
        win = args.seconds / args.rounds
        windows = {"A": [], "B": []}
        cpu = {"A": 0.0, "B": 0.0}
        res = None
        nices = {}
        for rnd in range(args.rounds):
            for phase in ("A", "B") if rnd % 2 == 0 else ("B", "A"):
                c0, w0 = cpu_s(proc.pid), time.time()
                if phase == "A":
                    time.sleep(win)
                else:
                    load = subprocess.Popen(
                        [sys.executable, os.path.abspath(__file__), "--load", "--port",
                         str(port), "--job", str(job), "--run", str(run), "--seconds",
                         str(win), "--clients", str(args.clients), "--interval-ms",
                         str(args.interval_ms)], stdout=subprocess.PIPE)
                    try:
                        time.sleep(win / 2)
                        nices = thread_nices(proc.pid)  # mid-load: connection threads exist
                        out, _ = load.communicate(timeout=win + 60)
                    finally:
                        if load.poll() is None:
                            load.kill()
                            load.wait()
                    if load.returncode != 0:
                        raise RuntimeError("load process exited with %d" % load.returncode)
                    part = json.loads(out)
                    if res is None:
                        res = part
                    else:
                        for name in res["lat"]:
                            res["lat"][name] += part["lat"][name]
                            res["fails"][name] += part["fails"][name]
                        for k in ("events", "metric_events"):
                            res["sse"][k] += part["sse"][k]
                        for k in ("error", "status"):
                            if part["sse"]["error"] is not None or k == "status":
                                res["sse"][k] = part["sse"][k]
                        res["cpu_s"] += part["cpu_s"]
                cpu[phase] += cpu_s(proc.pid) - c0
                windows[phase].append((w0, time.time()))
        stop_job(port, job)
        pts = train_points(port, run, -1)

        def window_rate(t0, t1):
            """(images, seconds) of the batches ending inside [t0, t1], timed from the
            first such batch to the last."""
            inside = [t for _, t in pts if t0 <= t <= t1]
            if len(inside) < 2:
                return 0.0, 0.0
            return (len(inside) - 1) * BS, inside[-1] - inside[0]

        def phase_rate(phase):
            imgs = secs = 0.0
            for (t0, t1) in windows[phase]:
                i, t = window_rate(t0, t1)
                imgs, secs = imgs + i, secs + t
            return (imgs / secs if secs > 0 else float("nan")), int(round(imgs / BS))

        ips_a, nb_a = phase_rate("A")
        ips_b, nb_b = phase_rate("B")
        ratio = ips_b / ips_a
        # The spread of the ratio over rounds (each round's B window against its A window)
        # says how much of a difference the machine's own drift can make.
        pairs = []
        for wa, wb in zip(windows["A"], windows["B"]):
            (ia, ta), (ib, tb) = window_rate(*wa), window_rate(*wb)
            if ta > 0 and tb > 0 and ia > 0:
                pairs.append((ib / tb) / (ia / ta))
        if len(pairs) >= 2:
            mean = sum(pairs) / len(pairs)
            sd = (sum((x - mean) ** 2 for x in pairs) / (len(pairs) - 1)) ** 0.5
            spread = "; per round %.3f +- %.3f (mean +- standard error of %d rounds)" % (
                mean, sd / len(pairs) ** 0.5, len(pairs))
        else:
            spread = ""
        wall = args.seconds

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
        print("training (%d alternating windows of %.0f s each way; %d batches of %d "
              "without load, %d with it): %.0f img/s without HTTP load, %.0f img/s with "
              "it; ratio %.3f (target >= %.2f: %s)%s"
              % (args.rounds, win, nb_a, BS, nb_b, ips_a, ips_b, ratio, 1 - THROUGHPUT_TOL,
                 "met" if ratio >= 1 - THROUGHPUT_TOL else "NOT met", spread))
        print("daemon CPU: %.2f cores busy without load, %.2f with it; the load process "
              "used %.1f CPU-s in %.0f s" % (cpu["A"] / wall, cpu["B"] / wall, res["cpu_s"],
                                             args.seconds))
        print("no failed request: %s" % ("met" if total_fail == 0 else
                                         "NOT met (%d)" % total_fail))
        for name in res["fails"]:
            for f in res["fails"][name][:3]:
                print("  failure on %s: %s" % (name, f))
        print("all targets: %s" % ("met" if met and total_fail == 0 and
                                   ratio >= 1 - THROUGHPUT_TOL else "NOT met"))
        return 0
    except Exception:
        print_log_tail(log)
        raise
    finally:
        stop_daemon(proc, log, root)


if __name__ == "__main__":
    sys.exit(main())
