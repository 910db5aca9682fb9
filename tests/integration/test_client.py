"""The origin connection pool against real loopback servers (and in-memory streams for
the write-failure path)."""

from __future__ import annotations

import re
import socket
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from edgesim._client import (
    OriginConnectError,
    OriginPool,
    OriginProtocolError,
    OriginTimeout,
)
from edgesim._server import HttpServer, Limits
from edgesim.http import Request, Response


class Echo:
    """Answers with what it saw; counts invocations."""

    def __init__(self) -> None:
        self.seen: list[Request] = []

    async def __call__(self, req: Request) -> Response:
        self.seen.append(req)
        if req.method == "HEAD":
            return Response(200, [("content-length", "42")], b"")
        return Response(
            200, [("x-method", req.method), ("x-host", req.header("host") or "")], req.body or b"hi"
        )


async def start_server(
    nursery: trio.Nursery, handler: Callable[[Request], Awaitable[Response]], limits: Limits | None = None
) -> tuple[HttpServer, int]:
    server = HttpServer(handler, limits=limits or Limits())
    port = await nursery.start(server.serve_tcp)
    return server, port


RawHandler = Callable[[trio.SocketStream, int], Awaitable[bool]]


async def start_raw_server(nursery: trio.Nursery, actions: list[bytes | None]) -> tuple[int, list[bytes]]:
    """A hand-written server: for the n-th request head it receives (across connections)
    it sends ``actions[n]``, or closes the connection when that is None; it also closes
    after the last action."""
    heads: list[bytes] = []

    async def serve(stream: trio.SocketStream) -> None:
        buf = b""
        async with stream:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                heads.append(head)
                action = actions[len(heads) - 1]
                if action is None:
                    return
                await stream.send_all(action)
                if len(heads) == len(actions):
                    return

    listeners = await nursery.start(trio.serve_tcp, serve, 0)
    return listeners[0].socket.getsockname()[1], heads


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


# -- reuse and pass-through --------------------------------------------------------------


async def test_reuses_connection_and_passes_request_through(nursery: trio.Nursery) -> None:
    handler = Echo()
    _, port = await start_server(nursery, handler)
    pool = OriginPool(f"http://127.0.0.1:{port}")
    for i in range(3):
        resp = await pool.request(
            Request("GET", f"/p/{i}?q=1", [("host", "site.example"), ("accept", "*/*")])
        )
        assert (resp.status, resp.body) == (200, b"hi")
        assert resp.header("x-host") == "site.example"  # Host passes through, not rewritten
    stats = pool.statistics()
    assert (stats.connects, stats.reuses, stats.requests, stats.idle) == (1, 2, 3, 1)
    assert [r.target for r in handler.seen] == ["/p/0?q=1", "/p/1?q=1", "/p/2?q=1"]

    # Unknown methods and bodies pass; hop-by-hop headers don't.
    resp = await pool.request(
        Request(
            "PURGE",
            "/x",
            [
                ("host", "site.example"),
                ("connection", "x-secret"),
                ("x-secret", "1"),
                ("te", "trailers"),
                ("keep-alive", "5"),
                ("x-keep", "yes"),
            ],
            b"payload",
        )
    )
    assert (resp.header("x-method"), resp.body) == ("PURGE", b"payload")
    seen = handler.seen[-1]
    names = {k for k, _ in seen.headers}
    assert {"x-secret", "te", "keep-alive", "connection"}.isdisjoint(names)
    assert seen.header("x-keep") == "yes"
    assert seen.header("content-length") == "7"

    resp = await pool.request(Request("HEAD", "/h", [("host", "site.example")]))
    assert (resp.status, resp.header("content-length"), resp.body) == (200, "42", b"")
    assert pool.statistics().connects == 1
    await pool.aclose()


async def test_concurrent_requests_use_separate_connections(nursery: trio.Nursery) -> None:
    gate = trio.Event()
    entered = 0

    async def handler(req: Request) -> Response:
        nonlocal entered
        entered += 1
        if entered == 3:
            gate.set()
        await gate.wait()
        return Response(200, [], req.target.encode())

    _, port = await start_server(nursery, handler)
    pool = OriginPool(f"http://127.0.0.1:{port}", max_idle=2)
    results: dict[int, bytes | None] = {}

    async def one(i: int) -> None:
        results[i] = (await pool.request(Request("GET", f"/{i}", [("host", "a")]))).body

    async with trio.open_nursery() as inner:
        for i in range(3):
            inner.start_soon(one, i)
    assert results == {0: b"/0", 1: b"/1", 2: b"/2"}
    stats = pool.statistics()
    assert (stats.connects, stats.idle) == (3, 2)  # max_idle bounds the pool
    await pool.aclose()
    assert pool.statistics().idle == 0
    with pytest.raises(OriginConnectError):
        await pool.request(Request("GET", "/", [("host", "a")]))


