#!/usr/bin/python3
"""bench_charts.py: charts of a long run (issue 22). Starts sgdrd on a free loopback port
with a temporary data dir, creates a run and writes --points metric points into it (three
keys, train_loss, smooth_loss and lr_0, as a fit would; straight into the database with
sqlite3, before anything reads the run), then prints
  - the API time of a 1,000-point and of a 4,000-point view of train_loss (max_points=1000
    and 4000, the latter what the run page asks for) both ways: first from the rows alone
    (the points were written without their summaries), then, once the summaries are built
    with the schema migration's own statements, from them: the first answer, and the median
    of repeated ones (served from the daemon's page cache until the next commit); and of a
    1,000-step zoomed window at full resolution;
  - the Chromium times, via bench_charts_page.mjs: the dashboard's first page in a fresh
    browser, then the run page until its training chart has drawn (the daemon's first
    read of the run), a reload of it, and a zoom into a 1,000-step window;
and each against its target (API: TARGET_API_MS, page: TARGET_PAGE_MS) as a ratio.

Usage: /usr/bin/python3 bench/api/bench_charts.py [--bin build/daemon/sgdrd]
       [--points 1000000] [--repeat 20]
Needs python3-pil, node, Debian's chromium and tests/e2e/node_modules (playwright-core).
Only loopback traffic; the daemon is killed at the end, also on failure."""
import argparse
import http.client
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

