"""Hostile and malformed requests against the server shell over real loopback sockets.

Each case opens a connection to a server on 127.0.0.1:0, sends raw bytes, reads until
the server closes, and checks the statuses the shell answered, that the handler never
saw the request, and that the listener still serves a normal request afterwards.
"""

from __future__ import annotations

import re

import pytest
import trio

from edgesim._server import HttpServer, Limits
from edgesim.http import Request, Response

MAX_BODY = 1024
LIMITS = Limits(max_body=MAX_BODY)

# Bodies here ("ok", "400 Bad Request") never contain a status line, so no anchor.
_STATUS_RE = re.compile(rb"HTTP/1\.1 (\d{3}) ")

GET = b"GET / HTTP/1.1\r\nHost: a\r\n"
POST = b"POST / HTTP/1.1\r\nHost: a\r\n"
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n\r\n"

# (id, raw bytes, expected statuses in order ([] = closed without an answer),
#  handler calls expected)
CASES: list[tuple[str, bytes, list[int], int]] = [
    # -- framing ambiguities (request smuggling) --
    ("cl-and-te", POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", [400], 0),
    ("te-and-cl", POST + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", [400], 0),
    ("te-on-http10", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", [400], 0),
    ("duplicate-cl-equal", POST + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", [400], 0),
    ("duplicate-cl-differ", POST + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", [400], 0),
    ("cl-list", POST + b"Content-Length: 5, 5\r\n\r\nhello", [400], 0),
    ("cl-garbage", POST + b"Content-Length: 5x\r\n\r\nhello", [400], 0),
    ("cl-negative", POST + b"Content-Length: -1\r\n\r\n", [400], 0),
    ("cl-plus-sign", POST + b"Content-Length: +5\r\n\r\nhello", [400], 0),
    ("cl-hex", POST + b"Content-Length: 0x5\r\n\r\nhello", [400], 0),
    ("cl-empty", POST + b"Content-Length:\r\n\r\n", [400], 0),
    ("cl-too-many-digits", POST + b"Content-Length: 0000000000000000000005\r\n\r\nhello", [400], 0),
    ("te-gzip", POST + b"Transfer-Encoding: gzip\r\n\r\n", [400], 0),
    ("te-gzip-chunked", POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", [400], 0),
    ("te-chunked-chunked", POST + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", [400], 0),
    (
        "te-twice",
        POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        [400],
        0,
    ),
    ("te-xchunked", POST + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", [400], 0),
    # -- chunked bodies --
    ("chunk-size-invalid", CHUNKED + b"zz\r\nhello\r\n0\r\n\r\n", [400], 0),
    ("chunk-size-negative", CHUNKED + b"-5\r\nhello\r\n0\r\n\r\n", [400], 0),
    ("chunk-size-overflow", CHUNKED + b"10000000000000005\r\nhello\r\n0\r\n\r\n", [400], 0),
    ("chunk-size-overflow-20", CHUNKED + b"ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n", [400], 0),
    ("chunk-size-trailing-space", CHUNKED + b"5 \r\nhello\r\n0\r\n\r\n", [400], 0),
    ("chunk-size-empty", CHUNKED + b"\r\nhello\r\n0\r\n\r\n", [400], 0),
    ("chunk-bare-lf", CHUNKED + b"5\nhello\r\n0\r\n\r\n", [400], 0),
    ("chunk-data-no-crlf", CHUNKED + b"5\r\nhelloXX0\r\n\r\n", [400], 0),
    ("chunk-bad-trailer", CHUNKED + b"5\r\nhello\r\n0\r\nBad Trailer\r\n\r\n", [400], 0),
    ("chunk-too-large", CHUNKED + b"%x\r\n" % (MAX_BODY + 1), [413], 0),
    ("chunks-sum-too-large", CHUNKED + (b"200\r\n" + b"x" * 0x200 + b"\r\n") * 3, [413], 0),
    ("cl-over-max-body", POST + b"Content-Length: %d\r\n\r\n" % (MAX_BODY + 1), [413], 0),
    # -- line endings and folding --
    ("obs-fold-space", GET + b"X-A: b\r\n c\r\n\r\n", [400], 0),
    ("obs-fold-tab", GET + b"X-A: b\r\n\tc\r\n\r\n", [400], 0),
    ("obs-fold-first-line", b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", [400], 0),
    ("bare-lf-request-line", b"GET / HTTP/1.1\nHost: a\r\n\r\n", [400], 0),
    ("bare-lf-everywhere", b"GET / HTTP/1.1\nHost: a\n\n", [400], 0),
    ("bare-lf-header", GET + b"X-A: b\nX-B: c\r\n\r\n", [400], 0),
    ("bare-lf-end", GET + b"\n", [400], 0),
    ("bare-cr-header", GET + b"X-A: b\rX-B: c\r\n\r\n", [400], 0),
    # -- request-line --
    ("http-2.0", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", [505], 0),
    ("http-1.2", b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", [505], 0),
    ("http-0.9-version", b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", [505], 0),
    ("http-0.9-style", b"GET /\r\n\r\n", [400], 0),
    ("lowercase-http", b"GET / http/1.1\r\nHost: a\r\n\r\n", [400], 0),
    ("version-no-minor", b"GET / HTTP/1\r\nHost: a\r\n\r\n", [400], 0),
    ("double-space", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", [400], 0),
    ("tab-separators", b"GET\t/\tHTTP/1.1\r\nHost: a\r\n\r\n", [400], 0),
    ("leading-space", b" GET / HTTP/1.1\r\nHost: a\r\n\r\n", [400], 0),
    ("invalid-method", b"G(ET / HTTP/1.1\r\nHost: a\r\n\r\n", [400], 0),
    ("target-not-origin-form", b"GET foo HTTP/1.1\r\nHost: a\r\n\r\n", [400], 0),
    ("target-ftp-uri", b"GET ftp://a/x HTTP/1.1\r\nHost: a\r\n\r\n", [400], 0),
    ("target-userinfo", b"GET http://u:p@a/x HTTP/1.1\r\nHost: a\r\n\r\n", [400], 0),
    ("target-bad-port", b"GET http://a:x/ HTTP/1.1\r\nHost: a\r\n\r\n", [400], 0),
    ("target-fragment", b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", [400], 0),
    ("target-non-ascii", b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n", [400], 0),
    ("target-nul", b"GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n", [400], 0),
    ("request-line-too-long", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", [414], 0),
    # -- header fields --
    ("missing-host", b"GET / HTTP/1.1\r\n\r\n", [400], 0),
    ("two-hosts", GET + b"Host: b\r\n\r\n", [400], 0),
    ("host-with-space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", [400], 0),
    ("host-port-not-digits", b"GET / HTTP/1.1\r\nHost: a:abc\r\n\r\n", [400], 0),
    ("host-two-ports", b"GET / HTTP/1.1\r\nHost: a:1:2\r\n\r\n", [400], 0),
    ("host-open-bracket", b"GET / HTTP/1.1\r\nHost: [\r\n\r\n", [400], 0),
    ("host-userinfo", b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", [400], 0),
    ("header-without-colon", GET + b"X-A b\r\n\r\n", [400], 0),
    ("space-before-colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", [400], 0),
    ("empty-header-name", GET + b": b\r\n\r\n", [400], 0),
    ("nul-in-value", GET + b"X-A: b\x00c\r\n\r\n", [400], 0),
    ("nul-in-name", GET + b"X\x00A: b\r\n\r\n", [400], 0),
    ("control-char-in-value", GET + b"X-A: b\x01c\r\n\r\n", [400], 0),
    ("del-in-value", GET + b"X-A: b\x7fc\r\n\r\n", [400], 0),
    ("header-1mb", GET + b"X-Big: " + b"a" * 2**20 + b"\r\n\r\n", [431], 0),
    ("headers-200", GET + b"".join(b"X-%d: v\r\n" % i for i in range(200)) + b"\r\n", [431], 0),
    (
        "header-block-over-limit",
        GET + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 1000) for i in range(40)) + b"\r\n",
        [431],
        0,
    ),
    # -- connection-level --
    ("pipelined-garbage", GET + b"\r\n" + b"GARBAGE\r\n\r\n", [200, 400], 1),
    ("pipelined-bare-lf", GET + b"\r\n" + b"GET / HTTP/1.1\nHost: a\n\n", [200, 400], 1),
    ("body-cut-short", POST + b"Content-Length: 10\r\n\r\nabc", [], 0),
    ("head-cut-short", b"GET / HTTP/1.1\r\nHost: a\r\n", [], 0),
    ("binary-garbage", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40, [400], 0),
]


class Recorder:
    """A handler that records the requests it saw."""

    def __init__(self) -> None:
        self.seen: list[Request] = []

    async def __call__(self, req: Request) -> Response:
        self.seen.append(req)
        return Response(200, [("content-type", "text/plain")], b"ok")


async def exchange(port: int, raw: bytes) -> bytes:
    """Send ``raw`` (then EOF) while reading everything the server sends until it closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    received = bytearray()
    async with stream:

        async def send() -> None:
            try:
                await stream.send_all(raw)
                await stream.send_eof()
            except trio.BrokenResourceError:
                pass  # the server may close before reading everything

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            try:
                while data := await stream.receive_some(65536):
                    received += data
            except trio.BrokenResourceError:
                pass
    return bytes(received)


async def serve_and_send(nursery: trio.Nursery, raw: bytes) -> tuple[bytes, Recorder, HttpServer]:
    """A server with a fresh :class:`Recorder` on a loopback port, sent ``raw``: what it
    answered, the handler and the server."""
    handler = Recorder()
    server = HttpServer(handler, limits=LIMITS)
    port = await nursery.start(server.serve_tcp)
    with trio.fail_after(10):
        return await exchange(port, raw), handler, server


def statuses(response: bytes) -> list[int]:
    return [int(m.group(1)) for m in _STATUS_RE.finditer(response)]


@pytest.mark.parametrize(("raw", "expected", "calls"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_hostile_request(nursery: trio.Nursery, raw: bytes, expected: list[int], calls: int) -> None:
    handler = Recorder()
    server = HttpServer(handler, limits=LIMITS)
    port = await nursery.start(server.serve_tcp)
    with trio.fail_after(10):
        answer = await exchange(port, raw)
    assert statuses(answer) == expected, answer[:300]
    assert len(handler.seen) == calls
    if expected and expected[-1] != 200:
        assert b"connection: close" in answer.lower()

    # The listener survives and still serves.
    with trio.fail_after(10):
        answer = await exchange(port, b"GET /ok HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert statuses(answer) == [200]
    assert answer.endswith(b"\r\n\r\nok")
    assert [r.target for r in handler.seen][-1] == "/ok"


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 30
    assert len({c[0] for c in CASES}) == len(CASES)


async def test_accepted_edge_cases_reach_the_handler(nursery: trio.Nursery) -> None:
    """What the pre-parser must still accept: chunk extensions, trailers, leading CRLF,
    absolute-form targets, obs-text in values, HTTP/1.0 without Host, OPTIONS *."""
    raw = (
        b"\r\n"
        + CHUNKED.replace(b"\r\n\r\n", b"\r\nX-Obs: caf\xe9\r\n\r\n")
        + b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
        + b"GET http://a/abs?q=1 HTTP/1.1\r\nHost: other\r\n\r\n"
        + b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"
        + b"GET /ten HTTP/1.0\r\n\r\n"
    )
    answer, handler, server = await serve_and_send(nursery, raw)
    assert statuses(answer) == [200, 200, 200, 200]
    bodies = [r.body for r in handler.seen]
    assert bodies == [b"hello world", b"", b"", b""]
    assert handler.seen[0].header("x-obs") == "caf\xe9"
    assert [r.target for r in handler.seen[1:]] == ["http://a/abs?q=1", "*", "/ten"]
    assert handler.seen[1].host == "a"  # absolute-form authority wins over Host
    assert handler.seen[3].http_version == "1.0"
    assert server.statistics().requests == 4


async def test_urls_inside_an_origin_form_target_leave_host_alone(nursery: trio.Nursery) -> None:
    """A target that starts with "/" is origin-form, whatever its path or query holds:
    "://" in it must not be read as an absolute-form authority (which would route the
    request to another site)."""
    raw = (
        b"GET /login?next=https://evil.test/x HTTP/1.1\r\nHost: app.test\r\n\r\n"
        + b"GET /go/http://evil.test/y HTTP/1.1\r\nHost: app.test:8080\r\n\r\n"
        + b"GET HTTPS://Good.Test:443?q=http://evil.test HTTP/1.1\r\nHost: app.test\r\n\r\n"
        + b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"
    )
    answer, handler, _ = await serve_and_send(nursery, raw)
    assert statuses(answer) == [200, 200, 200, 200]
    seen = handler.seen
    assert [(r.host, r.path, r.query) for r in seen] == [
        ("app.test", "/login", "next=https://evil.test/x"),
        ("app.test", "/go/http://evil.test/y", ""),
        ("good.test", "/", "q=http://evil.test"),
        ("[::1]", "/", ""),
    ]
    assert seen[2].header("host") == "Good.Test:443"