# -- failures -------------------------------------------------------------------------------


async def test_connect_refused() -> None:
    with socket.socket() as s:  # a port that was free a moment ago and has no listener
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pool = OriginPool(f"http://127.0.0.1:{port}")
    with pytest.raises(OriginConnectError):
        await pool.request(Request("GET", "/", [("host", "a")]))
    assert pool.statistics().errors == 1


async def test_connect_timeout(autojump_clock: trio.testing.MockClock) -> None:
    async def never(host: str, port: int) -> trio.abc.Stream:
        await trio.sleep_forever()
        raise AssertionError

    pool = OriginPool("http://127.0.0.1:9", connect_timeout=2.0, open_stream=never)
    start = trio.current_time()
    with pytest.raises(OriginConnectError, match="timed out"):
        await pool.request(Request("GET", "/", [("host", "a")]))
    assert trio.current_time() - start == pytest.approx(2.0)


async def test_read_timeout_is_not_retried(nursery: trio.Nursery, mock_clock: trio.testing.MockClock) -> None:
    calls = 0
    entered = trio.Event()

    async def hang(req: Request) -> Response:
        nonlocal calls
        calls += 1
        entered.set()
        await trio.sleep_forever()
        raise AssertionError

    _, port = await start_server(nursery, hang)
    pool = OriginPool(f"http://127.0.0.1:{port}", read_timeout=3.0)
    outcome: list[BaseException] = []

    async def fetch() -> None:
        try:
            await pool.request(Request("POST", "/order", [("host", "a")], b"once"))
        except OriginTimeout as exc:
            outcome.append(exc)

    async with trio.open_nursery() as inner:
        inner.start_soon(fetch)
        await entered.wait()
        mock_clock.jump(2.9)
        await trio.testing.wait_all_tasks_blocked()
        assert not outcome
        mock_clock.jump(0.2)
    assert len(outcome) == 1
    assert calls == 1
    assert pool.statistics().idle == 0  # the timed-out connection is not pooled


async def test_never_resends_once_sent(nursery: trio.Nursery) -> None:
    # Request 2 reaches the origin on a reused connection, which then closes without
    # answering: the pool must report it, not send it again.
    port, heads = await start_raw_server(nursery, [OK, None, OK])
    pool = OriginPool(f"http://127.0.0.1:{port}")
    assert (await pool.request(Request("GET", "/1", [("host", "a")]))).body == b"ok"
    with pytest.raises(OriginProtocolError):
        await pool.request(Request("POST", "/2", [("host", "a")], b"charge-card"))
    assert len(heads) == 2
    assert (await pool.request(Request("GET", "/3", [("host", "a")]))).body == b"ok"
    assert [h.split(b" ")[1] for h in heads] == [b"/1", b"/2", b"/3"]
    stats = pool.statistics()
    assert (stats.connects, stats.reuses, stats.replaced_stale, stats.errors) == (2, 1, 0, 1)


@pytest.mark.parametrize(
    "answer",
    [
        b"HELLO WORLD\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",  # then closes: truncated
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        # RFC 9110 §15: 100..599 only; h11 refuses 000-099 but passes 600-999
        b"HTTP/1.1 999 Weird\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 600 Custom\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 099 Low\r\nContent-Length: 2\r\n\r\nok",
        # h11 refuses only NUL in a value; a control character the edge could never
        # send on (RFC 9110 §5.5) makes the response invalid too
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Bad: a\x01b\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Del: a\x7fb\r\n\r\nok",
    ],
    ids=[
        "garbage",
        "truncated",
        "conflicting-cl",
        "bad-chunk",
        "bad-status",
        "status-999",
        "status-600",
        "status-099",
        "ctl-in-value",
        "del-in-value",
    ],
)
async def test_protocol_error(nursery: trio.Nursery, answer: bytes) -> None:
    port, heads = await start_raw_server(nursery, [answer])
    pool = OriginPool(f"http://127.0.0.1:{port}")
    with pytest.raises(OriginProtocolError):
        await pool.request(Request("GET", "/", [("host", "a")]))
    assert len(heads) == 1
    assert pool.statistics().idle == 0


async def test_response_body_limit(nursery: trio.Nursery) -> None:
    _, port = await start_server(nursery, lambda req: _const(Response(200, [], b"x" * 5000)))
    pool = OriginPool(f"http://127.0.0.1:{port}", max_body=4096)
    with pytest.raises(OriginProtocolError, match="over 4096"):
        await pool.request(Request("GET", "/", [("host", "a")]))


