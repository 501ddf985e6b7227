"""test_security.py: no web page can drive the daemon, and the dashboard's sign-in. Raw
headers against the real daemon: a Host that is not the daemon's (DNS rebinding) is refused
on every path; a state-changing request from another origin is refused, whatever its
Content-Type; a Content-Type an HTML form can send is refused; CORS only for a configured
origin; the token is exchanged for an HttpOnly, SameSite=Strict session cookie that serves
the API, event streams and downloads, and sign-out ends it; a client that keeps guessing
the token is refused for a while (429). Each refusal is one check, each allowed case
another."""
import os
import re
import shutil
import tempfile

import pytest

from conftest import API, Daemon, assert_problem, make_image_dataset, png_bytes

TOKEN = "s3cret-token-for-security-tests"
EVIL = "http://rebind.evil.example:8080"


def own(d):
    return "http://127.0.0.1:%d" % d.port


@pytest.fixture(scope="module")
def plain(sgdrd_bin):
    root = tempfile.mkdtemp(prefix="sgdrd-sec-")
    d = Daemon(root, extra_args=["--allowed-host", "sgdrd.test",
                                 "--allowed-origin", "http://127.0.0.1:1"])
    try:
        yield d
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def tok(sgdrd_bin):
    root = tempfile.mkdtemp(prefix="sgdrd-sec-tok-")
    d = Daemon(root, token=TOKEN, extra_args=["--trusted-proxy", "127.0.0.1"])
    try:
        yield d
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def tok_run(tok):
    root = make_image_dataset(os.path.join(tok.datasets, "sec"), per_class=3)
    r = tok.post(API + "/datasets", {"name": "sec", "path": root, "format": "folders"})
    assert r.status == 201, r
    r = tok.post(API + "/runs", {"dataset": "sec", "arch": "resnet_small", "sz": 28})
    assert r.status == 201, r
    return r.json()["id"]


def jobs_count(d):
    return len(d.get(API + "/jobs?limit=100").json()["items"])


# ---- Host allow-list --------------------------------------------------------------------

@pytest.mark.parametrize("path", [API + "/runs", API + "/health", API + "/openapi.json",
                                  "/", "/index.html", "/app.js", API + "/runs/1/events",
                                  API + "/nothing-here", "/vendor/uplot/uPlot.min.css"])
def test_foreign_host_is_refused_on_every_path(plain, path):
    r = plain.get(path, headers={"Host": "rebind.evil.example:%d" % plain.port})
    assert_problem(r, 403, field="Host", code="HOST_NOT_ALLOWED")
    assert "--allowed-host" in r.json()["detail"]


def test_foreign_host_is_refused_for_writes_too(plain):
    n = jobs_count(plain)
    r = plain.post(API + "/runs/1/unfreeze", b"", ctype="application/json",
                   headers={"Host": "rebind.evil.example"})
    assert_problem(r, 403, field="Host", code="HOST_NOT_ALLOWED")
    assert jobs_count(plain) == n


@pytest.mark.parametrize("host", ["", "127.0.0.1:80x", "[::1", "a b"])
def test_malformed_host_is_refused(plain, host):
    assert_problem(plain.get(API + "/health", headers={"Host": host}), 403,
                   code="HOST_NOT_ALLOWED")


@pytest.mark.parametrize("host", ["127.0.0.1:{p}", "localhost:{p}", "LOCALHOST:{p}",
                                  "[::1]:{p}", "127.0.0.1", "sgdrd.test:{p}",
                                  "dash.localhost:{p}"])
def test_own_names_are_served(plain, host):
    r = plain.get(API + "/health", headers={"Host": host.format(p=plain.port)})
    assert r.status == 200, r
    r = plain.get("/", headers={"Host": host.format(p=plain.port)})
    assert r.status == 200 and r.ctype.startswith("text/html"), r


# ---- Origin / Sec-Fetch-Site on state-changing requests ---------------------------------

WRITES = [("POST", "/runs/1/unfreeze"), ("POST", "/runs/1/lr-find"),
          ("POST", "/runs/1/recipe"), ("POST", "/runs/1/tta"),
          ("POST", "/runs/1/predict-test"), ("POST", "/jobs/1/cancel"),
          ("POST", "/jobs/1/resume"), ("DELETE", "/runs/1"), ("DELETE", "/datasets/1"),
          ("POST", "/runs"), ("POST", "/datasets"), ("POST", "/models"),
          ("POST", "/runs/1/predict"), ("POST", "/session"), ("DELETE", "/session")]


