"""The client of ``edgesim calibrate``: N sequential GETs on one keep-alive connection.

Run as ``python -P -m edgesim._calibclient PORT HOST PATH N [CONNECTIONS]``: N requests
in all, spread over CONNECTIONS keep-alive connections (one thread each) that send at
once; ``{i}`` in PATH becomes the request's number and ``{c}`` the connection's. Prints
JSON: counts by status and by X-Cache value, so the calibration can check that every
request had the outcome it measures. It runs in its own process so that its CPU time is
never counted as the edge's.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
from collections import Counter


def _connection(
    port: int, host: str, path: str, numbers: range, c: int, status: Counter[str], x_cache: Counter[str]
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for i in numbers:
            conn.request("GET", path.replace("{i}", str(i)).replace("{c}", str(c)), headers={"Host": host})
            resp = conn.getresponse()
            resp.read()
            status[str(resp.status)] += 1
            x_cache[resp.getheader("x-cache", "")] += 1
    finally:
        conn.close()


def run(port: int, host: str, path: str, n: int, connections: int = 1) -> dict[str, dict[str, int]]:
    k = max(1, min(connections, n))
    counters = [(Counter[str](), Counter[str]()) for _ in range(k)]
    threads = [
        threading.Thread(
            target=_connection, args=(port, host, path, range(c, n, k), c, *counters[c]), daemon=True
        )
        for c in range(k)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    status: Counter[str] = Counter()
    x_cache: Counter[str] = Counter()
    for s, x in counters:
        status.update(s)
        x_cache.update(x)
    return {"status": dict(status), "x_cache": dict(x_cache)}


def main() -> None:
    port, host, path, n = sys.argv[1:5]
    connections = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    print(json.dumps(run(int(port), host, path, int(n), connections)))


if __name__ == "__main__":
    main()