async def _const(resp: Response) -> Response:
    return resp


# -- stale idle connections -------------------------------------------------------------------


async def test_stale_idle_socket_replaced_once(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    handler = Echo()
    server, port = await start_server(nursery, handler, Limits(idle_timeout=10.0))
    pool = OriginPool(f"http://127.0.0.1:{port}")
    await pool.request(Request("GET", "/1", [("host", "a")]))
    assert pool.statistics().idle == 1

    await trio.testing.wait_all_tasks_blocked()  # the server is now waiting, idle
    mock_clock.jump(11.0)  # the origin closes its idle keep-alive connection
    await trio.testing.wait_all_tasks_blocked()
    assert server.statistics().connections_open == 0

    resp = await pool.request(Request("POST", "/2", [("host", "a")], b"body"))
    assert resp.body == b"body"
    stats = pool.statistics()
    assert (stats.connects, stats.reuses, stats.replaced_stale, stats.errors) == (2, 0, 1, 0)
    assert [r.target for r in handler.seen] == ["/1", "/2"]


class MemoryOrigin:
    """``open_stream`` for the pool: each connection is an in-memory pair served by
    ``server``; ``dead_on_arrival`` connections have their server end closed already."""

    def __init__(self, nursery: trio.Nursery, server: HttpServer) -> None:
        self.nursery = nursery
        self.server = server
        self.opened = 0
        self.dead_on_arrival = False

    async def __call__(self, host: str, port: int) -> trio.abc.Stream:
        self.opened += 1
        client, server_end = trio.testing.memory_stream_pair()
        if self.dead_on_arrival:
            await server_end.aclose()
        else:
            self.nursery.start_soon(self.server.serve_stream, server_end)
        return client


async def test_failed_write_on_stale_connection_replaced_once(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    handler = Echo()
    server = HttpServer(handler, limits=Limits(idle_timeout=10.0))
    origin = MemoryOrigin(nursery, server)
    pool = OriginPool("http://origin.internal", open_stream=origin)
    await pool.request(Request("GET", "/1", [("host", "a")]))
    await trio.sleep(11)  # the server side closes the idle connection
    assert server.statistics().connections_open == 0

    resp = await pool.request(Request("GET", "/2", [("host", "a")]))
    assert resp.body == b"hi"
    stats = pool.statistics()
    assert (stats.connects, stats.reuses, stats.replaced_stale) == (2, 1, 1)
    assert [r.target for r in handler.seen] == ["/1", "/2"]

    # Only once: when the replacement is dead too, the pool gives up.
    await trio.sleep(11)
    origin.dead_on_arrival = True
    with pytest.raises(OriginConnectError):
        await pool.request(Request("GET", "/3", [("host", "a")]))
    assert origin.opened == 3
    assert [r.target for r in handler.seen] == ["/1", "/2"]


async def test_in_memory_origin_virtual_mode(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    handler = Echo()
    origin = MemoryOrigin(nursery, HttpServer(handler))
    pool = OriginPool("http://origin.internal:8080", open_stream=origin)
    resp = await pool.request(Request("GET", "/v", []))  # no Host: taken from base_url
    assert resp.header("x-host") == "origin.internal:8080"
    assert origin.opened == 1


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com", "(no path or query), got 'https://example.com'"),
        ("http://127.0.0.1:99999", "with a port from 1 to 65535, got 'http://127.0.0.1:99999'"),
        ("http://127.0.0.1:1/base", "(no path or query), got 'http://127.0.0.1:1/base'"),
        ("http://u:pw@127.0.0.1:1", "got a URL with a user name or password"),
    ],
)
def test_base_url_validated(url: str, expected: str) -> None:
    with pytest.raises(ValueError, match=re.escape(expected)):
        OriginPool(url)


# -- conformance fixes: over-long bodies, close-delimited bodies, interim responses ------


async def test_body_longer_than_content_length_is_not_pooled(nursery: trio.Nursery) -> None:
    """36 bytes after "Content-Length: 10": the extra bytes must not be read as the
    next response on a pooled connection ("illegal status line")."""
    overlong = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n" + b"0123456789" + b"y" * 26
    port, heads = await start_raw_server(nursery, [overlong, OK, OK])
    pool = OriginPool(f"http://127.0.0.1:{port}")
    first = await pool.request(Request("GET", "/1", [("host", "a")]))
    assert (first.status, first.body) == (200, b"0123456789")
    assert pool.statistics().idle == 0  # closed, not pooled
    second = await pool.request(Request("GET", "/2", [("host", "a")]))
    assert (second.status, second.body) == (200, b"ok")
    assert pool.statistics().reuses == 0
    assert len(heads) == 2


@pytest.mark.parametrize("coding", [b"foo", b"gzip", b"identity"])
async def test_non_chunked_transfer_encoding_reads_until_close(nursery: trio.Nursery, coding: bytes) -> None:
    """RFC 9112 §6.3: a Transfer-Encoding not ending in chunked means the body runs
    until the origin closes; Content-Length is ignored and the header is not passed on."""
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: " + coding + b"\r\nContent-Length: 3\r\n"
        b"Cache-Control: max-age=60\r\n\r\nclose-delimited body"
    )
    port, _ = await start_raw_server(nursery, [answer])  # closes after answering
    pool = OriginPool(f"http://127.0.0.1:{port}")
    with trio.fail_after(10):
        resp = await pool.request(Request("GET", "/", [("host", "a")]))
    assert (resp.status, resp.body) == (200, b"close-delimited body")
    assert resp.header("transfer-encoding") is None
    assert resp.header("content-length") == "20"  # the body's, not the ignored 3
    assert resp.header("cache-control") == "max-age=60"
    assert pool.statistics().idle == 0


