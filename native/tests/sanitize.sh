#!/usr/bin/env bash
# Native checks under AddressSanitizer + UBSan, bounded in time:
#   1. the C unit tests (native/tests/test_esr.c, test_replay.c);
#   2. a fuzz run of the parser and matcher (libFuzzer with clang when available,
#      else the standalone driver built with gcc), bounded by FUZZ_SECONDS;
#   3. the Python binding tests (tests/native, minus the slow property tests) against
#      an EDGESIM_SANITIZE=1 build of the extension, with the ASan runtime preloaded;
#   4. a short `edgesim stress` run (STRESS_SECONDS, default 20) against that build.
# Run from anywhere; needs gcc and the project's virtualenv active (python, pytest).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

echo "== C unit tests (ASan + UBSan) =="
make -s -C "$here" test OUT="$out/c"

echo "== fuzz: parser and matcher, ${FUZZ_SECONDS}s =="
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1"
if command -v clang >/dev/null 2>&1 && clang -fsanitize=fuzzer -x c -o /dev/null - <<<'int LLVMFuzzerTestOneInput(const char*d,unsigned long n){return 0;}' 2>/dev/null; then
  clang -std=c11 $san -fsanitize=fuzzer -I"$root/native/include" -I"$root/native/src" \
    "$here/fuzz_parse.c" "$root"/native/src/*.c -o "$out/fuzz"
  mkdir -p "$out/corpus"
  cp "$here"/fuzz_seeds/* "$out/corpus/" 2>/dev/null || true
  "$out/fuzz" -max_total_time="$FUZZ_SECONDS" -max_len=4096 -print_final_stats=1 "$out/corpus" 2>&1 | tail -n 12
else
  gcc -std=c11 $san -DESR_FUZZ_STANDALONE -I"$root/native/include" -I"$root/native/src" \
    "$here/fuzz_parse.c" "$root"/native/src/*.c -o "$out/fuzz"
  ESR_FUZZ_SECONDS="$FUZZ_SECONDS" "$out/fuzz"
fi

echo "== Python binding tests against a sanitizer build =="
bash "$here/sanitized_build.sh" "$out"
asan="$(gcc -print-file-name=libasan.so)"
ubsan="$(gcc -print-file-name=libubsan.so)"
# Run from $out so that the source tree's edgesim/ does not shadow the sanitizer build.
(cd "$out" && PYTHONPATH="$out/py" LD_PRELOAD="$asan:$ubsan" \
  ASAN_OPTIONS="detect_leaks=0:abort_on_error=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  python -m pytest -q -p no:cacheprovider --rootdir "$root" "$root/tests/native" \
    -k "not test_native_agrees_with_reference and not test_arbitrary_bytes_agree")

echo "== edgesim stress against the sanitizer build, ${STRESS_SECONDS:-20}s =="
SANITIZED_PY="$out/py" bash "$here/stress_sanitized.sh" crash-drill "${STRESS_SECONDS:-20}s"
