"""test_metrics.py: charts of long runs and the operators' /metrics. GET /runs/{id}/metrics
with max_points keeps the first, last and extreme points of a window and never answers more
than asked; a zoomed window (after_step, before_step) is exact. GET /metrics is Prometheus
text that promtool accepts, labels requests by route pattern only, and is guarded like
/api/v1 (Host check, token). The points are written straight into the daemon's database
(as a long fit would leave them), before any read of that run could be cached."""
import os
import re
import shutil
import sqlite3
import subprocess

import pytest

from conftest import API, assert_problem, make_image_dataset

N = 20000
SPIKE, DIP, GAP = 12345, 777, 5000


@pytest.fixture(scope="module")
def long_run(daemon):
    """A run with N steps of train_loss (a spike, a dip and one non-finite value) and 40 of
    lr_0."""
    root = make_image_dataset(os.path.join(daemon.datasets, "longrun"), per_class=4)
    r = daemon.post(API + "/datasets", {"name": "longrun", "path": root, "format": "folders"})
    assert r.status == 201, r
    r = daemon.post(API + "/runs", {"dataset": r.json()["id"], "arch": "resnet_small"})
    assert r.status == 201, r
    rid = r.json()["id"]

    def loss(s):
        if s == SPIKE:
            return 50.0
        if s == DIP:
            return -3.0
        if s == GAP:
            return None
        return 1.0 / (1 + s * 1e-3) + 0.01 * ((s * 7919) % 13)

    rows = [(rid, "train_loss", s, loss(s), 1e9 + s) for s in range(N)]
    rows += [(rid, "lr_0", s, 1e-3, 1e9 + s) for s in range(40)]
    db = sqlite3.connect(os.path.join(daemon.data, "sgdrd.db"), timeout=30)
    with db:
        db.executemany("INSERT INTO metrics (run_id, key, step, value, time) "
                       "VALUES (?, ?, ?, ?, ?)", rows)
    db.close()
    return rid


def view(daemon, rid, query):
    r = daemon.get(API + "/runs/%d/metrics?%s" % (rid, query))
    assert r.status == 200, r
    return r.json()


def steps_of(doc, key):
    s = [p["step"] for p in doc["points"] if p["key"] == key]
    assert s == sorted(set(s))
    return s


def test_max_points_keeps_first_last_and_extremes(daemon, long_run):
    for mp in (2, 3, 10, 500, 1000):
        doc = view(daemon, long_run, "key=train_loss&max_points=%d" % mp)
        s = steps_of(doc, "train_loss")
        assert len(s) <= mp
        assert s[0] == 0 and s[-1] == N - 1
        assert doc["downsampled"] is True and doc["max_points"] == mp
        assert doc["next_after_step"] is None
        if mp >= 10:
            assert SPIKE in s and DIP in s
            values = {p["step"]: p["value"] for p in doc["points"]}
            assert values[SPIKE] == 50.0 and values[DIP] == -3.0


def test_every_key_is_downsampled_on_its_own(daemon, long_run):
    doc = view(daemon, long_run, "max_points=100")
    assert doc["key"] is None
    assert len(steps_of(doc, "train_loss")) <= 100
    assert steps_of(doc, "lr_0") == list(range(40))
    keys = [p["key"] for p in doc["points"]]
    assert keys == sorted(keys)


def test_zoom_window_is_exact(daemon, long_run):
    doc = view(daemon, long_run, "key=train_loss&after_step=4990&before_step=5100"
                                 "&max_points=1000")
    assert steps_of(doc, "train_loss") == list(range(4991, 5100))
    assert doc["downsampled"] is False
    gap = [p for p in doc["points"] if p["step"] == GAP]
    assert gap[0]["value"] is None
    # The same window paged at full resolution.
    got, after = [], 4990
    while after is not None:
        page = view(daemon, long_run, "key=train_loss&after_step=%d&before_step=5100&limit=30"
                    % after)
        got += steps_of(page, "train_loss")
        after = page["next_after_step"]
    assert got == list(range(4991, 5100))
    # A window too big for max_points keeps its own ends and extremes.
    doc = view(daemon, long_run, "key=train_loss&after_step=700&before_step=13000"
                                 "&max_points=50")
    s = steps_of(doc, "train_loss")
    assert len(s) <= 50 and s[0] == 701 and s[-1] == 12999
    assert SPIKE in s and DIP in s


