"""Child processes of ``edgesim stress`` (run with ``python -P -m edgesim._stresschild``).

Two modes:

* ``edge serve ...``: an ordinary ``edgesim edge serve`` with two additions: a daemon
  thread that calls ``gc.collect()`` in a loop for the life of the process (so that
  collections land between any two steps of the event loop, including between a rule
  set's compile and its first match after a deploy), and fatal-error reporting
  (``faulthandler`` for C crashes; an uncaught exception in any thread ends the process
  with :data:`FATAL_THREAD_EXIT`, which the supervisor records as a death).
* ``match RESULT.json SECONDS THREADS RULEFILE...``: matching from worker threads.
  ``THREADS`` threads match URLs with ``RuleSet.match`` and ``match_many`` (the C call
  runs without the GIL) on whichever set is current; a reload thread compiles a new set
  from the rule files, forces a collection between compile and publication, swaps the
  shared reference and releases the old set, alternately by dropping it (the ``ffi.gc``
  finalizer frees it once no thread holds it) and by ``close()`` while other threads
  may still be inside a match; plus the ``gc.collect()`` thread. Writes counts as JSON.
  A match that finds its set closed raises ``ValueError("RuleSet is closed")``, as the
  binding promises; that is counted, not an error. Any other exception in a thread is
  a fatal thread error.
"""

from __future__ import annotations

import faulthandler
import gc
import json
import os
import random
import sys
import threading
import time
from typing import Any

# Exit status of a process whose thread died of an uncaught exception (EX_SOFTWARE).
FATAL_THREAD_EXIT = 70
# Pause (seconds) between forced collections: a full collection of these processes
# takes a few ms, so the loop collects about a hundred times a second (the matcher
# process) or a few dozen (an edge, whose event loop needs the GIL to serve) without
# starving the threads doing the work.
GC_PAUSE = 0.005
EDGE_GC_PAUSE = 0.02
# Set to N (seconds) to make every edge process segfault N seconds after it starts: a
# check that ``edgesim stress`` sees, counts and logs crashes (docs/stress.md).
SELFTEST_CRASH_ENV = "EDGESIM_STRESS_SELFTEST_CRASH"


def _gc_loop(stop: threading.Event, counter: list[int], pause: float = GC_PAUSE) -> None:
    while not stop.is_set():
        gc.collect()
        counter[0] += 1
        time.sleep(pause)


def _fatal_hook(args: threading.ExceptHookArgs) -> None:
    sys.stderr.write(
        f"fatal error in thread {args.thread.name if args.thread else '?'}: {args.exc_value!r}\n"
    )
    sys.stderr.flush()
    os._exit(FATAL_THREAD_EXIT)


def _edge(argv: list[str]) -> int:
    from edgesim.cli import main

    threading.excepthook = _fatal_hook
    crash_after = os.environ.get(SELFTEST_CRASH_ENV)
    if crash_after:
        # a deliberate segfault, to check that a crash is seen, counted and logged
        timer = threading.Timer(float(crash_after), faulthandler._sigsegv)  # type: ignore[attr-defined]
        timer.daemon = True
        timer.start()
    threading.Thread(
        target=_gc_loop, args=(threading.Event(), [0], EDGE_GC_PAUSE), name="gc-loop", daemon=True
    ).start()
    sys.argv = ["edgesim", *argv]
    main()
    return 0


def urls_for_rules(texts: list[str], rng: random.Random, n: int = 2000) -> list[str]:
    """Request URLs that hit the rules' sources (placeholders and splats filled in)
    plus some that hit none."""
    sources: list[str] = []
    for text in texts:
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("from ="):  # netlify.toml
                src = line.split("=", 1)[1].strip().strip("\"'")
            elif line.startswith("/"):
                src = line.split()[0]
            else:
                continue
            parts = [
                ("x" + str(rng.randrange(100)) if p.startswith(":") or p == "*" else p)
                for p in src.split("/")
            ]
            sources.append("/".join(parts) or "/")
    out = []
    for i in range(n):
        if sources and i % 4:
            out.append(rng.choice(sources))
        else:
            out.append(f"/page-{rng.randrange(1000)}.html?q={i}")
    return out


def _match(out_path: str, seconds: float, threads: int, files: list[str]) -> int:
    from edgesim._atomic import write_atomic
    from edgesim.redirects import RuleSet

    threading.excepthook = _fatal_hook
    texts = []
    for f in files:
        with open(f, encoding="utf-8") as fh:
            texts.append(fh.read())
    rng = random.Random(7)
    urls = urls_for_rules(texts, rng)

    def compile_all() -> list[RuleSet]:
        return [RuleSet.from_file(f) for f in files]

    current: list[list[RuleSet]] = [compile_all()]
    stop = threading.Event()
    counts = {"matches": 0, "match_many_calls": 0, "closed_races": 0, "reloads": 0, "gc_collections": 0}
    lock = threading.Lock()
    errors: list[str] = []
    gc_count = [0]

    def worker(k: int) -> None:
        r = random.Random(k)
        local = {"matches": 0, "match_many_calls": 0, "closed_races": 0}
        try:
            while not stop.is_set():
                sets = current[0]  # one read of the shared reference
                rs = sets[r.randrange(len(sets))]
                try:
                    if r.random() < 0.2:
                        batch = [urls[r.randrange(len(urls))] for _ in range(32)]
                        rs.match_many(batch, country="GB", language="en")
                        local["match_many_calls"] += 1
                        local["matches"] += len(batch)
                    else:
                        rs.match(urls[r.randrange(len(urls))], country="DE")
                        local["matches"] += 1
                except ValueError as exc:
                    if "closed" not in str(exc):
                        raise
                    local["closed_races"] += 1
        except Exception as exc:  # a fatal thread error: reported, counted, not hidden
            errors.append(f"worker {k}: {exc!r}")
        with lock:
            for key, v in local.items():
                counts[key] += v

    def reloader() -> None:
        n = 0
        try:
            while not stop.is_set():
                fresh = compile_all()
                gc.collect()  # between parse and match, as in the incident
                old, current[0] = current[0], fresh
                n += 1
                if n % 2:
                    for rs in old:
                        rs.close()  # other threads may be inside a match on it
                # Either way the old sets are dropped here; a set not closed is freed by
                # its ffi.gc finalizer once the last thread holding it lets go.
                del old
                time.sleep(0.005)
        except Exception as exc:
            errors.append(f"reloader: {exc!r}")
        counts["reloads"] = n

    pool = [threading.Thread(target=worker, args=(k,), name=f"match-{k}") for k in range(threads)]
    pool.append(threading.Thread(target=reloader, name="reload"))
    pool.append(threading.Thread(target=_gc_loop, args=(stop, gc_count), name="gc-loop"))
    t0 = time.monotonic()
    for t in pool:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    elapsed = time.monotonic() - t0
    counts["gc_collections"] = gc_count[0]
    result: dict[str, Any] = {
        **counts,
        "threads": threads,
        "seconds": round(elapsed, 3),
        "matches_per_s": round(counts["matches"] / elapsed),
        "fatal_thread_errors": errors,
    }
    write_atomic(out_path, json.dumps(result))
    return 0


def main() -> int:
    faulthandler.enable()  # a C crash prints every thread's Python stack to stderr
    args = sys.argv[1:]
    if args[:2] == ["edge", "serve"]:
        return _edge(args)
    if args[:1] == ["match"] and len(args) >= 5:
        return _match(args[1], float(args[2]), int(args[3]), args[4:])
    sys.stderr.write(
        "usage: python -m edgesim._stresschild edge serve ... | match OUT SECONDS THREADS RULEFILE...\n"
    )
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
