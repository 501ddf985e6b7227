"""test_cli.py: the built sgdr against the real daemon: register and upload datasets, create
a run, LR sweep, fit, TTA, the recipe, predict, predictions of test/, downloads; --json
output parsed; the daemon's errors on one readable line with exit 2 (1 when it cannot be
reached); the exit status of followed jobs (0 succeeded, 3 failed, 4 cancelled,
5 interrupted); the progress bar on a terminal."""
import json
import os
import shutil
import subprocess
import tarfile
import time

import pytest

from api_conftest import API, make_image_dataset, make_png


def ok(r):
    assert r.rc == 0, r
    return r


def js(r):
    """The JSON a --json command printed."""
    ok(r)
    return json.loads(r.out)


@pytest.fixture(scope="module")
def flow(daemon, sgdr):
    """A registered two-class dataset (with an unlabelled test/ folder) and a run on it."""
    root = make_image_dataset(os.path.join(daemon.datasets, "cliflow"), per_class=8)
    for i in range(3):
        make_png(os.path.join(root, "test", "t%d.png" % i), 32, 32, (200, 40, 40), i)
    ds = js(sgdr(daemon, "--json", "datasets", "add", "cliflow", root))
    assert ds["name"] == "cliflow" and ds["info"]["classes"] == ["blue", "red"]
    run = js(sgdr(daemon, "runs", "create", "--dataset", "cliflow", "--arch", "resnet_small",
                  "--sz", 28, "--bs", 8, "--tfms", "none", "--pad", 2, "--seed", 1, "--json"))
    assert run["dataset"] == ds["id"] and run["config"]["bs"] == 8
    assert run["config"]["pad"] == 2
    return daemon, ds, run["id"], root


def test_health(daemon, sgdr):
    r = ok(sgdr(daemon, "health"))
    assert "sgdrd" in r.out and ": ok," in r.out, r
    assert js(sgdr(daemon, "health", "--json"))["status"] == "ok"


def test_datasets_list_and_show(flow, sgdr):
    d, ds, _, root = flow
    r = ok(sgdr(d, "datasets", "show", ds["id"]))
    assert "2 classes: blue, red" in r.out and "train 16, valid 4, test 3" in r.out, r
    page = js(sgdr(d, "--json", "datasets"))
    assert ds["id"] in [x["id"] for x in page["items"]]
    r = ok(sgdr(d, "datasets", "ls"))
    assert r.out.split("\n")[0].split()[:3] == ["ID", "NAME", "FORMAT"], r
    assert "cliflow" in r.out and root in r.out


def test_upload_gzip_and_tar_then_delete(flow, sgdr, tmp_path):
    d, _, _, root = flow
    for name, mode in (("up-gz", "w:gz"), ("up-tar", "w")):
        archive = str(tmp_path / (name + ".archive"))
        with tarfile.open(archive, mode) as t:
            for part in ("train", "valid"):
                t.add(os.path.join(root, part), arcname=part)
        up = js(sgdr(d, "--json", "datasets", "upload", name, archive))
        assert up["uploaded"] is True and up["info"]["counts"]["train"] == 16, up
        r = ok(sgdr(d, "datasets", "rm", up["id"]))
        assert "deleted" in r.out
        r = sgdr(d, "datasets", "show", up["id"])
        assert r.rc == 2 and "404 RESOURCE_DOES_NOT_EXIST" in r.err, r