API = "/api/v1"
TARGET_API_MS = 5.0
TARGET_PAGE_MS = 1000.0
HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port, method, path, body=None):
    """One request on a fresh connection: (status, body bytes, seconds)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        h = {}
        if body is not None:
            body = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        t0 = time.perf_counter()
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        return r.status, data, time.perf_counter() - t0
    finally:
        c.close()


def make_dataset(root):
    from PIL import Image
    for split, n in (("train", 4), ("valid", 2)):
        for cls, color in (("red", (200, 40, 40)), ("blue", (40, 40, 200))):
            d = os.path.join(root, split, cls)
            os.makedirs(d, exist_ok=True)
            for i in range(n):
                Image.new("RGB", (32, 32), color).save(os.path.join(d, "%d.png" % i))


def fill(db_path, run, points):
    """points metric rows over three keys: a noisy falling loss with a spike, its
    smoothing, a one-cycle learning rate."""
    steps = (points + 2) // 3
    db = sqlite3.connect(db_path, timeout=60)
    smooth = 0.0

    def rows():
        nonlocal smooth
        for s in range(steps):
            loss = 2.0 / (1 + s * 1e-4) + 0.05 * ((s * 7919) % 97) / 97
            if s == steps // 3:
                loss = 25.0
            smooth = 0.98 * smooth + 0.02 * loss
            t = 1.7e9 + s * 0.01
            lr = 1e-3 * (1 - abs(2.0 * s / steps - 1))
            yield (run, "train_loss", s, loss, t)
            yield (run, "smooth_loss", s, smooth / (1 - 0.98 ** (s + 1)), t)
            yield (run, "lr_0", s, lr, t)

    with db:
        db.executemany("INSERT INTO metrics (run_id, key, step, value, time) "
                       "VALUES (?, ?, ?, ?, ?)", rows())
    n = db.execute("SELECT count(*) FROM metrics WHERE run_id = ?", (run,)).fetchone()[0]
    db.close()
    return steps, n


def summarise(db_path):
    """Builds the metric summaries of every stored point with the statements the schema's
    migration to them runs (store/schema.sql), in their order, as the daemon keeps them for
    points it writes itself."""
    with open(os.path.join(HERE, "..", "..", "store", "schema.sql"), encoding="utf-8") as f:
        sql = f.read()
    db = sqlite3.connect(db_path, timeout=60)
    start = sql.find("INSERT INTO metric_summaries")
    with db:
        while start >= 0:
            end = sql.index(";", start)
            db.execute(sql[start:end])
            start = sql.find("INSERT INTO metric_summaries", end)
    db.close()


def timed(port, path, repeat):
    status, body, first = call(port, "GET", path)
    if status != 200:
        raise SystemExit("GET %s: %d %s" % (path, status, body[:300]))
    again = [call(port, "GET", path)[2] for _ in range(repeat)]
    return json.loads(body), first * 1e3, statistics.median(again) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/daemon/sgdrd")
    ap.add_argument("--points", type=int, default=1000000)
    ap.add_argument("--repeat", type=int, default=20)
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="sgdrd-bench-charts-")
    proc = None
    try:
        make_dataset(os.path.join(root, "datasets", "colors"))
        port = free_port()
        log = open(os.path.join(root, "daemon.log"), "w")
        proc = subprocess.Popen([a.bin, "--listen", "127.0.0.1:%d" % port, "--data-dir",
                                 os.path.join(root, "var"), "--dataset-root",
                                 os.path.join(root, "datasets"), "--threads", "1"],
                                stdout=log, stderr=subprocess.STDOUT)
        for _ in range(600):
            try:
                if call(port, "GET", API + "/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        st, body, _ = call(port, "POST", API + "/datasets",
                           {"name": "colors", "format": "folders",
                            "path": os.path.join(root, "datasets", "colors")})
        assert st == 201, body
        dataset = json.loads(body)["id"]
        st, body, _ = call(port, "POST", API + "/runs",
                           {"dataset": dataset, "arch": "resnet_small"})
        assert st == 201, body
        run = json.loads(body)["id"]
        t0 = time.perf_counter()
        steps, n = fill(os.path.join(root, "var", "sgdrd.db"), run, a.points)
        print("run %d: %d points over %d steps (written in %.1f s)"
              % (run, n, steps, time.perf_counter() - t0))

        base = API + "/runs/%d/metrics?" % run
        for how in ("rows", "summaries"):
            if how == "summaries":
                t0 = time.perf_counter()
                summarise(os.path.join(root, "var", "sgdrd.db"))
                print("summaries built in %.1f s" % (time.perf_counter() - t0))
                # A commit (another run), so that the page cache forgets the answer from
                # the rows.
                st, body, _ = call(port, "POST", API + "/runs",
                                   {"dataset": dataset, "arch": "resnet_small"})
                assert st == 201, body
            for mp in (1000, 4000):
                doc, first, warm = timed(port, base + "key=train_loss&max_points=%d" % mp,
                                         a.repeat)
                print("API  %s-point view (max_points=%d) from the %s: %d points; first "
                      "%.1f ms (%.1fx the %.0f ms target), cached %.2f ms (%.2fx)"
                      % (format(mp, ","), mp, how, len(doc["points"]), first,
                         first / TARGET_API_MS, TARGET_API_MS, warm, warm / TARGET_API_MS))
        z = steps // 2
        doc, first, warm = timed(port, base + "key=train_loss&after_step=%d&before_step=%d"
                                 "&max_points=1000" % (z - 1, z + 1000), a.repeat)
        print("API  1,000-step zoomed window: %d points (downsampled: %s); first %.2f ms "
              "(%.2fx), cached %.2f ms (%.2fx)"
              % (len(doc["points"]), doc["downsampled"], first, first / TARGET_API_MS, warm,
                 warm / TARGET_API_MS))

        node = shutil.which("node")
        p = subprocess.run([node, os.path.join(HERE, "bench_charts_page.mjs"),
                            "http://127.0.0.1:%d" % port, str(run), str(steps // 4)],
                           capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            raise SystemExit("bench_charts_page.mjs failed:\n" + p.stdout + p.stderr)
        page = json.loads(p.stdout.strip().splitlines()[-1])
        for k in ("dashboard_ms", "run_page_ms", "reload_ms", "zoom_ms"):
            print("page %-14s %6.0f ms (%.2fx the %.0f ms target)"
                  % (k[:-3].replace("_", " "), page[k], page[k] / TARGET_PAGE_MS,
                     TARGET_PAGE_MS))
        print("page overview draws %d train_loss points" % page["overview_points"])
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
