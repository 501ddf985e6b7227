"""test_tls_proxy.py: deploy/nginx.conf for real: Debian's nginx ends TLS (a self-signed
certificate made here by openssl) in front of a daemon with a token, on 127.0.0.1 ports
only. Through it: the sign-in answers a Secure cookie, a signed-in request and an event
stream work (events arrive as they happen, not when a buffer fills), and the daemon's Host
and Origin checks still hold. Skipped, saying why, when nginx or openssl is not installed
(scripts/install-deps.sh installs Debian's nginx package for the tests)."""
import http.client
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import time

import pytest

from conftest import API, SRC, Daemon, Reply, assert_problem, free_port, make_image_dataset

TOKEN = "s3cret-token-behind-nginx"


def find_nginx():
    for p in (os.environ.get("SGDRD_NGINX"), shutil.which("nginx"), "/usr/sbin/nginx"):
        if p and os.access(p, os.X_OK):
            return p
    return None


def render_conf(root, https_port, daemon_port):
    """deploy/nginx.conf with the test's ports and certificate, inside a main config that
    keeps every nginx file under root."""
    with open(os.path.join(SRC, "deploy", "nginx.conf")) as f:
        site = f.read()
    for old, new in (("server 127.0.0.1:8080;", "server 127.0.0.1:%d;" % daemon_port),
                     ("listen 443 ssl;", "listen 127.0.0.1:%d ssl;" % https_port),
                     ("/etc/ssl/certs/sgdrd.pem", os.path.join(root, "cert.pem")),
                     ("/etc/ssl/private/sgdrd.key", os.path.join(root, "key.pem")),
                     ("server_name sgdrd.example.org;", "server_name 127.0.0.1;")):
        assert site.count(old) == 1, "deploy/nginx.conf no longer has %r" % old
        site = site.replace(old, new)
    with open(os.path.join(root, "sgdrd-site.conf"), "w") as f:
        f.write(site)
    main = """
daemon off;
master_process off;
pid %(r)s/nginx.pid;
error_log %(r)s/error.log info;
events { worker_connections 64; }
http {
    access_log %(r)s/access.log;
    client_body_temp_path %(r)s/body;
    proxy_temp_path %(r)s/proxy;
    fastcgi_temp_path %(r)s/fastcgi;
    uwsgi_temp_path %(r)s/uwsgi;
    scgi_temp_path %(r)s/scgi;
    include %(r)s/sgdrd-site.conf;
}
""" % {"r": root}
    path = os.path.join(root, "nginx.conf")
    with open(path, "w") as f:
        f.write(main)
    return path