def test_the_flow(flow, sgdr, tmp_path):
    d, _, run, _ = flow
    r = ok(sgdr(d, "lr-find", run, "--start-lr", "1e-5", "--end-lr", 10, "--num-it", 10,
                "--wait"))
    assert "queued: lr_find on run %d" % run in r.out and "succeeded" in r.out, r
    assert "100%  succeeded" in r.err, r    # plain progress lines off a terminal
    assert "suggested lr valley " in r.out, r
    r = ok(sgdr(d, "fit", run, "--lrs", 0.01, "--cycles", 1, "--cycle-len", 1,
                "--cycle-mult", 1, "--wait"))
    assert "fit succeeded in" in r.out, r
    assert js(sgdr(d, "runs", "show", run, "--json"))["epochs"] == 1
    r = ok(sgdr(d, "runs", "epochs", run))
    assert r.out.split()[:6] == ["EPOCH", "CYCLE", "JOB", "TRAIN_LOSS", "VALID_LOSS",
                                 "ACCURACY"] and len(r.out.splitlines()) == 2, r
    r = ok(sgdr(d, "tta", run, "--n-aug", 1, "--wait"))
    assert "result: {" in r.out and "tta_accuracy" in r.out, r
    job = js(sgdr(d, "--json", "recipe", run, "--max-epochs", 1, "--n-aug", 1, "--wait"))
    assert job["kind"] == "recipe" and job["state"] == "succeeded", job
    assert 0 <= job["result"]["tta_accuracy"] <= 1
    r = ok(sgdr(d, "runs", "show", run))
    assert "arch          resnet_small" in r.out, r


