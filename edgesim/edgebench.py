"""Benchmarks of the edge node (``edgesim bench edge``).

Two parts, each printed as JSON and each with a baseline measured in the same run:

* **core**: the sans-IO node's cost per decision (a memory hit, a miss with its fill)
  with the memory store and the metadata-only store the simulator uses. No I/O.
* **live**: requests/s and latency percentiles on loopback for a minimal Trio + h11
  server returning a fixed body (the ceiling of this stack), edgesim's own server shell
  with a fixed-body handler (limits and validation included), the edge's hit path, its miss path
  (every request a new URL, fetched from a real origin process), and the hit path for
  100 KiB objects (MB/s). Load comes from ``wrk`` pinned to the other core when it is
  installed, else from a Python load generator in its own process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from email.utils import formatdate
from pathlib import Path
from typing import Any

from edgesim.cache import HttpCache, MemoryStore, MetadataStore
from edgesim.http import Request, Response
from edgesim.node import EdgeConfig, EdgeNode, Fetch, Reply

HOST = "bench.test"


# ---- core cost per decision ---------------------------------------------------


def _origin_response(size: int, now: float, meta: bool) -> Response:
    headers = [
        ("cache-control", "public, max-age=86400"),
        ("etag", '"b1"'),
        ("date", formatdate(now, usegmt=True)),
        ("content-type", "application/octet-stream"),
        ("content-length", str(size)),
    ]
    return Response(200, headers, None if meta else b"x" * size, size)


def core_costs(iterations: int = 50_000, size: int = 2048) -> dict[str, Any]:
    """ns per decision of the node core, for hits and misses, by store kind."""
    out: dict[str, Any] = {}
    now = time.time()
    for store_name in ("memory", "metadata"):
        meta = store_name == "metadata"
        store = MetadataStore(10**12) if meta else MemoryStore(10**12)
        node = EdgeNode(HttpCache(store), EdgeConfig(name="bench", manifests=False))
        resp = _origin_response(size, now, meta)
        headers = [("host", HOST)]

        def fill(
            target: str,
            node: EdgeNode = node,
            headers: list[tuple[str, str]] = headers,
            resp: Response = resp,
        ) -> Reply:
            step = node.handle(Request("GET", target, headers), now)
            assert isinstance(step, Fetch)
            reply = node.complete(
                step, Response(resp.status, list(resp.headers), resp.body, resp.size), None, now
            )
            assert isinstance(reply, Reply)
            return reply

        fill("/hot")
        hit_req = Request("GET", "/hot", headers)
        t = time.perf_counter()
        for _ in range(iterations):
            node.handle(hit_req, now)
        hit_ns = (time.perf_counter() - t) / iterations * 1e9
        t = time.perf_counter()
        for i in range(iterations):
            fill(f"/miss/{i}")
        miss_ns = (time.perf_counter() - t) / iterations * 1e9
        out[store_name] = {"hit_ns": round(hit_ns), "miss_ns": round(miss_ns)}
    # Baseline in the same process: building the same Request and Response values bare.
    t = time.perf_counter()
    for _ in range(iterations):
        Request("GET", "/hot", [("host", HOST)])
        Response(200, [("age", "0")], b"")
    out["baseline_value_objects_ns"] = round((time.perf_counter() - t) / iterations * 1e9)
    out["iterations"] = iterations
    return out


# ---- live loopback ---------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pin(cpu: int | None) -> list[str]:
    if cpu is None or shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        return []
    return ["taskset", "-c", str(cpu)]


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited early with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} within {timeout} s")


def _make_site(root: Path) -> None:
    site = root / HOST
    site.mkdir(parents=True)
    (site / "small.txt").write_bytes(b"x" * 1024)
    (site / "big.bin").write_bytes(os.urandom(100 * 1024))
    (site / "_edgesim.toml").write_text('[cache]\ndefault = "public, max-age=86400"\n')


# A minimal Trio + h11 keep-alive server with a fixed body: the ceiling of this stack
# (no limits, no validation beyond h11's own).
_MINIMAL_H11 = """
import sys, h11, trio
BODY = b"x" * int(sys.argv[2])
async def handle(stream):
    try:
        await serve(stream)
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
        pass  # a client went away (wrk closes its connections at the end of a run)
async def serve(stream):
    conn = h11.Connection(h11.SERVER)
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            if not data:
                return
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            continue
        if isinstance(event, h11.EndOfMessage):
            out = conn.send(h11.Response(status_code=200, headers=[("content-length", str(len(BODY)))]))
            out += conn.send(h11.Data(data=BODY)) + conn.send(h11.EndOfMessage())
            await stream.send_all(out)
            if conn.our_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
            continue
        return
async def main():
    await trio.serve_tcp(handle, int(sys.argv[1]), host="127.0.0.1")
