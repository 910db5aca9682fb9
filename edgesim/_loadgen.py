"""A small keep-alive HTTP/1.1 load generator, used when ``wrk`` is not installed.

Run as ``python -m edgesim._loadgen URL SECONDS CONNECTIONS HOST UNIQUE``; prints JSON
with requests/s and latency percentiles. Bounded in time; loopback URLs only.
"""

from __future__ import annotations

import json
import sys
import time
from urllib.parse import urlsplit

import trio


async def _conn(
    host: str,
    port: int,
    path: str,
    vhost: str,
    unique: bool,
    deadline: float,
    lat: list[float],
    errors: list[int],
    seq: list[int],
) -> None:
    stream = await trio.open_tcp_stream(host, port)
    buf = b""
    async with stream:
        while time.monotonic() < deadline:
            seq[0] += 1
            target = f"{path}{'&' if '?' in path else '?'}n={seq[0]}" if unique else path
            req = f"GET {target} HTTP/1.1\r\nHost: {vhost}\r\n\r\n".encode()
            t = time.perf_counter()
            await stream.send_all(req)
            while b"\r\n\r\n" not in buf:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(buf) < length:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                buf += chunk
            buf = buf[length:]
            lat.append(time.perf_counter() - t)
            if not head.startswith((b"HTTP/1.1 2", b"HTTP/1.1 3")):
                errors[0] += 1


async def _main(url: str, seconds: float, connections: int, vhost: str, unique: bool) -> dict[str, float]:
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("the load generator only targets loopback addresses")
    lat: list[float] = []
    errors, seq = [0], [0]
    start = time.monotonic()
    deadline = start + seconds
    async with trio.open_nursery() as nursery:
        for _ in range(connections):
            nursery.start_soon(
                _conn,
                parts.hostname,
                parts.port or 80,
                parts.path or "/",
                vhost,
                unique,
                deadline,
                lat,
                errors,
                seq,
            )
    elapsed = time.monotonic() - start
    lat.sort()

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 3) if lat else float("nan")

    return {"rps": round(len(lat) / elapsed), "p50_ms": pct(0.50), "p99_ms": pct(0.99), "non_2xx": errors[0]}


def main() -> None:
    url, seconds, conns, vhost, unique = sys.argv[1:6]
    print(json.dumps(trio.run(_main, url, float(seconds), int(conns), vhost, unique == "1")))


if __name__ == "__main__":
    main()