def test_predict(flow, sgdr, tmp_path):
    d, _, run, _ = flow
    img = str(tmp_path / "red.png")
    make_png(img, 32, 32, (200, 40, 40))
    r = ok(sgdr(d, "predict", run, img))
    assert r.out.split()[0] in ("blue", "red") and "  red " in r.out, r
    p = js(sgdr(d, "--json", "predict", run, img, "--tta"))
    assert p["classes"] == ["blue", "red"] and p["tta"] is True
    assert abs(sum(p["probs"]) - 1) < 1e-3
    junk = str(tmp_path / "junk.png")
    with open(junk, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n broken")
    r = sgdr(d, "predict", run, junk)
    assert r.rc == 2 and r.err.startswith("sgdr: 400 INVALID_PARAMETER_VALUE"), r


def test_downloads(flow, sgdr, tmp_path):
    d, _, run, _ = flow
    w = str(tmp_path / "w.safetensors")
    r = ok(sgdr(d, "weights", run, "-o", w))
    assert "wrote " + w in r.out
    with open(w, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    assert 8 + n < len(data) and data[8:9] == b"{", data[:64]
    header = json.loads(data[8:8 + n])
    tensors = [v for k, v in header.items() if k != "__metadata__"]
    assert tensors and all({"dtype", "shape", "data_offsets"} <= set(t) for t in tensors)
    # the weights back in as a pretrained model, a run on it, and its delete refused
    m = js(sgdr(d, "--json", "models", "import", "cli-small", w, "--arch", "resnet_small"))
    assert m["arch"] == "resnet_small" and m["bytes"] == len(data), m
    assert "cli-small" in ok(sgdr(d, "models")).out
    r2 = js(sgdr(d, "--json", "runs", "create", "--dataset", "cliflow", "--arch",
                 "resnet_small", "--pretrained", m["id"], "--sz", 28, "--bs", 8))
    assert r2["model"] == m["id"], r2
    r = sgdr(d, "models", "rm", m["id"])
    assert r.rc == 2 and "409 RESOURCE_CONFLICT" in r.err, r
    ok(sgdr(d, "runs", "rm", r2["id"]))
    assert "deleted" in ok(sgdr(d, "models", "rm", m["id"])).out
    job = js(sgdr(d, "--json", "predict-test", run, "--wait"))
    assert job["state"] == "succeeded" and job["kind"] == "predict_test", job
    csv = str(tmp_path / "p.csv")
    ok(sgdr(d, "predictions", job["id"], "--output", csv))
    with open(csv) as f:
        lines = f.read().splitlines()
    assert len(lines) == 4 and "blue" in lines[0] and "red" in lines[0], lines
    r = ok(sgdr(d, "predictions", job["id"], "-o", "-"))
    assert r.out.splitlines() == lines


def test_refusals_are_readable_and_exit_2(flow, sgdr, tmp_path):
    d, _, run, _ = flow
    before = len(js(sgdr(d, "--json", "jobs", "ls", "--run", run, "--limit", 1000))["items"])
    r = sgdr(d, "fit", run, "--lrs", "0.01,0.02", "--cycles", 1)
    assert r.rc == 2, r
    assert r.err.startswith("sgdr: 400 INVALID_PARAMETER_VALUE (field lrs): "), r
    assert r.out == ""
    after = len(js(sgdr(d, "--json", "jobs", "ls", "--run", run, "--limit", 1000))["items"])
    assert after == before    # nothing was queued
    r = sgdr(d, "runs", "show", 999999)
    assert r.rc == 2 and r.err == "sgdr: 404 RESOURCE_DOES_NOT_EXIST: run 999999 does not exist\n", r
    r = sgdr(d, "jobs", "ls", "--state", "sleeping")
    assert r.rc == 2 and "(field state)" in r.err, r
    missing = str(tmp_path / "never.safetensors")
    r = sgdr(d, "weights", 999999, "-o", missing)
    assert r.rc == 2 and "404" in r.err and not os.path.exists(missing), r
    older = tmp_path / "older.safetensors"
    older.write_bytes(b"older")
    assert sgdr(d, "weights", 999999, "-o", str(older)).rc == 2
    assert older.read_bytes() == b"older" and os.listdir(tmp_path) == ["older.safetensors"]
    r = sgdr(d, "weights", run, "-o", str(tmp_path / "no" / "such" / "folder.st"))
    assert r.rc == 2 and "cannot create" in r.err and "folder.st.part" in r.err, r


def test_bad_command_lines_exit_2_before_any_request(sgdr):
    for args, says in ((["fit", "1", "--lrs", "abc"], "--lrs: 'abc' is not a number"),
                       (["fit", "x", "--lrs", "1"], "run: 'x' is not an id"),
                       (["runs", "create", "--sz", "big"], "--sz: 'big' is not an integer"),
                       (["fit", "1", "--bogus"], "unknown option '--bogus'"),
                       (["nosuch"], "unknown command 'nosuch'"),
                       (["jobs", "wait"], "missing arguments"),
                       (["--url", "localhost:8080", "health"], "not an http:// or https://")):
        r = sgdr(None, *args, env={"SGDR_URL": "http://127.0.0.1:9"})
        assert r.rc == 2 and says in r.err, (args, r)
    r = ok(sgdr(None, "fit", "--help"))
    assert r.out.startswith("usage: sgdr fit RUN") and "--cycle-len" in r.out


def test_unreachable_daemon_exits_1(sgdr):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = sgdr(None, "--url", "http://127.0.0.1:%d" % port, "health")
    assert r.rc == 1 and r.err.startswith("sgdr: cannot reach http://127.0.0.1:%d" % port), r


def test_jobs_wait_exit_status(flow, sgdr):
    """wait on a succeeded job: 0; a cancelled one: 4 (its JSON under --json); a failed one
    (its dataset's folder is gone): 3, with the job's error."""
    d, _, run, _ = flow
    done = js(sgdr(d, "--json", "jobs", "ls", "--run", run, "--state", "succeeded"))["items"]
    assert ok(sgdr(d, "jobs", "wait", done[0]["id"])).out.startswith("job %d " % done[0]["id"])
    long_fit = js(sgdr(d, "--json", "fit", run, "--lrs", 0.01, "--cycles", 8, "--cycle-len",
                       20))
    assert long_fit["state"] in ("queued", "running")
    r = ok(sgdr(d, "jobs", "cancel", long_fit["id"]))
    assert "state" in r.out
    r = sgdr(d, "--json", "jobs", "wait", long_fit["id"])
    assert r.rc == 4, r
    assert json.loads(r.out)["state"] == "cancelled"
    r = sgdr(d, "jobs", "cancel", long_fit["id"])
    assert r.rc == 2 and "409 RESOURCE_CONFLICT" in r.err, r

    root = make_image_dataset(os.path.join(d.datasets, "cligone"), per_class=3)
    ok(sgdr(d, "datasets", "add", "cligone", root))
    gone = js(sgdr(d, "--json", "runs", "create", "--dataset", "cligone", "--arch",
                   "resnet_small", "--sz", 16, "--bs", 2))
    shutil.rmtree(root)
    r = sgdr(d, "tta", gone["id"], "--n-aug", 1, "--wait")
    assert r.rc == 3, r
    assert "tta failed" in r.out and "error: " in r.out and "cligone" in r.out, r
    jobs = js(sgdr(d, "--json", "jobs", "--run", gone["id"]))["items"]
    assert [j["state"] for j in jobs] == ["failed"]
    assert sgdr(d, "jobs", "wait", jobs[0]["id"]).rc == 3
    ok(sgdr(d, "runs", "rm", gone["id"]))


def test_a_terminal_gets_a_bar(flow, sgdr):
    """With standard error on a terminal, --wait redraws one line: a bar, the percentage,
    the ETA while running."""
    import pty
    d, _, run, _ = flow
    master, slave = pty.openpty()
    try:
        p = subprocess.run([os.environ["SGDR_BIN"], "fit", str(run), "--lrs", "0.01",
                            "--cycles", "2", "--wait"],
                           env={"SGDR_URL": "http://127.0.0.1:%d" % d.port,
                                "HOME": "/nonexistent"},
                           stdout=subprocess.PIPE, stderr=slave, timeout=300)
        os.close(slave)
        slave = None
        seen = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if slave is not None:
            os.close(slave)
        os.close(master)
    assert p.returncode == 0, (p.stdout, seen)
    text = seen.decode()
    assert "\r" in text and "\033[K" in text, text
    assert "[##############################] 100%  succeeded" in text, text
    assert b"fit succeeded in" in p.stdout


def test_an_interrupted_job_exits_5_and_resumes(sgdr, tmp_path, monkeypatch):
    """A job whose daemon is killed under it reads interrupted after the restart: jobs wait,
    already following it, rides out the restart (same port) and exits 5; jobs resume
    queues its continuation, which a cancel ends (exit 4)."""
    import api_conftest
    from api_conftest import Daemon
    root = str(tmp_path / "daemon")
    d = Daemon(root)
    try:
        path = make_image_dataset(os.path.join(d.datasets, "intr"), per_class=8)
        ok(sgdr(d, "datasets", "add", "intr", path))
        run = js(sgdr(d, "--json", "runs", "create", "--dataset", "intr", "--arch",
                      "resnet_small", "--sz", 16, "--bs", 4, "--tfms", "none"))["id"]
        job = js(sgdr(d, "--json", "fit", run, "--lrs", 0.01, "--cycles", 8, "--cycle-len",
                      20))["id"]
        follower = subprocess.Popen([os.environ["SGDR_BIN"], "jobs", "wait", str(job)],
                                    env={"SGDR_URL": "http://127.0.0.1:%d" % d.port,
                                         "HOME": "/nonexistent"},
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(600):
            if d.get(API + "/runs/%d/epochs" % run).json()["items"]:
                break
            time.sleep(0.1)
        else:
            pytest.fail("no epoch within 60 s")
        # Three of the follower's half-second polls, so that it has seen the job running (an
        # epoch of this tiny set can be over before its next poll).
        time.sleep(1.5)
    finally:
        d.proc.kill()
        d.proc.wait()
        d.log.close()
    monkeypatch.setattr(api_conftest, "free_port", lambda: d.port)
    d = Daemon(root)
    try:
        out, err = follower.communicate(timeout=60)
        assert follower.returncode == 5, (out, err)
        assert "job %d fit interrupted" % job in out, (out, err)
        assert "running" in err and "interrupted" in err, err
        again = js(sgdr(d, "--json", "jobs", "resume", job))
        assert again["resumed_from"] == job, again
        ok(sgdr(d, "jobs", "cancel", again["id"]))
        assert sgdr(d, "jobs", "wait", again["id"]).rc == 4
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
        d.stop()
