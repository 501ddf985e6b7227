"""test_summary_test.py: scripts/test_summary.py on testlog.json files as meson writes them
(one JSON object a line, the test's argv under "command") and pytest JUnit XML files: what
each result counts as, and the failures it must not hide."""
import json
import os
import subprocess
import sys

SCRIPT = os.path.join(os.environ.get("SGDRD_SRC", os.path.join(os.path.dirname(
    os.path.abspath(__file__)), "..", "..")), "scripts", "test_summary.py")

CASES = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="t" name="p1"/><testcase classname="t" name="p2"/>
<testcase classname="t" name="f"><failure message="assert">x</failure></testcase>
<testcase classname="t" name="e"><error message="teardown">x</error></testcase>
<testcase classname="t" name="s"><skipped type="pytest.skip" message="no root">x</skipped></testcase>
<testcase classname="t" name="x"><skipped type="pytest.xfail" message="known">x</skipped></testcase>
</testsuite></testsuites>"""
PASSING = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="t" name="p1"/><testcase classname="t" name="p2"/>
</testsuite></testsuites>"""


def summary(*logs):
    r = subprocess.run([sys.executable, SCRIPT, *map(str, logs)], capture_output=True,
                       text=True)
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].endswith(
        "expected failures (counted neither as passed nor as failed)"), r.stdout
    n_expected = int(lines[0].split()[0])
    return "%s, %d expected failures" % (lines[1], n_expected), r.returncode


def write_log(path, *results):
    """results: (name, meson result, JUnit XML path or None)."""
    with open(path, "w") as f:
        for name, result, xml in results:
            cmd = ["/usr/bin/python3", "-m", "pytest", "--junitxml=" + str(xml)] if xml \
                else ["build/tests/" + name]
            f.write(json.dumps({"name": "sgdrd:x / " + name, "result": result,
                                "command": cmd, "returncode": 0}) + "\n")
    return path


def test_meson_results(tmp_path):
    log = write_log(tmp_path / "testlog.json", ("ok", "OK", None), ("fail", "FAIL", None),
                    ("skip", "SKIP", None), ("xfail", "EXPECTEDFAIL", None),
                    ("slow", "TIMEOUT", None), ("xpass", "UNEXPECTEDPASS", None))
    assert summary(log) == ("1 passed, 3 failed, 1 skipped, 1 expected failures", 1)


def test_pytest_counts_each_case(tmp_path):
    (tmp_path / "cases.xml").write_text(CASES)
    (tmp_path / "pass.xml").write_text(PASSING)
    log = write_log(tmp_path / "testlog.json", ("api", "FAIL", tmp_path / "cases.xml"),
                    ("api2", "OK", tmp_path / "pass.xml"), ("c", "OK", None))
    assert summary(log) == ("5 passed, 2 failed, 1 skipped, 1 expected failures", 1)


def test_all_passing(tmp_path):
    (tmp_path / "pass.xml").write_text(PASSING)
    log = write_log(tmp_path / "testlog.json", ("api", "OK", tmp_path / "pass.xml"),
                    ("c", "OK", None))
    assert summary(log) == ("3 passed, 0 failed, 0 skipped, 0 expected failures", 0)


def test_failures_that_no_case_shows(tmp_path):
    """No XML (pytest never ran or was killed), and a run meson saw fail whose XML has no
    failed case (a timeout after the last case, or a stale file): one failure each."""
    (tmp_path / "pass.xml").write_text(PASSING)
    (tmp_path / "bad.xml").write_text("<testsuites><testsuite>")
    log = write_log(tmp_path / "testlog.json",
                    ("gone", "OK", tmp_path / "missing.xml"),
                    ("cut", "TIMEOUT", tmp_path / "pass.xml"),
                    ("torn", "FAIL", tmp_path / "bad.xml"))
    assert summary(log) == ("2 passed, 3 failed, 0 skipped, 0 expected failures", 1)


def test_missing_log_is_a_failure(tmp_path):
    log = write_log(tmp_path / "testlog.json", ("ok", "OK", None))
    assert summary(log, tmp_path / "none.json") == \
        ("1 passed, 1 failed, 0 skipped, 0 expected failures", 1)


def test_fuzz_lines_count_per_harness(tmp_path):
    fz = tmp_path / "fuzz.txt"
    fz.write_text("building...\n"
                  "fuzz spec: PASS execs 10 (1/s) cov 1 ft 1 corpus 1\n"
                  "fuzz idx: FAIL execs 3 (1/s) cov 1 ft 1 corpus 1 [crash]\n"
                  "fuzz tar: SKIP execs 0 (0/s) cov 0 ft 0 corpus 0 [no clang]\n"
                  "fuzz: 1 passed, 1 failed, 1 skipped\n")
    log = write_log(tmp_path / "t.json", ("a", "OK", None))
    assert summary("--fuzz", fz, log) == ("2 passed, 1 failed, 1 skipped, 0 expected failures", 1)


def test_missing_fuzz_log_is_a_failure(tmp_path):
    log = write_log(tmp_path / "t.json", ("a", "OK", None))
    assert summary("--fuzz", tmp_path / "none.txt", log) == \
        ("1 passed, 1 failed, 0 skipped, 0 expected failures", 1)