trio.run(main)
"""

_BARE = """
import sys, trio
from edgesim._server import HttpServer, bare_app
async def main():
    server = HttpServer(bare_app(b"x" * int(sys.argv[2])))
    async with trio.open_nursery() as n:
        await n.start(server.serve_tcp, "127.0.0.1", int(sys.argv[1]))
trio.run(main)
"""


def _wrk(url: str, seconds: float, connections: int, cpu: int | None, script: str | None) -> dict[str, Any]:
    cmd = [
        *_pin(cpu),
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "-H",
        f"Host: {HOST}",
    ]
    if script:
        cmd += ["-s", script]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)", out, re.MULTILINE)
        if not m:
            return float("nan")
        scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
        return float(m.group(1)) * scale

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": round(rps),
        "p50_ms": pct("50"),
        "p99_ms": pct("99"),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "tool": "wrk",
    }


def _pyload(url: str, seconds: float, connections: int, cpu: int | None, unique: bool) -> dict[str, Any]:
    cmd = [
        *_pin(cpu),
        sys.executable,
        "-P",
        "-m",
        "edgesim._loadgen",
        url,
        str(seconds),
        str(connections),
        HOST,
        "1" if unique else "0",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    return dict(json.loads(out), tool="python")


def live(seconds: float = 5.0, connections: int = 32, *, use_wrk: bool | None = None) -> dict[str, Any]:
    """Loopback figures for the bare server, the edge hit path, the miss path and 100 KiB hits."""
    have_wrk = shutil.which("wrk") is not None if use_wrk is None else use_wrk
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        root = Path(tmp) / "sites"
        _make_site(root)
        script = Path(tmp) / "unique.lua"
        script.write_text(
            "counter = 0\nrequest = function()\n  counter = counter + 1\n"
            '  return wrk.format("GET", "/small.txt?n=" .. counter)\nend\n'
        )

        def start(args: list[str], port: int) -> None:
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            stack.callback(_stop, proc)
            _wait_port(port, proc)

        bare_port, origin_port, edge_port = _free_port(), _free_port(), _free_port()
        h11_port = _free_port()
        start([*_pin(0), sys.executable, "-P", "-c", _MINIMAL_H11, str(h11_port), "1024"], h11_port)
        start([*_pin(0), sys.executable, "-P", "-c", _BARE, str(bare_port), "1024"], bare_port)
        start(
            [
                *_pin(1),
                sys.executable,
                "-P",
                "-m",
                "origin",
                "--sites",
                str(root),
                "--port",
                str(origin_port),
            ],
            origin_port,
        )
        start(
            [
                *_pin(0),
                sys.executable,
                "-P",
                "-m",
                "edgesim",
                "edge",
                "serve",
                "--origin",
                f"http://127.0.0.1:{origin_port}",
                "--port",
                str(edge_port),
                "--memory-cache",
                "1GB",
            ],
            edge_port,
        )

        def load(url: str, unique: bool = False) -> dict[str, Any]:
            if have_wrk:
                return _wrk(url, seconds, connections, 1, str(script) if unique else None)
            return _pyload(url, seconds, connections, 1, unique)

        edge = f"http://127.0.0.1:{edge_port}"
        _warm(f"{edge}/small.txt")
        _warm(f"{edge}/big.bin")
        results["bare_h11_1k"] = load(f"http://127.0.0.1:{h11_port}/")
        results["bare_1k"] = load(f"http://127.0.0.1:{bare_port}/")
        results["edge_hit_1k"] = load(f"{edge}/small.txt")
        results["edge_miss_1k"] = load(f"{edge}/small.txt", unique=True)
        big = load(f"{edge}/big.bin")
        big["mb_per_s"] = round(big["rps"] * 100 * 1024 / 1e6, 1)
        results["edge_hit_100k"] = big
    results["hit_vs_bare_h11"] = round(
        results["edge_hit_1k"]["rps"] / max(1, results["bare_h11_1k"]["rps"]), 3
    )
    results["hit_vs_bare_shell"] = round(results["edge_hit_1k"]["rps"] / max(1, results["bare_1k"]["rps"]), 3)
    results["connections"] = connections
    results["seconds"] = seconds
    return results


def _warm(url: str) -> None:
    import urllib.request

    req = urllib.request.Request(url, headers={"Host": HOST})
    for _ in range(2):
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(
    seconds: float = 5.0,
    connections: int = 32,
    core_only: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Everything ``edgesim bench edge`` prints."""
    from edgesim.rulebench import machine

    out: dict[str, Any] = {
        "benchmark": "edge",
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "python": sys.version.split()[0],
    }
    if progress:
        progress("core cost per decision")
    out["core"] = core_costs()
    if not core_only:
        if progress:
            progress("live loopback runs")
        out["live"] = live(seconds, connections)
    return out
