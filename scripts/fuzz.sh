#!/usr/bin/env bash
# fuzz.sh [SECONDS]: builds the libFuzzer harnesses of tests/fuzz with clang under
# AddressSanitizer + UBSan (build dir build-fuzz), replays each harness's regressions, then
# fuzzes it for SECONDS (default 30) from its seed corpus, one harness at a time.
# Prints one line per harness:
#   fuzz <name>: PASS|FAIL|SKIP execs N (N/s) cov N ft N corpus N [reason]
# and ends with "fuzz: N passed, N failed, N skipped". Exits 1 if any harness failed.
# A crashing input is kept as build-fuzz/fuzz-work/<name>/artifacts/crash-*; copy it into
# tests/fuzz/regressions/<name>/ with the fix so that every test run replays it.
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
harnesses=(spec safetensors image idx csv tar)
dir=build-fuzz
passed=0 failed=0 skipped=0

finish() {
  echo "fuzz: $passed passed, $failed failed, $skipped skipped"
  [ "$failed" -eq 0 ]
  exit
}

skip_all() {
  for h in "${harnesses[@]}"; do
    echo "fuzz $h: SKIP execs 0 (0/s) cov 0 ft 0 corpus 0 [$1]"
    skipped=$((skipped + 1))
  done
  finish
}

fail_all() {
  for h in "${harnesses[@]}"; do
    echo "fuzz $h: FAIL execs 0 (0/s) cov 0 ft 0 corpus 0 [$1]"
    failed=$((failed + 1))
  done
  finish
}

# Debian: clang, libclang-rt-14-dev (libFuzzer; only recommended by clang) and libomp-dev
# (the engine's OpenMP under clang).
probe=$(mktemp -d)
printf '#include <omp.h>\n#include <stddef.h>\n#include <stdint.h>\n%s\n' \
  'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return omp_get_max_threads() < 0; }' \
  >"$probe/probe.c"
if ! command -v clang >/dev/null 2>&1 ||
   ! clang -fsanitize=fuzzer,address,undefined -fopenmp "$probe/probe.c" -o "$probe/probe" \
     >/dev/null 2>&1; then
  rm -rf "$probe"
  skip_all "needs clang with libFuzzer and OpenMP: clang libclang-rt-14-dev libomp-dev"
fi
rm -rf "$probe"
if [ ! -f "$dir/build.ninja" ]; then
  # The libraries get coverage instrumentation (fuzzer-no-link); only the harnesses link
  # libFuzzer. Warnings stay warnings here: this build checks inputs, not style.
  setup_log=$(mktemp)
  if ! CC=clang meson setup "$dir" -Dfuzz=true -Db_sanitize=address,undefined \
      -Db_lundef=false -Dbuildtype=debugoptimized -Dwerror=false \
      -Dc_args=-fsanitize=fuzzer-no-link >"$setup_log" 2>&1; then
    tail -20 "$setup_log" >&2
    rm -f "$setup_log"
    fail_all "meson setup failed"
  fi
  rm -f "$setup_log"
fi
targets=()
for h in "${harnesses[@]}"; do targets+=("tests/fuzz/fuzz_$h"); done
if ! ninja -C "$dir" "${targets[@]}" >"$dir/fuzz-build.log" 2>&1; then
  grep -E "error|FAILED" "$dir/fuzz-build.log" | head -20 >&2
  fail_all "build failed"
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

# final_stat NAME LOG: the value of libFuzzer's final "stat::NAME: value" line (0 if absent).
final_stat() {
  local v
  v=$(grep -a "^stat::$1:" "$2" 2>/dev/null | tail -1 | awk '{print $2}')
  echo "${v:-0}"
}

# field NAME LOG: the number after "NAME:" on libFuzzer's last status line.
field() {
  local v
  v=$(grep -a -E "^#[0-9]+.*cov: " "$2" 2>/dev/null | tail -1 | sed -E "s/.* $1: ([0-9]+).*/\\1/")
  case "$v" in ''|*[!0-9]*) echo 0 ;; *) echo "$v" ;; esac
}

for h in "${harnesses[@]}"; do
  bin="$dir/tests/fuzz/fuzz_$h"
  work="$dir/fuzz-work/$h"
  seeds="tests/fuzz/corpus/$h"
  regs="tests/fuzz/regressions/$h"
  mkdir -p "$work/corpus" "$work/artifacts"
  log="$work/fuzz.log"
  rm -f "$log"
  reason=""
  opts=(-timeout=10 -rss_limit_mb=2048 -artifact_prefix="$work/artifacts/")
  [ -f "tests/fuzz/$h.dict" ] && opts+=(-dict="tests/fuzz/$h.dict")

  # The regressions first, each once: a quick, plain answer when an old bug is back.
  mapfile -t reg_files < <(find "$regs" -type f ! -name '.*' 2>/dev/null | sort)
  if [ ${#reg_files[@]} -gt 0 ] &&
     ! "$bin" "${opts[@]}" "${reg_files[@]}" >"$work/replay.log" 2>&1; then
    tail -40 "$work/replay.log" >&2
    reason="a regression input fails again (see $work/replay.log)"
  fi

  dirs=("$work/corpus" "$seeds")
  [ -d "$regs" ] && dirs+=("$regs")
  if [ -z "$reason" ] &&
     ! timeout -k 10 $((secs + 120)) "$bin" "${opts[@]}" -max_total_time="$secs" \
         -print_final_stats=1 "${dirs[@]}" >"$log" 2>&1; then
    tail -40 "$log" >&2
    artifact=$(ls -t "$work/artifacts" 2>/dev/null | head -1)
    reason="crash: ${artifact:+$work/artifacts/$artifact}"
  fi
  execs=$(final_stat number_of_executed_units "$log")
  rate=$(final_stat average_exec_per_sec "$log")
  line="execs $execs (${rate}/s) cov $(field cov "$log") ft $(field ft "$log")"
  line="$line corpus $(field corp "$log")"
  if [ -z "$reason" ]; then
    echo "fuzz $h: PASS $line"
    passed=$((passed + 1))
  else
    echo "fuzz $h: FAIL $line [$reason]"
    failed=$((failed + 1))
  fi
done
finish