@pytest.mark.parametrize(
    ("answer", "length"),
    [
        (b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", "5"),
        (b"Content-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "3"),
        (b"\r\nclose-delimited", "15"),  # neither: read until the origin closes
        (b"Content-Length: 2\r\n\r\nok", "2"),
    ],
    ids=["chunked", "chunked-overrides-length", "close-delimited", "length"],
)
async def test_response_carries_the_length_of_its_body(
    nursery: trio.Nursery, answer: bytes, length: str
) -> None:
    # The body comes back whole and de-chunked; a response without a Content-Length
    # (or with one that Transfer-Encoding overrides) was cached so, and a HEAD served
    # from that entry said Content-Length: 0.
    port, _ = await start_raw_server(nursery, [b"HTTP/1.1 200 OK\r\n" + answer])
    pool = OriginPool(f"http://127.0.0.1:{port}")
    with trio.fail_after(10):
        resp = await pool.request(Request("GET", "/", [("host", "a")]))
    assert [v for k, v in resp.headers if k == "content-length"] == [length]
    assert len(resp.body or b"") == int(length)


async def test_head_response_keeps_what_the_origin_said(nursery: trio.Nursery) -> None:
    answers = [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
    ]
    port, _ = await start_raw_server(nursery, answers)
    pool = OriginPool(f"http://127.0.0.1:{port}")
    with trio.fail_after(10):
        chunked = await pool.request(Request("HEAD", "/", [("host", "a")]))
        sized = await pool.request(Request("HEAD", "/", [("host", "a")]))
    assert (chunked.body, chunked.header("content-length"), chunked.header("transfer-encoding")) == (
        b"",
        None,
        None,
    )
    assert (sized.body, sized.header("content-length")) == (b"", "1234")


async def test_close_delimited_body_limit(nursery: trio.Nursery) -> None:
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: foo\r\n\r\n" + b"x" * 5000
    port, _ = await start_raw_server(nursery, [answer])
    pool = OriginPool(f"http://127.0.0.1:{port}", max_body=4096)
    with pytest.raises(OriginProtocolError, match="over 4096"):
        await pool.request(Request("GET", "/", [("host", "a")]))


async def test_interim_responses_go_to_callback_not_response(nursery: trio.Nursery) -> None:
    answer = (
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 102 Processing\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: <\x01>\r\n\r\n"  # invalid: dropped, not relayed
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nLink: </final>\r\n\r\nok"
    )
    port, _ = await start_raw_server(nursery, [answer, OK])
    pool = OriginPool(f"http://127.0.0.1:{port}")
    seen: list[tuple[int, list[tuple[str, str]]]] = []

    async def on_interim(status: int, headers: list[tuple[str, str]]) -> None:
        seen.append((status, headers))

    resp = await pool.request(Request("GET", "/", [("host", "a")]), on_interim=on_interim)
    assert seen == [(103, [("link", "</s.css>; rel=preload")]), (102, [])]
    assert (resp.status, resp.body, resp.headers) == (
        200,
        b"ok",
        [("content-length", "2"), ("link", "</final>")],
    )
    # Without a callback they are skipped, and the connection stays reusable.
    resp = await pool.request(Request("GET", "/", [("host", "a")]))
    assert (resp.status, resp.body) == (200, b"ok")
    assert pool.statistics().reuses == 1
