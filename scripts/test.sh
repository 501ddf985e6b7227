#!/usr/bin/env bash
# test.sh: installs what is missing, builds, and runs every test suite: all suites on the
# release build, then the C suites again under AddressSanitizer + UBSan. Ends with one
# line "N passed, N failed, N skipped" over both runs.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh || { echo "install-deps failed"; echo "0 passed, 1 failed"; exit 1; }

# Two suites run at once, each with two OpenMP threads: threads that spin while their
# partner waits for a core would slow every parallel region by a scheduler quantum.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

status=0
scripts/build.sh build || status=1
if [ $status -eq 0 ]; then
  meson test -C build --print-errorlogs --num-processes 2 || status=1
fi
asan_ok=0
if scripts/build.sh build-asan -Db_sanitize=address,undefined -Dbuildtype=debugoptimized; then
  asan_ok=1
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    meson test -C build-asan --print-errorlogs --num-processes 2 \
      --suite engine --suite recipe --suite data --suite learner --suite store --suite daemon \
      || status=1
else
  status=1
fi

/usr/bin/python3 - "$asan_ok" <<'PY'
import json, sys, os
counts = {"passed": 0, "failed": 0, "skipped": 0}
logs = ["build/meson-logs/testlog.json"]
if sys.argv[1] == "1":
    logs.append("build-asan/meson-logs/testlog.json")
for log in logs:
    if not os.path.exists(log):
        counts["failed"] += 1
        continue
    for line in open(log):
        r = json.loads(line).get("result", "")
        if r in ("OK", "EXPECTEDFAIL"):
            counts["passed"] += 1
        elif r == "SKIP":
            counts["skipped"] += 1
        else:
            counts["failed"] += 1
print(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
PY
exit $status
