#!/usr/bin/env bash
# Run the public HTTP caching test suite (github.com/http-tests/cache-tests) against an
# edgesim edge node, all on 127.0.0.1, and score it with the suite's own result logic.
#
# usage: tests/conformance/run_cache_tests.sh [SUITE_DIR]
#
#   SUITE_DIR (or CACHE_TESTS_DIR): a prepared checkout of the suite (npm install done).
#     It is never copied into this repository; score.mjs imports its results.mjs.
# environment:
#   PYTHON          interpreter with edgesim's dependencies (default: python3)
#   RESULTS         where to write the client's JSON results (default: a temp dir)
#   CACHE_TESTS_ID  run one test only (prints the client's dump; no score)
#   EDGE_ARGS       extra arguments for `edgesim edge serve`
#   RUN_TIMEOUT     seconds allowed for the client run (default 900)
#
# The suite's origin is started with loopback.mjs preloaded, so it listens on 127.0.0.1
# only; the edge listens on 127.0.0.1. Both are stopped (by pid) on exit.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
suite="${1:-${CACHE_TESTS_DIR:-}}"
if [[ -z "$suite" || ! -f "$suite/test-engine/cli.mjs" || ! -f "$suite/test-engine/lib/results.mjs" ]]; then
  echo "usage: $0 SUITE_DIR   (or CACHE_TESTS_DIR=...): a cache-tests checkout with npm install done" >&2
  exit 2
fi
suite="$(cd "$suite" && pwd)"
[[ -d "$suite/node_modules" ]] || { echo "run 'npm install' in $suite first" >&2; exit 2; }
python="${PYTHON:-python3}"
run_timeout="${RUN_TIMEOUT:-900}"
work="$(mktemp -d "${TMPDIR:-/tmp}/edgesim-cache-tests.XXXXXX")"
results="${RESULTS:-$work/results.json}"

origin_pid=""
edge_pid=""
cleanup() {
  for pid in "$edge_pid" "$origin_pid"; do
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_http() {  # wait_http URL PID NAME LOG
  for _ in $(seq 100); do
    if ! kill -0 "$2" 2>/dev/null; then
      echo "$3 exited early; its log:" >&2; cat "$4" >&2; exit 1
    fi
    if "$python" - "$1" <<'PY' 2>/dev/null; then return 0; fi
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1], timeout=1)
except urllib.error.HTTPError:
    pass  # any HTTP answer means it is up
PY
    sleep 0.2
  done
  echo "$3 did not answer on $1 within 20 s; its log:" >&2; cat "$4" >&2; exit 1
}

origin_port="$(free_port)"
edge_port="$(free_port)"
while [[ "$edge_port" == "$origin_port" ]]; do edge_port="$(free_port)"; done

# The suite's origin server (reads its settings from npm-style environment variables).
(
  cd "$suite"
  exec env npm_config_protocol=http npm_config_port="$origin_port" \
    npm_config_pidfile="$work/origin.pid" \
    node --import "$(node -e 'console.log(require("url").pathToFileURL(process.argv[1]).href)' "$here/loopback.mjs")" \
    test-engine/server/server.mjs
) >"$work/origin.log" 2>&1 &
origin_pid=$!
wait_http "http://127.0.0.1:$origin_port/" "$origin_pid" origin "$work/origin.log"
if ! grep -q "Listening on http://127.0.0.1:$origin_port/" "$work/origin.log"; then
  echo "origin is not bound to 127.0.0.1; its log:" >&2; cat "$work/origin.log" >&2; exit 1
fi

# The edge under test.
# shellcheck disable=SC2086
PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" "$python" -m edgesim edge serve \
  --origin "http://127.0.0.1:$origin_port" --host 127.0.0.1 --port "$edge_port" \
  --no-manifests --memory-cache 64MB ${EDGE_ARGS:-} >"$work/edge.log" 2>&1 &
edge_pid=$!
wait_http "http://127.0.0.1:$edge_port/" "$edge_pid" edge "$work/edge.log"

echo "origin 127.0.0.1:$origin_port (pid $origin_pid), edge 127.0.0.1:$edge_port (pid $edge_pid), logs in $work"
cd "$suite"
if [[ -n "${CACHE_TESTS_ID:-}" ]]; then
  timeout "$run_timeout" env npm_config_base="http://127.0.0.1:$edge_port" npm_config_id="$CACHE_TESTS_ID" \
    node --no-warnings test-engine/cli.mjs
  exit $?
fi
start=$(date +%s)
timeout "$run_timeout" env npm_config_base="http://127.0.0.1:$edge_port" npm_config_id= npm_package_config_id= \
  node --no-warnings test-engine/cli.mjs >"$results" 2>"$work/client.err"
echo "client finished in $(( $(date +%s) - start )) s; results in $results"
node "$here/score.mjs" "$suite" "$results" --list
