#!/usr/bin/env bash
# Build edgesim with EDGESIM_SANITIZE=1 (ASan + UBSan in the extension) into OUT/py,
# from a copy of the source tree with no build products, and check that the extension
# really links libasan. Usage: sanitized_build.sh OUT   (sourced helpers: none)
# Needs gcc and the project's virtualenv active (python, pip).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$1"
# Build from a copy so that objects left in build/ by a normal install are not reused.
mkdir -p "$out/src"
(cd "$root" && tar --exclude=./build --exclude=./.venv --exclude=./.git -cf - .) | tar -xf - -C "$out/src"
# No build products of a normal build may leak in: no in-place extension, no egg-info,
# no cached wheel (one CI run once got an uninstrumented extension).
find "$out/src" \( -name '*.so' -o -name '*.o' \) -delete
rm -rf "$out/src"/*.egg-info "$out/src/build"
# EDGESIM_COMPILE=0: the binding tests need the sanitized matcher, not the mypyc cores.
(cd "$out/src" && EDGESIM_SANITIZE=1 EDGESIM_COMPILE=0 python -m pip install -v --no-cache-dir --no-deps --target "$out/py" . > "$out/pip.log" 2>&1) \
  || { tail -n 40 "$out/pip.log"; exit 1; }
so="$(ls "$out"/py/edgesim/_redirects_cffi*.so)"
# Not `ldd | grep -q`: under pipefail, grep -q exiting early can SIGPIPE ldd and fail
# the check at random.
ldd "$so" > "$out/ldd.txt"
if ! grep -q libasan "$out/ldd.txt"; then
  echo "sanitized_build.sh: $so is not linked against libasan" >&2
  ls -la "$out"/py/edgesim/ >&2
  grep -nE "gcc|skipping|up to date|Created wheel" "$out/pip.log" | tail -n 20 >&2
  exit 1
fi
