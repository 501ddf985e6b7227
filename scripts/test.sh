#!/usr/bin/env bash
# test.sh: installs what is missing, builds, and runs every test suite: all suites on the
# release build, then the C suites and the dist suite's equivalence test again under
# AddressSanitizer + UBSan. Ends with the line "N passed, N failed, N skipped" over both
# runs (expected failures on the line before it), where each pytest test counts on its own (scripts/test_summary.py says how).
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test ||
  { echo "install-deps failed"; echo "0 passed, 1 failed, 0 skipped"; exit 1; }

# Two suites run at once, each with two OpenMP threads: threads that spin while their
# partner waits for a core would slow every parallel region by a scheduler quantum.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

# Logs of an earlier run must not count for this one.
rm -f build/meson-logs/testlog.json build/meson-logs/pytest-*.xml build-asan/meson-logs/testlog.json \
  build-asan/meson-logs/testlog-dist.json build/fuzz.txt

status=0
scripts/build.sh build || status=1
if [ $status -eq 0 ]; then
  meson test -C build --print-errorlogs --num-processes 2 || status=1
fi
if scripts/build.sh build-asan -Db_sanitize=address,undefined -Dbuildtype=debugoptimized; then
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    meson test -C build-asan --print-errorlogs --num-processes 2 \
      --suite common --suite engine --suite recipe --suite data --suite learner \
      --suite store --suite daemon --suite api_unit --suite cli --suite fuzz \
      || status=1
  # The dist suite's equivalence test (the engine's sums, SyncBN and sharding under mpirun;
  # the whole suite takes far longer under the sanitizers). Open MPI leaks its own state at
  # exit, from components it has unloaded by then, so no suppression can name their frames:
  # leak checking is off for these ranks only, every other check stays on.
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    meson test -C build-asan --print-errorlogs --logbase testlog-dist --suite dist equivalence \
      || status=1
else
  status=1
fi

# The libFuzzer harnesses, 30 s each under clang's sanitizers (their seeds and regressions
# were replayed above by suite fuzz); one line per harness, counted below.
mkdir -p build
scripts/fuzz.sh 30 2>&1 | tee build/fuzz.txt
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

# A build that failed left no log: the summary counts that as a failure.
/usr/bin/python3 scripts/test_summary.py --fuzz build/fuzz.txt build/meson-logs/testlog.json \
  build-asan/meson-logs/testlog.json build-asan/meson-logs/testlog-dist.json || status=1
exit $status
