#!/usr/bin/env bash
# README's second command: install what is missing, build, run every test.
# Ends with the line "N passed, N failed" (CI reads it).
#
#   sudo scripts/test.sh            # everything: release build + integration, ASan/UBSan, TSan
#   DPSW_QUICK=1 scripts/test.sh    # release build only (no sanitizer builds)
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ $EUID -ne 0 ]]; then
  echo "test.sh: run as root (namespaces, XDP and AF_XDP need it): sudo $0" >&2
  exit 1
fi
bash scripts/install-deps.sh || { echo "0 passed, 1 failed"; exit 1; }

total_pass=0
total_fail=0
status=0

# meson test writes testlog.json: one JSON object per test with its result.
count_results() {
  local log="$1/meson-logs/testlog.json"
  [[ -f $log ]] || { total_fail=$((total_fail + 1)); return; }
  read -r p f s < <(python3 - "$log" <<'PY'
import json, sys
p = f = s = 0
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    if r in ("OK", "EXPECTEDFAIL"): p += 1
    elif r == "SKIP": s += 1
    else: f += 1
print(p, f, s)
PY
)
  echo "== $1: $p passed, $f failed, $s skipped"
  total_pass=$((total_pass + p))
  total_fail=$((total_fail + f))
}

# run_build DIR MESON_ARGS... -- MESON_TEST_ARGS...
run_build() {
  local dir=$1; shift
  local setup=() testargs=()
  while [[ $# -gt 0 && $1 != -- ]]; do setup+=("$1"); shift; done
  [[ ${1:-} == -- ]] && shift
  testargs=("$@")
  echo "== building $dir (${setup[*]})"
  if ! { [[ -f $dir/build.ninja ]] || meson setup "$dir" "${setup[@]}" >/dev/null; } || ! ninja -C "$dir" >"$dir.ninja.log" 2>&1; then
    tail -40 "$dir.ninja.log" 2>/dev/null
    echo "== $dir: build failed"
    total_fail=$((total_fail + 1))
    status=1
    return
  fi
  rm -f "$dir/meson-logs/testlog.json"
  meson test -C "$dir" --print-errorlogs --num-processes 2 "${testargs[@]}" || status=1
  count_results "$dir"
}

run_build build -Dbuildtype=release -- 
if [[ -z ${DPSW_QUICK:-} ]]; then
  # Sanitizer builds cover the core library and unit tests (the daemon links
  # system libraries that are not instrumented).
  # detect_stack_use_after_return: the tx stage keeps pointers to Packet
  # arrays until flush; one that outlives its array is caught here.
  ASAN_OPTIONS=detect_stack_use_after_return=1:halt_on_error=1:abort_on_error=1:print_summary=1 \
  run_build build-asan -Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false -Ddaemon=false -Dbenchmarks=false -- --suite unit
  run_build build-tsan -Dbuildtype=debug -Db_sanitize=thread -Ddaemon=false -Dbenchmarks=false -- --suite unit
fi

echo "${total_pass} passed, ${total_fail} failed"
[[ $total_fail -eq 0 ]] || status=1
exit $status