@pytest.fixture(scope="module")
def proxy(sgdrd_bin):
    nginx = find_nginx()
    if not nginx:
        pytest.skip("nginx is not installed (apt-get install nginx): the TLS deployment of "
                    "deploy/nginx.conf cannot be tested")
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed: no certificate for the TLS test")
    root = tempfile.mkdtemp(prefix="sgdrd-tls-")
    d = Daemon(root, token=TOKEN, extra_args=["--trusted-proxy", "127.0.0.1"])
    ng = None
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                        "2", "-subj", "/CN=127.0.0.1", "-addext",
                        "subjectAltName=IP:127.0.0.1", "-keyout",
                        os.path.join(root, "key.pem"), "-out",
                        os.path.join(root, "cert.pem")],
                       check=True, capture_output=True)
        port = free_port()
        conf = render_conf(root, port, d.port)
        ng = subprocess.Popen([nginx, "-p", root, "-c", conf, "-e",
                               os.path.join(root, "error.log")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        ctx = ssl.create_default_context(cafile=os.path.join(root, "cert.pem"))
        deadline = time.monotonic() + 20
        while True:
            if ng.poll() is not None:
                raise RuntimeError("nginx exited: %s\n%s" % (
                    ng.stdout.read().decode(errors="replace"), read(root, "error.log")))
            try:
                c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
                c.request("GET", "/api/v1/session")
                if c.getresponse().status == 200:
                    c.close()
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield {"daemon": d, "port": port, "ctx": ctx, "root": root}
    finally:
        if ng and ng.poll() is None:
            ng.terminate()
            ng.wait(timeout=10)
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


def read(root, name):
    try:
        with open(os.path.join(root, name), errors="replace") as f:
            return f.read()[-3000:]
    except OSError:
        return ""


def https(proxy, method, path, body=None, headers=None):
    c = http.client.HTTPSConnection("127.0.0.1", proxy["port"], context=proxy["ctx"],
                                    timeout=30)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        c.close()


def origin(proxy):
    return "https://127.0.0.1:%d" % proxy["port"]


def sign_in(proxy):
    r = https(proxy, "POST", API + "/session", b'{"token": "%s"}' % TOKEN.encode(),
              {"Content-Type": "application/json", "Origin": origin(proxy)})
    assert r.status == 201, r
    return r


def test_conf_forwards_what_the_daemon_checks():
    """Needs no nginx: the Host with its port, the scheme, and event streams unbuffered."""
    with open(os.path.join(SRC, "deploy", "nginx.conf")) as f:
        site = f.read()
    assert "proxy_set_header Host $http_host;" in site
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in site
    events = re.search(r"location ~ \^/api/v1/runs/\[0-9\]\+/events\$ \{([^}]*)\}", site)
    assert events, "deploy/nginx.conf has no location for event streams"
    for line in ("proxy_buffering off;", "proxy_read_timeout"):
        assert line in events.group(1), line


def test_sign_in_through_tls_gives_a_secure_cookie(proxy):
    r = sign_in(proxy)
    sc = r.headers["set-cookie"]
    for attr in ("HttpOnly", "SameSite=Strict", "Secure", "Max-Age="):
        assert attr in sc, sc
    name, value = re.match(r"([^=]+)=([0-9a-f]+);", sc).groups()
    r = https(proxy, "GET", API + "/runs", headers={"Cookie": "%s=%s" % (name, value)})
    assert r.status == 200, r
    assert_problem(https(proxy, "GET", API + "/runs"), 401)
    # The bearer header passes through for curl.
    r = https(proxy, "GET", API + "/runs", headers={"Authorization": "Bearer " + TOKEN})
    assert r.status == 200, r


def test_checks_still_hold_behind_the_proxy(proxy):
    assert_problem(https(proxy, "GET", API + "/runs",
                         headers={"Host": "rebind.evil.example:%d" % proxy["port"],
                                  "Authorization": "Bearer " + TOKEN}),
                   403, code="HOST_NOT_ALLOWED")
    for o in ("https://evil.example", "http://127.0.0.1:%d" % proxy["port"]):
        r = https(proxy, "POST", API + "/session", b'{"token": "%s"}' % TOKEN.encode(),
                  {"Content-Type": "application/json", "Origin": o})
        assert_problem(r, 403, code="ORIGIN_NOT_ALLOWED")


def test_event_stream_through_the_proxy_is_live(proxy):
    d = proxy["daemon"]
    ds = make_image_dataset(os.path.join(d.datasets, "tls"), per_class=3)
    assert d.post(API + "/datasets", {"name": "tls", "path": ds, "format": "folders"}).status \
        == 201
    run = d.post(API + "/runs", {"dataset": "tls", "arch": "resnet_small", "sz": 28}).json()
    name, value = re.match(r"([^=]+)=([0-9a-f]+);",
                           sign_in(proxy).headers["set-cookie"]).groups()
    jar = {"Cookie": "%s=%s" % (name, value)}
    c = http.client.HTTPSConnection("127.0.0.1", proxy["port"], context=proxy["ctx"],
                                    timeout=30)
    try:
        c.request("GET", API + "/runs/%d/events" % run["id"],
                  headers=dict(jar, Accept="text/event-stream"))
        resp = c.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Type").startswith("text/event-stream")
        t0 = time.monotonic()
        r = https(proxy, "POST", API + "/runs/%d/tta" % run["id"], b'{"n_aug": 1}',
                  dict(jar, **{"Content-Type": "application/json", "Origin": origin(proxy)}))
        assert r.status == 202, r
        seen = b""
        while b"event: job" not in seen:
            line = resp.readline()
            assert line, seen
            seen += line
        # Well before the daemon's next heartbeat: nginx did not hold the event back.
        assert time.monotonic() - t0 < 10, seen
    finally:
        c.close()
    # nginx logs the stream once it has seen the client go.
    deadline = time.monotonic() + 10
    while "/events" not in read(proxy["root"], "access.log") and time.monotonic() < deadline:
        time.sleep(0.1)
    log = read(proxy["root"], "access.log")
    assert "/events" in log and TOKEN not in log and value not in log