@pytest.mark.parametrize("method,path", WRITES)
@pytest.mark.parametrize("ctype", ["text/plain", "application/json", None])
def test_cross_origin_writes_are_refused(plain, method, path, ctype):
    n = jobs_count(plain)
    r = plain.request(method, API + path, body=b"", ctype=ctype,
                      headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"})
    p = assert_problem(r, 403, field="Origin", code="ORIGIN_NOT_ALLOWED")
    assert EVIL in p["detail"]
    assert jobs_count(plain) == n


@pytest.mark.parametrize("headers", [{"Sec-Fetch-Site": "cross-site"},
                                     {"Sec-Fetch-Site": "same-site"},
                                     {"Origin": "null"},
                                     {"Origin": "http://127.0.0.1:1234"},
                                     {"Origin": "https://localhost.evil.example"}])
def test_other_origins_are_refused(plain, headers):
    r = plain.post(API + "/runs/1/unfreeze", b"", headers=headers)
    assert_problem(r, 403, field="Origin", code="ORIGIN_NOT_ALLOWED")


def test_same_origin_and_plain_clients_pass(plain):
    for headers in ({"Origin": own(plain), "Sec-Fetch-Site": "same-origin"},
                    {"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"}, {},
                    {"Origin": "http://127.0.0.1:1"}):
        r = plain.post(API + "/runs/1/unfreeze", {}, headers=headers)
        assert_problem(r, 404, code="RESOURCE_DOES_NOT_EXIST")
        r = plain.request("DELETE", API + "/runs/1", headers=headers)
        assert_problem(r, 404, code="RESOURCE_DOES_NOT_EXIST")


def test_cross_origin_reads_get_no_cors(plain):
    r = plain.get(API + "/runs", headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"})
    assert r.status == 200
    assert "access-control-allow-origin" not in r.headers
    r = plain.request("OPTIONS", API + "/runs/1/unfreeze",
                      headers={"Origin": EVIL, "Access-Control-Request-Method": "POST",
                               "Access-Control-Request-Headers": "content-type"})
    assert r.status != 204 and r.status >= 400, r
    assert "access-control-allow-origin" not in r.headers


def test_configured_origin_gets_cors(plain):
    o = "http://127.0.0.1:1"
    r = plain.request("OPTIONS", API + "/runs/1/unfreeze",
                      headers={"Origin": o, "Access-Control-Request-Method": "POST"})
    assert r.status == 204, r
    assert r.headers["access-control-allow-origin"] == o
    assert "Content-Type" in r.headers["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in r.headers
    r = plain.get(API + "/runs", headers={"Origin": o})
    assert r.status == 200 and r.headers["access-control-allow-origin"] == o
    assert r.headers["vary"] == "Origin"


# ---- Content-Type -----------------------------------------------------------------------

FORM_TYPES = ["text/plain", "application/x-www-form-urlencoded",
              "multipart/form-data; boundary=x"]


@pytest.mark.parametrize("ctype", FORM_TYPES)
@pytest.mark.parametrize("path", ["/runs/1/unfreeze", "/runs/1/recipe", "/runs/1/tta",
                                  "/jobs/1/cancel", "/jobs/1/resume", "/runs"])
@pytest.mark.parametrize("body", [b"", b"{}"])
def test_form_types_are_refused(plain, ctype, path, body):
    n = jobs_count(plain)
    r = plain.post(API + path, body, ctype=ctype)
    p = assert_problem(r, 415, field="Content-Type", code="UNSUPPORTED_MEDIA_TYPE")
    assert "application/json" in p["detail"]
    assert jobs_count(plain) == n


@pytest.mark.parametrize("path,ctype,ok", [
    ("/datasets?name=x", "application/x-tar", True), ("/datasets?name=x", "application/gzip",
                                                      True),
    ("/datasets?name=x", "text/plain", False), ("/models?name=m&arch=resnet18",
                                                "application/octet-stream", True),
    ("/models?name=m&arch=resnet18", "application/json", False),
    ("/runs/1/predict", "image/png", True), ("/runs/1/predict", "image/jpeg", True),
    ("/runs/1/predict", "application/octet-stream", True),
    ("/runs/1/predict", "text/plain", False)])
def test_upload_types_keep_their_documented_types(plain, path, ctype, ok):
    r = plain.post(API + path, b"not really a file", ctype=ctype)
    if ok:
        assert r.status != 415 and r.status != 403, r
    else:
        assert_problem(r, 415, field="Content-Type", code="UNSUPPORTED_MEDIA_TYPE")


@pytest.mark.parametrize("body,status", [(b"{}", 404), (b" { } ", 404), (b'{"x":1}', 415),
                                         (b"[]", 400), (b"{" + b" " * 64 + b"}", 413)])
def test_routes_without_body_take_an_empty_object(plain, body, status):
    """The dashboard sends {} with every POST; a route that takes no body accepts it."""
    for path in ("/jobs/999999/cancel", "/jobs/999999/resume"):
        assert_problem(plain.post(API + path, body, ctype="application/json"), status)


def test_empty_or_json_bodies_pass(plain):
    assert_problem(plain.post(API + "/runs/1/unfreeze", None), 404)
    assert_problem(plain.post(API + "/runs/1/unfreeze", b"", ctype="application/json"), 404)
    assert_problem(plain.post(API + "/runs/1/unfreeze", {}), 404)
    assert_problem(plain.post(API + "/jobs/1/cancel", None), 404)
    assert_problem(plain.post(API + "/jobs/1/cancel", b"", ctype="application/json"), 404)


# ---- sign-in ----------------------------------------------------------------------------

def sign_in(d, token=TOKEN, headers=None):
    return d.post(API + "/session", {"token": token}, auth=False, headers=headers)


def cookie_of(r):
    m = re.match(r"([^=]+)=([0-9a-f]*);", r.headers["set-cookie"])
    assert m, r.headers
    return m.group(1), m.group(2)


def test_sign_in_page_facts(tok, plain):
    r = tok.get(API + "/session", auth=False)
    assert r.status == 200 and r.json() == {"token_required": True, "signed_in": False}
    assert plain.get(API + "/session").json() == {"token_required": False,
                                                  "signed_in": False}
    assert_problem(plain.post(API + "/session", {"token": "whatever"}), 409,
                   code="RESOURCE_CONFLICT")
    assert_problem(tok.get(API + "/runs", auth=False), 401, code="UNAUTHENTICATED")


@pytest.mark.parametrize("body,status,field", [
    ({"token": "wrong-token-wrong-token"}, 401, "token"), ({"token": TOKEN[:-1]}, 401, "token"),
    ({"token": TOKEN + "x"}, 401, "token"), ({}, 400, "token"), ({"token": 5}, 400, "token"),
    ({"token": TOKEN, "user": "x"}, 400, "user")])
def test_bad_sign_ins(tok, body, status, field):
    r = tok.post(API + "/session", body, auth=False)
    assert_problem(r, status, field=field)
    assert "set-cookie" not in r.headers


def test_failed_sign_ins_are_rate_limited(sgdrd_bin):
    """Five wrong tokens from one client (here told apart by X-Forwarded-For from a
    --trusted-proxy) within a minute: its next sign-in, even with the right token, and its
    bearer header are 429 with Retry-After, not compared; another client still signs in.
    A flood of made-up forwarded addresses does not push the refused client out."""
    root = tempfile.mkdtemp(prefix="sgdrd-sec-rate-")
    d = Daemon(root, token=TOKEN, extra_args=["--trusted-proxy", "127.0.0.1"])
    a, b = {"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "198.51.100.9"}
    try:
        for i in range(5):
            assert_problem(sign_in(d, token="guess-%d" % i, headers=a), 401, field="token")
        r = sign_in(d, headers=a)
        p = assert_problem(r, 429, code="REQUEST_LIMIT_EXCEEDED")
        assert "set-cookie" not in r.headers
        assert 1 <= int(r.headers["retry-after"]) <= 60, r.headers
        assert "sign-ins" in p["detail"], p
        r = d.get(API + "/runs", headers=dict(a, Authorization="Bearer " + TOKEN), auth=False)
        assert_problem(r, 429, code="REQUEST_LIMIT_EXCEEDED")
        assert "retry-after" in r.headers
        # Another client: the right token works, by sign-in and by bearer header.
        r = sign_in(d, headers=b)
        assert r.status == 201, r
        assert d.get(API + "/runs", headers=b).status == 200
        # Without a guess (no header, no body), the refused client is told to sign in.
        assert_problem(d.get(API + "/runs", headers=a, auth=False), 401)
        for i in range(1100):
            d.get(API + "/health", headers={"X-Forwarded-For": "10.%d.%d.1" % (i // 250,
                                                                            i % 250),
                                            "Authorization": "Bearer x"}, auth=False)
        assert_problem(sign_in(d, headers=a), 429)
        assert d.get(API + "/health").status == 200
        assert TOKEN not in d.log_text() and "guess-" not in d.log_text()
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_sign_in_refuses_forms_and_other_origins(tok):
    body = ('{"token": "%s"}' % TOKEN).encode()
    assert_problem(tok.post(API + "/session", body, ctype="text/plain", auth=False), 415,
                   code="UNSUPPORTED_MEDIA_TYPE")
    assert_problem(sign_in(tok, headers={"Origin": EVIL}), 403, code="ORIGIN_NOT_ALLOWED")


def test_session_cookie_serves_api_events_and_downloads(tok, tok_run):
    r = sign_in(tok, headers={"Origin": own(tok), "Sec-Fetch-Site": "same-origin"})
    assert r.status == 201, r
    sc = r.headers["set-cookie"]
    for attr in ("HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"):
        assert attr in sc, sc
    assert "Secure" not in sc
    assert r.json() == {"expires_in": 43200}
    name, value = cookie_of(r)
    assert name == "sgdrd_session_%d" % tok.port and len(value) == 64
    jar = {"Cookie": "other=1; %s=%s" % (name, value)}

    assert tok.get(API + "/runs", auth=False, headers=jar).status == 200
    assert tok.get(API + "/session", auth=False, headers=jar).json()["signed_in"] is True
    r = tok.get(API + "/runs/%d/weights" % tok_run, auth=False, headers=jar)
    assert r.status in (200, 404, 409), r  # reached the route, not refused at the door
    assert r.status != 401
    # A write from the dashboard's own origin, and the event it causes on a stream opened
    # with the cookie.
    c = tok.connect(timeout=30)
    try:
        c.request("GET", API + "/runs/%d/events" % tok_run,
                  headers=dict(jar, Accept="text/event-stream"))
        resp = c.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Type").startswith("text/event-stream")
        r = tok.post(API + "/runs/%d/tta" % tok_run, {"n_aug": 1}, auth=False,
                     headers=dict(jar, Origin=own(tok)))
        assert r.status == 202, r
        seen = b""
        while b"event: job" not in seen:
            line = resp.readline()
            assert line, seen
            seen += line
    finally:
        c.close()

    r = tok.request("DELETE", API + "/session", auth=False, headers=jar)
    assert r.status == 204
    assert "Max-Age=0" in r.headers["set-cookie"]
    assert_problem(tok.get(API + "/runs", auth=False, headers=jar), 401)
    assert tok.get(API + "/session", auth=False, headers=jar).json()["signed_in"] is False


def test_forged_cookie_is_refused_and_bearer_still_works(tok):
    name = "sgdrd_session_%d" % tok.port
    for v in ("0" * 64, "abc", "", "x" * 300):
        r = tok.get(API + "/runs", auth=False, headers={"Cookie": "%s=%s" % (name, v)})
        assert_problem(r, 401, code="UNAUTHENTICATED")
    assert tok.get(API + "/runs").status == 200


def test_secure_cookie_behind_a_trusted_tls_proxy(tok):
    r = sign_in(tok, headers={"X-Forwarded-Proto": "https"})
    assert r.status == 201 and "; Secure" in r.headers["set-cookie"]
    # The proxy forwards the browser's https origin and Host.
    r = sign_in(tok, headers={"X-Forwarded-Proto": "https",
                              "Origin": "https://127.0.0.1:%d" % tok.port})
    assert r.status == 201, r
    r = sign_in(tok, headers={"X-Forwarded-Proto": "https",
                              "Origin": "http://127.0.0.1:%d" % tok.port})
    assert_problem(r, 403, code="ORIGIN_NOT_ALLOWED")


def test_forwarded_proto_from_an_untrusted_peer_is_ignored(plain, sgdrd_bin):
    root = tempfile.mkdtemp(prefix="sgdrd-sec-tls-")
    d = Daemon(root, token=TOKEN)
    try:
        r = sign_in(d, headers={"X-Forwarded-Proto": "https"})
        assert r.status == 201 and "Secure" not in r.headers["set-cookie"]
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)
    root = tempfile.mkdtemp(prefix="sgdrd-sec-tls-")
    d = Daemon(root, token=TOKEN, extra_args=["--behind-tls", "--session-ttl", "600"])
    try:
        r = sign_in(d)
        assert r.status == 201, r
        assert "; Secure" in r.headers["set-cookie"]
        assert "Max-Age=600" in r.headers["set-cookie"]
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_token_and_cookie_never_logged(tok):
    r = sign_in(tok)
    _, value = cookie_of(r)
    tok.get(API + "/runs", auth=False, headers={"Cookie": "sgdrd_session_%d=%s" % (tok.port,
                                                                                   value)})
    text = tok.log_text()
    assert "POST /api/v1/session" in text
    assert TOKEN not in text and value not in text


def test_bad_flags_are_named(sgdrd_bin):
    root = tempfile.mkdtemp(prefix="sgdrd-sec-bad-")
    try:
        for args, words in ((["--allowed-origin", "evil.example"], "--allowed-origin"),
                            (["--trusted-proxy", "proxy.lan"], "--trusted-proxy")):
            with pytest.raises(RuntimeError) as e:
                Daemon(root, extra_args=args)
            assert words in str(e.value)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_dashboard_on_its_origin_still_uploads(plain):
    """The dashboard's own requests: same origin, JSON or a documented upload type."""
    h = {"Origin": own(plain), "Sec-Fetch-Site": "same-origin"}
    r = plain.post(API + "/runs/1/predict", png_bytes(), ctype="image/png", headers=h)
    assert_problem(r, 404, code="RESOURCE_DOES_NOT_EXIST")
    r = plain.post(API + "/runs", {"dataset": "none", "arch": "resnet_small", "sz": 28},
                   headers=h)
    assert r.status in (400, 404), r