def summarise_run(daemon, rid):
    """Builds the run's metric summaries, as the daemon keeps them for points it writes
    itself, with the statements of the schema migration that introduced them, in order."""
    with open(os.path.join(os.environ["SGDRD_SRC"], "store", "schema.sql")) as f:
        sql = f.read()
    db = sqlite3.connect(os.path.join(daemon.data, "sgdrd.db"), timeout=30)
    start = sql.find("INSERT INTO metric_summaries")
    with db:
        while start >= 0:
            end = sql.index(";", start)
            stmt = sql[start:end].replace("INSERT INTO metric_summaries",
                                          "INSERT INTO metric_summaries SELECT * FROM (",
                                          1) + ") WHERE run_id = %d" % rid
            db.execute(stmt)
            start = sql.find("INSERT INTO metric_summaries", end)
    db.close()


def extremes(doc, key):
    pts = [p for p in doc["points"] if p["key"] == key and p["value"] is not None]
    lo = min(pts, key=lambda p: (p["value"], p["step"]))
    hi = max(pts, key=lambda p: (p["value"], -p["step"]))
    return lo["step"], lo["value"], hi["step"], hi["value"]


def test_views_from_summaries_keep_what_the_rows_give(daemon, long_run):
    """The same points with their write-time summaries: each view has the same shape, ends
    and extremes as from the rows alone, and only stored points."""
    ds = daemon.get(API + "/runs/%d" % long_run).json()["dataset"]
    r = daemon.post(API + "/runs", {"dataset": ds, "arch": "resnet_small"})
    assert r.status == 201, r
    rid = r.json()["id"]
    db = sqlite3.connect(os.path.join(daemon.data, "sgdrd.db"), timeout=30)
    with db:
        db.execute("INSERT INTO metrics (run_id, key, step, value, time) SELECT ?, key, "
                   "step, value, time FROM metrics WHERE run_id = ?", (rid, long_run))
    db.close()
    stored = {(p["key"], p["step"]): p["value"]
              for p in view(daemon, long_run, "limit=100000")["points"]}
    queries = ["key=train_loss&max_points=100", "max_points=60", "max_points=400",
               "key=train_loss&max_points=4",
               "key=train_loss&after_step=700&before_step=13000&max_points=20",
               "key=train_loss&after_step=777&before_step=19001&max_points=250"]
    rows = {q: view(daemon, rid, q) for q in queries}
    summarise_run(daemon, rid)
    # A commit, so that the page cache forgets the answers from the rows.
    assert daemon.post(API + "/runs", {"dataset": ds, "arch": "resnet_small"}).status == 201
    for q in queries:
        a, b = rows[q], view(daemon, rid, q)
        assert {k: v for k, v in a.items() if k != "points"} == \
            {k: v for k, v in b.items() if k != "points"}
        for key in ("train_loss", "lr_0"):
            sa, sb = steps_of(a, key), steps_of(b, key)
            if not sa:
                continue
            assert len(sb) <= b["max_points"]
            assert (sa[0], sa[-1]) == (sb[0], sb[-1])
            assert extremes(a, key) == extremes(b, key)
        for p in b["points"]:
            assert stored[(p["key"], p["step"])] == p["value"]
    # The views read the summaries, those with buckets of 100 steps too: the summaries of
    # step 10240, changed behind the daemon's back, show.
    db = sqlite3.connect(os.path.join(daemon.data, "sgdrd.db"), timeout=30)
    with db:
        db.execute("UPDATE metric_summaries SET max_value = 999 WHERE run_id = ? AND "
                   "key = 'train_loss' AND bucket = 10240 >> (6 + 2 * level)", (rid,))
    db.close()
    assert daemon.post(API + "/runs", {"dataset": ds, "arch": "resnet_small"}).status == 201
    for q in ("key=train_loss&max_points=100", "key=train_loss&max_points=400"):
        assert extremes(view(daemon, rid, q), "train_loss")[3] == 999


