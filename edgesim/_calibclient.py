"""The client of ``edgesim calibrate``: N sequential GETs on one keep-alive connection.

Run as ``python -P -m edgesim._calibclient PORT HOST PATH N``; ``{i}`` in PATH becomes
the request's number. Prints JSON: counts by status and by X-Cache value, so the
calibration can check that every request had the outcome it measures. It runs in its
own process so that its CPU time is never counted as the edge's.
"""

from __future__ import annotations

import http.client
import json
import sys
from collections import Counter


def run(port: int, host: str, path: str, n: int) -> dict[str, dict[str, int]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    status: Counter[str] = Counter()
    x_cache: Counter[str] = Counter()
    try:
        for i in range(n):
            conn.request("GET", path.replace("{i}", str(i)), headers={"Host": host})
            resp = conn.getresponse()
            resp.read()
            status[str(resp.status)] += 1
            x_cache[resp.getheader("x-cache", "")] += 1
    finally:
        conn.close()
    return {"status": dict(status), "x_cache": dict(x_cache)}


def main() -> None:
    port, host, path, n = sys.argv[1:5]
    print(json.dumps(run(int(port), host, path, int(n))))


if __name__ == "__main__":
    main()
