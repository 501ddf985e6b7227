"""test_cli_token.py: sgdr against a daemon that wants a bearer token: the token from
SGDR_TOKEN, SGDR_TOKEN_FILE, --token-file or the config file, flags over environment over
config file; without it, the daemon's 401 on one line and exit 2."""
import json
import os

import pytest


@pytest.fixture(scope="module")
def tok(token_daemon, tmp_path_factory):
    d = token_daemon
    folder = tmp_path_factory.mktemp("tok")
    good = folder / "good"
    good.write_text(d.token + "\n")
    bad = folder / "bad"
    bad.write_text("not-the-token\n")
    return d, str(good), str(bad), folder


def test_without_a_token_401_exit_2(tok, sgdr):
    d, _, _, _ = tok
    r = sgdr(d, "health")
    assert r.rc == 2 and r.err.startswith("sgdr: 401 UNAUTHENTICATED"), r


def test_token_from_env_and_files(tok, sgdr):
    d, good, bad, _ = tok
    for env, args in (({"SGDR_TOKEN": d.token}, []),
                      ({"SGDR_TOKEN_FILE": good}, []),
                      ({}, ["--token-file", good]),
                      ({}, ["--token-file=" + good]),
                      ({"SGDR_TOKEN": "wrong"}, ["--token-file", good]),     # flag over env
                      ({"SGDR_TOKEN": d.token, "SGDR_TOKEN_FILE": bad}, [])):
        r = sgdr(d, *args, "--json", "runs", "ls", env=env)
        assert r.rc == 0, (env, args, r)
        assert json.loads(r.out)["items"] == []
    r = sgdr(d, "--token-file", bad, "health", env={"SGDR_TOKEN": d.token})
    assert r.rc == 2 and "401" in r.err, r
    r = sgdr(d, "--token-file", os.path.join(os.path.dirname(good), "missing"), "health")
    assert r.rc == 2 and "cannot read token file" in r.err, r


def test_config_file_and_its_precedence(tok, sgdr):
    d, good, _, folder = tok
    conf = folder / "config"
    conf.write_text("# sgdr config\nurl = http://127.0.0.1:%d\ntoken_file = good\n" % d.port)
    # the config file alone: no SGDR_URL in the environment (sgdr(None, ...))
    r = sgdr(None, "--config", str(conf), "health")
    assert r.rc == 0 and ": ok," in r.out, r
    r = sgdr(None, "health", env={"SGDR_CONFIG": str(conf)})
    assert r.rc == 0, r
    # the environment's token over the config file's
    r = sgdr(None, "health", env={"SGDR_CONFIG": str(conf), "SGDR_TOKEN": "wrong"})
    assert r.rc == 2 and "401" in r.err, r
    # --url over SGDR_URL over the config's url
    r = sgdr(None, "--url", "http://127.0.0.1:%d/" % d.port, "health",
             env={"SGDR_CONFIG": str(conf), "SGDR_URL": "http://127.0.0.1:9"})
    assert r.rc == 0, r
    r = sgdr(None, "health", env={"SGDR_CONFIG": str(conf), "SGDR_URL": "http://127.0.0.1:9"})
    assert r.rc == 1 and "cannot reach http://127.0.0.1:9" in r.err, r
    conf.write_text("url = http://127.0.0.1:%d\nsecret = x\n" % d.port)
    r = sgdr(None, "--config", str(conf), "health")
    assert r.rc == 2 and ":2: unknown key 'secret'" in r.err, r


def test_config_file_in_home(tok, sgdr, home):
    d, good, _, _ = tok
    os.makedirs(os.path.join(home, ".config", "sgdr"), exist_ok=True)
    path = os.path.join(home, ".config", "sgdr", "config")
    with open(path, "w") as f:
        f.write("url = \"http://127.0.0.1:%d\"\ntoken = %s\n" % (d.port, d.token))
    try:
        r = sgdr(None, "--json", "health")
        assert r.rc == 0 and json.loads(r.out)["status"] == "ok", r
    finally:
        os.remove(path)