@pytest.mark.parametrize("query,field", [
    ("max_points=1", "max_points"),
    ("max_points=100001", "max_points"),
    ("max_points=ten", "max_points"),
    ("max_points=10&limit=10", "max_points"),
    ("before_step=-2", "before_step"),
    ("before_step=x", "before_step"),
])
def test_bad_view_is_refused(daemon, long_run, query, field):
    assert_problem(daemon.get(API + "/runs/%d/metrics?%s" % (long_run, query)), 400,
                   field=field)


def test_view_of_missing_run(daemon):
    assert_problem(daemon.get(API + "/runs/987654/metrics?max_points=10"), 404)


# ---- GET /metrics -------------------------------------------------------------------------

FAMILIES = ["sgdrd_queue_length", "sgdrd_running_job", "sgdrd_jobs",
            "sgdrd_training_images_per_second", "sgdrd_epoch_duration_seconds",
            "sgdrd_event_stream_subscribers", "sgdrd_store_bytes",
            "sgdrd_http_requests_total", "sgdrd_http_request_duration_seconds"]


def scrape(d, **kw):
    r = d.get("/metrics", **kw)
    assert r.status == 200, r
    assert r.ctype.startswith("text/plain; version=0.0.4")
    return r.body.decode()


def test_prometheus_text_passes_promtool(daemon, long_run):
    daemon.get(API + "/runs/%d/metrics?key=train_loss&limit=5" % long_run)
    daemon.get(API + "/runs/424242")
    daemon.get("/no/such/file.js")
    text = scrape(daemon)
    for fam in FAMILIES:
        assert "# TYPE %s " % fam in text, fam
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    p = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()


def test_requests_are_labelled_by_route_pattern(daemon, long_run):
    for _ in range(3):
        daemon.get(API + "/runs/%d/metrics?key=lr_0&max_points=10" % long_run)
    daemon.get(API + "/runs/424242")
    daemon.get("/no/such/page-%d.js" % long_run)
    daemon.get(API + "/no/such/route")
    text = scrape(daemon)
    assert 'route="static",method="GET",code="404"' in text
    assert 'route="unrouted",method="GET",code="404"' in text
    counts = dict(re.findall(r'^sgdrd_http_requests_total\{(route="[^"]*",method="GET",'
                             r'code="200")\} (\d+)$', text, re.M))
    assert int(counts['route="/api/v1/runs/{id}/metrics",method="GET",code="200"']) >= 3
    assert 'route="/api/v1/runs/{id}",method="GET",code="404"' in text
    # Never a raw URL: no id, no query string in any label.
    assert not re.search(r'route="[^"]*(\d{3,}|\?)', text)
    assert re.search(r'^sgdrd_http_request_duration_seconds_bucket\{route="/api/v1/runs/\{id\}/'
                     r'metrics",method="GET",code="200",le="\+Inf"\} \d+$', text, re.M)
    assert re.search(r'^sgdrd_store_bytes [1-9]\d*$', text, re.M)


def test_metrics_passes_the_host_check(daemon):
    r = daemon.get("/metrics", headers={"Host": "rebind.evil.example:%d" % daemon.port})
    assert_problem(r, 403, field="Host", code="HOST_NOT_ALLOWED")


def test_metrics_takes_the_token(token_daemon):
    assert_problem(token_daemon.get("/metrics", auth=False), 401)
    text = scrape(token_daemon)
    assert "sgdrd_queue_length 0" in text
    # The refusal is counted, under no route of its own.
    assert re.search(r'^sgdrd_http_requests_total\{route="unrouted",method="GET",code="401"\} '
                     r'[1-9]', text, re.M), text
