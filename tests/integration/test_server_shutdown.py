"""Stopping the live services: ``edgesim edge serve`` and the origin as real processes,
clients on real loopback sockets, the exit timed on the wall clock.

A stopped server closes idle keep-alive connections at once, gives a request still
arriving a short grace, lets a request being handled finish, and exits: it used to wait
out the header timeout (10 s) of a keep-alive client that had sent a stray CRLF after its
request, or of a client stalled mid-head.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import OriginProcess

from edgesim._server import Limits

# The bound every exit below must beat by far: what a stopped server used to wait.
HEADER_TIMEOUT = Limits().header_timeout
# The slow site's modelled service time: the in-flight request outlives the signal.
SERVICE_TIME = 1.0
IO_TIMEOUT = 20.0


@pytest.fixture
def sites(tmp_path: Path) -> Path:
    root = tmp_path / "sites"
    fast = root / "fast.test"
    fast.mkdir(parents=True)
    (fast / "index.html").write_bytes(b"fast")
    slow = root / "slow.test"
    slow.mkdir()
    (slow / "index.html").write_bytes(b"slow")
    (slow / "_edgesim.toml").write_text(f"[load]\nservice_time = {SERVICE_TIME}\n")
    slower = root / "slower.test"
    slower.mkdir()
    (slower / "index.html").write_bytes(b"slower")
    (slower / "_edgesim.toml").write_text("[load]\nservice_time = 8.0\n")
    return root


@pytest.fixture
def origin(sites: Path) -> Iterator[OriginProcess]:
    p = OriginProcess(sites)
    yield p
    p.stop()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split()[0].rstrip(")"))


def _start_edge(origin_url: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "edgesim", "edge", "serve", "--origin", origin_url, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert " listening on http://127.0.0.1:" in line, line
    return proc, int(line.split("http://127.0.0.1:")[1].split()[0])


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)


def _read_response(conn: socket.socket) -> tuple[bytes, bytes]:
    """One whole Content-Length response: (head, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    fields = [line.split(b":", 1) for line in head.split(b"\r\n")[1:]]
    length = next(int(value) for name, value in fields if name.lower() == b"content-length")
    while len(body) < length:
        chunk = conn.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    return head, body


def _get(host: str) -> bytes:
    return f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


def _closed_at_once(conn: socket.socket) -> bool:
    """Whether the server closed ``conn`` without sending anything more."""
    try:
        return conn.recv(65536) == b""
    except ConnectionResetError:
        return True


def _wait_in_flight(origin_url: str) -> None:
    """Until the origin reports a request in service (its health endpoint)."""
    deadline = time.monotonic() + IO_TIMEOUT
    while time.monotonic() < deadline:
        with _connect(_port(origin_url)) as c:
            c.sendall(b"GET /.edgesim/health HTTP/1.1\r\nHost: any\r\nConnection: close\r\n\r\n")
            _, body = _read_response(c)
        if json.loads(body)["in_flight"] >= 1:
            return
        time.sleep(0.02)
    raise AssertionError("the request never reached the origin")


def _stop_with_clients(proc: subprocess.Popen[str], port: int, origin_url: str, signum: int) -> None:
    """Stop ``proc`` (serving on ``port``) with every kind of client connected."""
    idle = _connect(port)  # a keep-alive connection after one request
    idle.sendall(_get("fast.test"))
    assert _read_response(idle)[1] == b"fast"
    crlf = _connect(port)  # the same, plus a stray CRLF (RFC 9112 §2.2)
    crlf.sendall(_get("fast.test"))
    assert _read_response(crlf)[1] == b"fast"
    crlf.sendall(b"\r\n")
    silent = _connect(port)  # connected, nothing sent yet
    partial = _connect(port)  # stalled mid-head
    partial.sendall(b"GET / HTTP/1.1\r\nHost: fast.test\r\n")
    busy = _connect(port)  # a keep-alive request being handled when the signal comes
    busy.sendall(_get("slow.test"))
    _wait_in_flight(origin_url)
    time.sleep(0.2)  # the stray CRLF and the partial head are surely read by now

    t0 = time.monotonic()
    proc.send_signal(signum)
    for conn in (idle, crlf, silent):
        assert _closed_at_once(conn)
    assert time.monotonic() - t0 < SERVICE_TIME, "idle connections were not closed at once"
    head, body = _read_response(busy)  # the request in flight still completes
    assert head.startswith(b"HTTP/1.1 200 ") and body == b"slow"
    assert b"\r\nconnection: close" in head.lower()
    assert _closed_at_once(busy)
    assert _closed_at_once(partial)  # after the short grace, unanswered
    assert proc.wait(timeout=IO_TIMEOUT) == 0
    took = time.monotonic() - t0
    assert took < HEADER_TIMEOUT / 3, f"exit took {took:.2f} s"
    for conn in (idle, crlf, silent, partial, busy):
        conn.close()


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_edge_serve_stops_promptly_and_finishes_the_request_in_flight(
    origin: OriginProcess, signame: str
) -> None:
    proc, port = _start_edge(origin.url)
    try:
        _stop_with_clients(proc, port, origin.url, getattr(signal, signame))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.communicate()


def test_origin_stops_promptly_and_finishes_the_request_in_flight(origin: OriginProcess) -> None:
    _stop_with_clients(origin.proc, _port(origin.url), origin.url, signal.SIGTERM)


def test_edge_serve_second_signal_cancels_what_is_left(origin: OriginProcess) -> None:
    proc, port = _start_edge(origin.url)
    try:
        busy = _connect(port)
        busy.sendall(_get("slower.test"))  # 8 s at the origin
        _wait_in_flight(origin.url)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert proc.poll() is None  # draining
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=IO_TIMEOUT) == 0
        assert time.monotonic() - t0 < 4.0
        assert _closed_at_once(busy)
        busy.close()
        origin.proc.kill()  # rather than wait out its 8 s request
        origin.proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.communicate()
