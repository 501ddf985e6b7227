"""conftest.py: runs the built sgdr against the real daemon. The daemon, its fixtures and
the test data come from tests/api/conftest.py, imported here under the name api_conftest
(both files are named conftest, so a plain import would find this one).

Environment (set by tests/cli/meson.build): SGDR_BIN, the built client; SGDRD_BIN and
SGDRD_SRC as for tests/api."""
import importlib.util
import os
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
API_DIR = os.path.join(HERE, "..", "api")
sys.path.insert(0, API_DIR)
_spec = importlib.util.spec_from_file_location("api_conftest",
                                               os.path.join(API_DIR, "conftest.py"))
api_conftest = importlib.util.module_from_spec(_spec)
sys.modules["api_conftest"] = api_conftest
_spec.loader.exec_module(api_conftest)

# The daemon fixtures and the empty-run guard, as tests/api has them.
sgdrd_bin = api_conftest.sgdrd_bin
daemon = api_conftest.daemon
token_daemon = api_conftest.token_daemon
pytest_sessionfinish = api_conftest.pytest_sessionfinish

SGDR = os.environ.get("SGDR_BIN", "")


class Result:
    def __init__(self, p):
        self.rc = p.returncode
        self.out = p.stdout
        self.err = p.stderr

    def __repr__(self):
        return "sgdr exited %d\n--- stdout\n%s--- stderr\n%s" % (self.rc, self.out[-3000:],
                                                                  self.err[-3000:])


@pytest.fixture(scope="session")
def home():
    """An empty HOME, so that no config file of the machine's user is read."""
    with tempfile.TemporaryDirectory(prefix="sgdr-home-") as h:
        yield h


@pytest.fixture(scope="session")
def sgdr(home):
    """sgdr(daemon_or_None, *args, env={...}): runs the client with only PATH, HOME and
    (for a daemon) SGDR_URL in its environment, plus env; returns a Result."""
    if not SGDR or not os.access(SGDR, os.X_OK):
        pytest.fail("SGDR_BIN does not name the built sgdr (got %r)" % SGDR)

    def run(d, *args, env=None, timeout=300):
        e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home}
        if d is not None:
            e["SGDR_URL"] = "http://127.0.0.1:%d" % d.port
        e.update(env or {})
        p = subprocess.run([SGDR] + [str(a) for a in args], env=e, capture_output=True,
                           text=True, timeout=timeout)
        r = Result(p)
        # a build with -Db_sanitize=address,undefined reports here
        assert "Sanitizer" not in r.err and "runtime error" not in r.err, r
        return r

    return run
