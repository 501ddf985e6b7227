"""conftest.py: starts the real sgdrd on a free loopback port with a temporary data dir and
gives the tests a small HTTP client (the standard library's http.client) for it.

Environment (set by tests/api/meson.build): SGDRD_BIN, the built daemon; SGDRD_SRC, the
source tree (for api/routes.c, api/openapi.json and web/)."""
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

BIN = os.environ.get("SGDRD_BIN", "")
SRC = os.environ.get("SGDRD_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))
API = "/api/v1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def ctype(self):
        return self.headers.get("content-type", "")

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "Reply(%d, %s, %r)" % (self.status, self.ctype, self.body[:300])


class Daemon:
    """One sgdrd process; stopped with SIGTERM at the end of the session."""

    def __init__(self, root, extra_args=(), token=None, web_dir=None):
        self.root = root
        self.data = os.path.join(root, "var")
        self.datasets = os.path.join(root, "datasets")
        os.makedirs(self.datasets, exist_ok=True)
        self.port = free_port()
        self.token = token
        args = [BIN, "--listen", "127.0.0.1:%d" % self.port, "--data-dir", self.data,
                "--dataset-root", self.datasets, "--threads", "1", "--log-level", "debug"]
        if token:
            tf = os.path.join(root, "token")
            with open(tf, "w") as f:
                f.write(token + "\n")
            os.chmod(tf, 0o600)
            args += ["--token-file", tf]
        env = dict(os.environ)
        if web_dir:
            env["SGDRD_WEB_DIR"] = web_dir
        args += list(extra_args)
        self.log = open(os.path.join(root, "daemon.log"), "w+")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        try:
            self.wait_ready()
        except BaseException:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.log.close()
            raise

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("sgdrd exited with %s:\n%s" % (self.proc.returncode,
                                                                  self.log_text()))
            try:
                r = self.request("GET", API + "/health")
                if r.status in (200, 401):
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("sgdrd did not answer within %d s:\n%s" % (timeout,
                                                                      self.log_text()))

    def log_text(self):
        self.log.flush()
        with open(self.log.name, errors="replace") as f:
            return f.read()[-4000:]

    def connect(self, timeout=60):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, ctype=None, auth=True):
        """One request on a fresh connection. body: dict/list (sent as JSON), bytes or
        None."""
        h = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        if ctype:
            h["Content-Type"] = ctype
        if self.token and auth and "Authorization" not in h:
            h["Authorization"] = "Bearer " + self.token
        c = self.connect()
        try:
            c.request(method, path, body=body, headers=h)
            resp = c.getresponse()
            data = resp.read()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        finally:
            c.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def stop(self):
        """SIGTERM; the daemon must exit 0 within 20 s with no sanitizer report."""
        killed = False
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                killed = True
        text = self.log_text()
        self.log.close()
        assert not killed, "sgdrd ignored SIGTERM for 20 s:\n" + text
        assert self.proc.returncode == 0, "sgdrd exited %d:\n%s" % (self.proc.returncode, text)
        assert "Sanitizer" not in text and "runtime error" not in text, text

    def exit_cleanly_on(self, sig, within, during=""):
        """Sends sig; the daemon must exit 0 within `within` seconds (a failure names the
        signal and what was `during` it, or shows the log). Returns the seconds from the
        signal to its exit. The caller still owns the log: kill() closes it."""
        self.proc.send_signal(sig)
        t0 = time.monotonic()
        try:
            rc = self.proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            pytest.fail("sgdrd did not exit within %d s of %s%s" % (
                within, signal.Signals(sig).name, " " + during if during else ""))
        secs = time.monotonic() - t0
        assert rc == 0, self.log_text()
        return secs

    def kill(self):
        """SIGKILL when it still runs (a crash, for the tests of what survives one, or the end
        of a daemon that outlived exit_cleanly_on), then closes its log; no check of its exit."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def sgdrd_bin():
    if not BIN or not os.access(BIN, os.X_OK):
        pytest.fail("SGDRD_BIN does not name the built sgdrd (got %r)" % BIN)
    return BIN


@pytest.fixture(scope="session")
def daemon(sgdrd_bin):
    root = tempfile.mkdtemp(prefix="sgdrd-api-")
    try:
        d = Daemon(root, extra_args=["--max-upload", str(8 * 1024 * 1024)])
        yield d
        d.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def token_daemon(sgdrd_bin):
    root = tempfile.mkdtemp(prefix="sgdrd-api-tok-")
    try:
        d = Daemon(root, token="s3cret-token-for-tests")
        yield d
        d.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def root(sgdrd_bin, request):
    """A new folder for the daemons one test starts and restarts; removed after the test."""
    r = tempfile.mkdtemp(prefix="sgdrd-api-%s-" % request.module.__name__.replace("test_", ""))
    yield r
    shutil.rmtree(r, ignore_errors=True)


def wait_until(pred, timeout=120, what="condition", poll=0.2):
    """Polls pred every `poll` seconds until it returns something true, and returns that;
    still false after `timeout` seconds fails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(poll)
    raise AssertionError("%s not reached within %d s" % (what, timeout))


