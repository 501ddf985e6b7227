"""test_summary.py: the closing line of scripts/test.sh, counted per test.

usage: test_summary.py [--fuzz FUZZLOG] TESTLOG [TESTLOG...]

Each TESTLOG is the testlog.json of one `meson test` run. Prints "N expected failures"
on a line of its own, then the closing line "N passed, N failed, N skipped" (the form CI
reads), and exits 1 when N failed is not 0.

A meson test counts once by its result, except one that ran pytest: its command holds
--junitxml=PATH, and the test cases of that JUnit XML count instead, each passed, failed
(a failure or an error, collection errors included) or skipped (an xfail counts with the
expected failures). So that such a run cannot pass by writing nothing, a missing or
unreadable XML counts as one failure, and so does a run that meson saw fail (a timeout, a
crash, a stale XML from an earlier run) while no case in its XML failed.

Expected failures are counted apart, neither passed nor failed: a test that fails as it
is known to (meson's should_fail, pytest's xfail) proves nothing works, so it is not a
pass; it is no new breakage either, and meson's exit status does not fail on it, so
counting it as a failure would make the line disagree with the status test.sh returns.

A missing or unreadable TESTLOG (the build failed, the run never started) counts as one
failure.

FUZZLOG is what scripts/fuzz.sh printed: each harness's line "fuzz NAME: PASS|FAIL|SKIP ..."
counts as passed, failed or skipped; a missing FUZZLOG, or one with no harness line, counts
as one failure.
"""
import json
import re
import sys
import xml.etree.ElementTree as ET

MESON = {"OK": "passed", "SKIP": "skipped", "EXPECTEDFAIL": "expected"}


def junit_path(cmd):
    """The --junitxml=PATH of a test's command, or None."""
    for arg in cmd or []:
        if arg.startswith("--junitxml="):
            return arg[len("--junitxml="):]
    return None


def junit_counts(path):
    """Counts of the cases in a pytest JUnit XML; raises OSError or ParseError."""
    counts = {"passed": 0, "failed": 0, "skipped": 0, "expected": 0}
    for case in ET.parse(path).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            counts["failed"] += 1
        elif case.find("skipped") is not None:
            xfail = case.find("skipped").get("type") == "pytest.xfail"
            counts["expected" if xfail else "skipped"] += 1
        else:
            counts["passed"] += 1
    return counts


def count_test(entry, counts):
    """Adds one meson test's entry of testlog.json to counts."""
    result = entry.get("result", "")
    xml = junit_path(entry.get("command"))
    if xml is None:
        counts[MESON.get(result, "failed")] += 1
        return
    try:
        cases = junit_counts(xml)
    except (OSError, ET.ParseError) as e:
        print(f"test_summary: {entry.get('name')}: no JUnit XML ({e})", file=sys.stderr)
        counts["failed"] += 1
        return
    for k, v in cases.items():
        counts[k] += v
    if result not in MESON and cases["failed"] == 0:
        print(f"test_summary: {entry.get('name')}: {result} with no failed case in {xml}",
              file=sys.stderr)
        counts["failed"] += 1


FUZZ_LINE = re.compile(r"^fuzz \S+: (PASS|FAIL|SKIP)\b")
FUZZ = {"PASS": "passed", "FAIL": "failed", "SKIP": "skipped"}


def count_fuzz(path, counts):
    """Adds the harness lines of scripts/fuzz.sh's output to counts."""
    try:
        with open(path) as f:
            results = [m.group(1) for m in map(FUZZ_LINE.match, f) if m]
    except OSError as e:
        print(f"test_summary: {path}: {e}", file=sys.stderr)
        results = []
    if not results:
        print(f"test_summary: {path}: no fuzz harness line", file=sys.stderr)
        counts["failed"] += 1
    for r in results:
        counts[FUZZ[r]] += 1


def main(args):
    counts = {"passed": 0, "failed": 0, "skipped": 0, "expected": 0}
    logs = list(args)
    if len(logs) >= 2 and logs[0] == "--fuzz":
        count_fuzz(logs[1], counts)
        logs = logs[2:]
    for log in logs:
        try:
            with open(log) as f:
                entries = [json.loads(line) for line in f if line.strip()]
        except (OSError, ValueError) as e:
            print(f"test_summary: {log}: {e}", file=sys.stderr)
            counts["failed"] += 1
            continue
        for entry in entries:
            count_test(entry, counts)
    print(f"{counts['expected']} expected failures (counted neither as passed nor as failed)")
    print(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
