"""The origin as its own OS process: ``python -m origin`` on loopback, real HTTP,
deploys, modelled load and a graceful SIGTERM. Waits are on real I/O, under deadlines."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import h11
import pytest
import trio

# Generous bounds: a loaded CI machine may start Python slowly.
START_TIMEOUT = 20.0
REQUEST_TIMEOUT = 10.0
EXIT_TIMEOUT = 10.0


class Origin:
    def __init__(self, proc: trio.Process, port: int) -> None:
        self.proc = proc
        self.port = port

    async def aclose(self) -> None:
        """Kill the process if a test left it running, and release its pipes."""
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self.proc.stdout is not None:
            await self.proc.stdout.aclose()


async def request(
    port: int,
    method: str,
    target: str,
    host: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection with a tiny h11 client: (status, headers, body)."""
    with trio.fail_after(REQUEST_TIMEOUT):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            conn = h11.Connection(h11.CLIENT)
            hs = [("host", host), ("connection", "close"), *(headers or [])]
            if body or method == "POST":
                hs.append(("content-length", str(len(body))))
            data = conn.send(h11.Request(method=method, target=target, headers=hs))
            if body:
                data += conn.send(h11.Data(data=body))
            data += conn.send(h11.EndOfMessage())
            await stream.send_all(data)
            status, out_headers, chunks = 0, {}, []
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                    continue
                if isinstance(event, h11.Response):
                    status = event.status_code
                    out_headers = {k.decode(): v.decode() for k, v in event.headers}
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    return status, out_headers, b"".join(chunks)


async def start_origin(sites: Path, *extra: str) -> Origin:
    """Start ``python -m origin`` and read the port from its first stdout line."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-P", "-m", "origin", "--sites", str(sites), "--port", "0", *extra],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = b""
    with trio.fail_after(START_TIMEOUT):
        while not line.endswith(b"\n"):
            chunk = await proc.stdout.receive_some(1)
            assert chunk, f"origin exited early: {line!r}"
            line += chunk
    text = line.decode().strip()
    assert text.startswith("origin listening on http://127.0.0.1:"), text
    return Origin(proc, int(text.rsplit(":", 1)[1]))


async def wait_exit(proc: trio.Process) -> int:
    with trio.fail_after(EXIT_TIMEOUT):
        return await proc.wait()


@pytest.fixture
def sites(tmp_path: Path) -> Path:
    site = tmp_path / "sites" / "shop.test"
    (site / "assets").mkdir(parents=True)
    (site / "index.html").write_text("<h1>shop v1</h1>")
    (site / "assets" / "app.0123abcd.js").write_text("v1()")
    (site / "_redirects").write_text("/old /index.html 301\n")
    slow = tmp_path / "sites" / "slow.test"
    slow.mkdir()
    (slow / "index.html").write_text("slow")
    (slow / "_edgesim.toml").write_text("[load]\nservice_time = 1.0\n")
    return tmp_path / "sites"


@pytest.fixture
async def origin(sites: Path) -> AsyncIterator[Origin]:
    o = await start_origin(sites)
    try:
        yield o
    finally:
        await o.aclose()


async def test_serves_files_rules_and_conditionals(origin: Origin) -> None:
    status, headers, body = await request(origin.port, "GET", "/", "shop.test")
    assert (status, body) == (200, b"<h1>shop v1</h1>")
    assert headers["x-edgesim-deploy"].startswith("d")
    assert headers["cache-control"] == "public, max-age=0, s-maxage=60"
    etag = headers["etag"]
    status, h304, body = await request(origin.port, "GET", "/", "shop.test", [("if-none-match", etag)])
    assert (status, body) == (304, b"")
    assert h304["etag"] == etag
    status, headers, _ = await request(origin.port, "GET", "/old?x=1", "shop.test")
    assert (status, headers["location"]) == (301, "/index.html?x=1")
    status, headers, body = await request(origin.port, "HEAD", "/assets/app.0123abcd.js", "shop.test")
    assert (status, body, headers["content-length"]) == (200, b"", "4")
    assert headers["cache-control"] == "public, max-age=31536000, immutable"
    status, _, _ = await request(origin.port, "GET", "/", "nowhere.test")
    assert status == 404


async def test_deploy_changes_the_deploy_id_and_content(origin: Origin, sites: Path) -> None:
    _, before, _ = await request(origin.port, "GET", "/", "shop.test")
    (sites / "shop.test" / "index.html").write_text("<h1>shop v2</h1>")
    status, _, body = await request(origin.port, "POST", "/.edgesim/deploy", "shop.test")
    assert status == 200
    doc = json.loads(body)
    assert doc["previous"] == before["x-edgesim-deploy"]
    assert doc["deploy_id"] != doc["previous"]
    status, after, body = await request(origin.port, "GET", "/", "shop.test")
    assert body == b"<h1>shop v2</h1>"
    assert after["x-edgesim-deploy"] == doc["deploy_id"]
    _, _, manifest = await request(origin.port, "GET", "/.edgesim/manifest", "shop.test")
    m = json.loads(manifest)
    assert m["deploy_id"] == doc["deploy_id"]
    assert m["files"]["/index.html"] == after["etag"]
    assert m["rules"]["_redirects"] == "/old /index.html 301\n"


async def test_sigterm_drains_the_in_flight_request(origin: Origin) -> None:
    results: list[tuple[int, bytes]] = []

    async def slow_get() -> None:
        status, _, body = await request(origin.port, "GET", "/", "slow.test")
        results.append((status, body))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(slow_get)
        with trio.fail_after(REQUEST_TIMEOUT):
            while True:  # wait on real I/O until the origin reports it in service
                _, _, body = await request(origin.port, "GET", "/.edgesim/health", "any")
                if json.loads(body)["in_flight"] == 1:
                    break
        origin.proc.send_signal(signal.SIGTERM)
    assert results == [(200, b"slow")]
    assert await wait_exit(origin.proc) == 0


async def test_concurrency_limit_queues_and_reports(sites: Path) -> None:
    o = await start_origin(sites, "--concurrency", "1")
    try:
        waits: list[str | None] = []

        async def slow_get() -> None:
            status, headers, _ = await request(o.port, "GET", "/", "slow.test")
            assert status == 200
            waits.append(headers.get("x-edgesim-queue-wait"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow_get)
            nursery.start_soon(slow_get)
            with trio.fail_after(REQUEST_TIMEOUT):
                while True:
                    _, _, body = await request(o.port, "GET", "/.edgesim/health", "any")
                    health = json.loads(body)
                    if health["queued"] == 1:
                        break
            assert health["in_flight"] == 1
        assert waits.count(None) == 1
        queued = [w for w in waits if w is not None]
        assert len(queued) == 1 and float(queued[0]) > 0.5
        _, _, body = await request(o.port, "GET", "/.edgesim/health", "any")
        assert json.loads(body)["load"]["total_queued"] == 1
        o.proc.send_signal(signal.SIGINT)
        assert await wait_exit(o.proc) == 0
    finally:
        await o.aclose()


async def test_bad_site_config_exits_with_a_clear_error(tmp_path: Path) -> None:
    site = tmp_path / "bad.test"
    site.mkdir()
    (site / "_edgesim.toml").write_text("[load]\nservice_time = 'slow'\n")
    with trio.fail_after(START_TIMEOUT):
        done = await trio.run_process(
            [sys.executable, "-P", "-m", "origin", "--sites", str(tmp_path), "--port", "0"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 2
    assert done.stdout == b""
    assert b"load.service_time: expected a number" in done.stderr