def wait_job(d, job_id, timeout=240, poll=0.2):
    """Polls GET /jobs/{id} until the job is neither queued nor running; returns it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        j = d.get(API + "/jobs/%d" % job_id).json()
        if j["state"] not in ("queued", "running"):
            return j
        time.sleep(poll)
    raise AssertionError("job %d still %s after %d s" % (job_id, j["state"], timeout))


def assert_problem(r, status, field=None, code=None):
    """r is an RFC 9457 problem with this status (and field, error code when given)."""
    assert r.status == status, r
    assert r.ctype.startswith("application/problem+json"), r
    p = r.json()
    for k in ("type", "title", "status", "detail", "error_code"):
        assert k in p, (k, p)
    assert p["status"] == status
    assert p["error_code"] in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST",
                               "RESOURCE_CONFLICT", "REQUEST_LIMIT_EXCEEDED",
                               "UNAUTHENTICATED", "INTERNAL_ERROR", "HOST_NOT_ALLOWED",
                               "ORIGIN_NOT_ALLOWED", "UNSUPPORTED_MEDIA_TYPE"), p
    if 400 <= status < 500:
        assert p["error_code"] != "INTERNAL_ERROR", p
    if field is not None:
        assert p.get("field") == field, p
    if code is not None:
        assert p["error_code"] == code, p
    return p


def make_png(path, w, h, color, noise_seed=0):
    """Writes a small RGB PNG (test data only) with PIL."""
    from PIL import Image
    import random
    rnd = random.Random(noise_seed)
    img = Image.new("RGB", (w, h), color)
    px = img.load()
    for _ in range(w * h // 8):
        x, y = rnd.randrange(w), rnd.randrange(h)
        px[x, y] = tuple(max(0, min(255, c + rnd.randint(-40, 40))) for c in color)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img.save(path, "PNG")


def make_image_dataset(root, per_class=24, size=32):
    """A two-class folders dataset (train/ and valid/) that a small net can learn: reddish
    against bluish squares."""
    colors = {"red": (200, 40, 40), "blue": (40, 40, 200)}
    for split, n in (("train", per_class), ("valid", per_class // 3)):
        for cls, color in colors.items():
            for i in range(n):
                make_png(os.path.join(root, split, cls, "%s_%d.png" % (cls, i)), size, size,
                         color, noise_seed=i * 7 + len(cls) * 1000 + (split == "valid") * 100)
    return root


def png_bytes(color=(200, 40, 40), size=32):
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, "PNG")
    return buf.getvalue()


def pytest_sessionfinish(session, exitstatus):
    """A run that collected nothing has tested nothing: fail it (instead of pytest's exit
    status 5, which a harness might take for a skip)."""
    if session.testscollected == 0:
        session.exitstatus = 1
