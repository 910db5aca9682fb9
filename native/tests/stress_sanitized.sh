#!/usr/bin/env bash
# `edgesim stress` against an EDGESIM_SANITIZE=1 build (ASan + UBSan in the native
# matcher), with the sanitizer runtimes preloaded into every Python process it starts
# (edges, origin, load generator, matcher threads). Any invalid access in the C code
# aborts that process with a report in its log; the stress run then counts a crash and
# exits 1. Usage:
#   native/tests/stress_sanitized.sh [TOPOLOGY] [DURATION]     (default: demo 60s)
#   SANITIZED_PY=DIR ...   reuse a sanitizer build made by sanitized_build.sh DIR
#   STRESS_KEEP=DIR ...    keep the stress run's logs there (else a temp dir)
# Needs gcc and the project's virtualenv active.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
topology="${1:-demo}"
duration="${2:-60s}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if [ -z "${SANITIZED_PY:-}" ]; then
  bash "$here/sanitized_build.sh" "$tmp/build"
  SANITIZED_PY="$tmp/build/py"
fi
work="${STRESS_KEEP:-$tmp/work}"
asan="$(gcc -print-file-name=libasan.so)"
ubsan="$(gcc -print-file-name=libubsan.so)"
# detect_leaks=0: CPython's allocator keeps memory alive at exit by design, and LSan
# would report it. abort_on_error=1: a finding kills the process (SIGABRT), which the
# stress run counts as a crash.
status=0
(cd "$tmp" && PYTHONPATH="$SANITIZED_PY" LD_PRELOAD="$asan:$ubsan" \
  ASAN_OPTIONS="detect_leaks=0:abort_on_error=1" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  python -m edgesim stress "$topology" --duration "$duration" --workdir "$work") || status=$?
if [ "$status" -ne 0 ]; then
  echo "stress_sanitized.sh: edgesim stress exited $status; sanitizer reports:" >&2
  grep -rlE "ERROR: AddressSanitizer|runtime error:|Fatal Python error" "$work" 2>/dev/null \
    | while read -r f; do echo "== $f" >&2; grep -nE -A30 "ERROR: AddressSanitizer|runtime error:|Fatal Python error" "$f" | head -n 60 >&2; done
fi
exit "$status"
