"""Timeouts, connection limits, shutdown and response shaping of the server shell.

Timing tests run on Trio's mock clock over ``memory_stream_pair()`` ("Trio virtual"
mode), so they take no real time. The shutdown tests use real loopback sockets, since
they exercise ``serve_tcp``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import h11
import pytest
import trio
import trio.testing

from edgesim._server import HttpServer, Limits, bare_app
from edgesim.http import Request, Response, get_header

Handler = Callable[[Request], Awaitable[Response]]


class Client:
    """An h11 client on one stream, for well-formed requests."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    async def send(
        self,
        method: str = "GET",
        target: str = "/",
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        hdrs = [("host", "example.com"), *(headers or [])]
        if body:
            hdrs.append(("content-length", str(len(body))))
        data = self.conn.send(h11.Request(method=method, target=target, headers=hdrs))
        if body:
            data += self.conn.send(h11.Data(data=body))
        data += self.conn.send(h11.EndOfMessage())
        await self.stream.send_all(data)

    async def receive(self) -> tuple[h11.Response, bytes, list[h11.InformationalResponse]]:
        response: h11.Response | None = None
        informational: list[h11.InformationalResponse] = []
        body = b""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(bytes(await self.stream.receive_some(65536)))
            elif isinstance(event, h11.InformationalResponse):
                informational.append(event)
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert response is not None
                if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
                    self.conn.start_next_cycle()
                return response, body, informational
            else:
                raise AssertionError(f"unexpected {event!r}")

    async def request(
        self,
        method: str = "GET",
        target: str = "/",
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> tuple[h11.Response, bytes]:
        await self.send(method, target, headers, body)
        response, body, _ = await self.receive()
        return response, body


def header(response: h11.Response, name: bytes) -> bytes | None:
    for k, v in response.headers:
        if k == name:
            return v
    return None


async def read_until_eof(stream: trio.abc.ReceiveStream) -> bytes:
    out = b""
    while data := await stream.receive_some(65536):
        out += data
    return out


def connect(nursery: trio.Nursery, server: HttpServer) -> trio.abc.Stream:
    """An in-memory connection served by ``server``; returns the client's end."""
    client, server_end = trio.testing.memory_stream_pair()
    nursery.start_soon(server.serve_stream, server_end)
    return client


class Recorder:
    def __init__(self, body: bytes = b"ok") -> None:
        self.seen: list[Request] = []
        self.body = body

    async def __call__(self, req: Request) -> Response:
        self.seen.append(req)
        return Response(200, [("content-type", "text/plain")], self.body)


# -- timeouts (virtual time) ----------------------------------------------------------


async def test_slowloris_header_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    handler = Recorder()
    server = HttpServer(handler, limits=Limits(header_timeout=10.0))
    client = connect(nursery, server)
    start = trio.current_time()

    async def drip() -> None:
        # One header line every 3 s: each read is quick, the head never completes.
        try:
            await client.send_all(b"GET / HTTP/1.1\r\nHost: a\r\n")
            for i in range(100):
                await trio.sleep(3)
                await client.send_all(b"X-%d: v\r\n" % i)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    nursery.start_soon(drip)
    answer = await read_until_eof(client)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert trio.current_time() - start == pytest.approx(10.0)
    assert handler.seen == []
    assert server.statistics().timeouts == 1


async def test_silent_connection_closed_after_header_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = HttpServer(Recorder(), limits=Limits(header_timeout=5.0))
    client = connect(nursery, server)
    start = trio.current_time()
    assert await read_until_eof(client) == b""  # no 408 for a client that said nothing
    assert trio.current_time() - start == pytest.approx(5.0)


async def test_header_timeout_counts_from_first_byte_on_keepalive(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = HttpServer(Recorder(), limits=Limits(header_timeout=5.0, idle_timeout=60.0))
    client = Client(connect(nursery, server))
    await client.request()
    await trio.sleep(30)  # idle, under idle_timeout
    t = trio.current_time()
    await client.stream.send_all(b"GET / HTTP/1.1\r\n")
    answer = await read_until_eof(client.stream)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert trio.current_time() - t == pytest.approx(5.0)


async def test_idle_keepalive_timeout(nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    server = HttpServer(Recorder(), limits=Limits(idle_timeout=60.0))
    client = Client(connect(nursery, server))
    await client.request()
    await trio.sleep(59)
    response, _ = await client.request()  # still open just before the timeout
    assert response.status_code == 200
    t = trio.current_time()
    assert await read_until_eof(client.stream) == b""
    assert trio.current_time() - t == pytest.approx(60.0)
    stats = server.statistics()
    assert stats.connections_open == 0
    assert stats.timeouts == 0  # a quiet idle close is not a timeout


async def test_stray_crlf_between_requests_leaves_the_connection_idle(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    # RFC 9112 §2.2: empty lines before a request are ignored. They used to start the
    # header timeout (5 s here, not the idle 60 s), and a server being shut down waited
    # for it instead of closing the idle connection at once.
    server = HttpServer(Recorder(), limits=Limits(header_timeout=5.0, idle_timeout=60.0))
    client = Client(connect(nursery, server))
    await client.request()
    await client.stream.send_all(b"\r\n")
    await trio.sleep(1)
    await client.stream.send_all(b"\r")  # half of another, split across reads
    await trio.sleep(1)
    await client.stream.send_all(b"\n")
    await trio.sleep(30)
    response, _ = await client.request()  # still open: idle, not a stalled head
    assert response.status_code == 200
    await client.stream.send_all(b"\r\n")
    t = trio.current_time()
    server.begin_shutdown()
    assert await read_until_eof(client.stream) == b""
    assert trio.current_time() == t  # closed at once, as an idle connection
    assert server.statistics().timeouts == 0


async def test_body_timeout(nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    handler = Recorder()
    server = HttpServer(handler, limits=Limits(body_timeout=7.0))
    client = connect(nursery, server)
    t = trio.current_time()
    await client.send_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    answer = await read_until_eof(client)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert trio.current_time() - t == pytest.approx(7.0)
    assert handler.seen == []


# -- connection limits ------------------------------------------------------------------


async def test_max_connections_sheds_with_503(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = HttpServer(Recorder(), limits=Limits(max_connections=2, header_timeout=1000))
    first = Client(connect(nursery, server))
    second = Client(connect(nursery, server))
    await first.request()
    await second.request()
    assert server.statistics().connections_open == 2

    third = connect(nursery, server)
    await third.send_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    answer = await read_until_eof(third)
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert b"retry-after: 1\r\n" in answer
    assert server.statistics().rejected_503 == 1

    # A slot frees up when a connection closes.
    await first.stream.aclose()
    await trio.testing.wait_all_tasks_blocked()
    assert server.statistics().connections_open == 1
    fourth = Client(connect(nursery, server))
    response, _ = await fourth.request()
    assert response.status_code == 200
    response, _ = await second.request()
    assert response.status_code == 200


# -- keep-alive, HEAD, response shaping -----------------------------------------------


async def test_keepalive_reuses_one_connection(nursery: trio.Nursery) -> None:
    handler = Recorder()
    server = HttpServer(handler)
    client = Client(connect(nursery, server))
    for i in range(5):
        response, body = await client.request("POST", f"/n/{i}", body=b"x" * i)
        assert response.status_code == 200
        assert body == b"ok"
    assert [r.target for r in handler.seen] == [f"/n/{i}" for i in range(5)]
    assert [r.body for r in handler.seen] == [b"x" * i for i in range(5)]
    stats = server.statistics()
    assert (stats.connections_total, stats.requests) == (1, 5)


async def test_pipelined_requests_answered_in_order(nursery: trio.Nursery) -> None:
    handler = Recorder()
    server = HttpServer(handler)
    client = connect(nursery, server)
    await client.send_all(
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    answer = await read_until_eof(client)
    assert answer.count(b"HTTP/1.1 200 OK") == 3
    assert [(r.target, r.body) for r in handler.seen] == [("/1", b""), ("/2", b"abc"), ("/3", b"")]


async def test_head_has_no_body_and_keeps_length(nursery: trio.Nursery) -> None:
    async def handler(req: Request) -> Response:
        if req.path == "/meta":
            return Response(200, [], None, size=1234)  # metadata only
        if req.path == "/unknown":
            return Response(200, [], b"")  # a relayed HEAD answer that had no length
        return Response(200, [("content-type", "text/plain")], b"hello")

    server = HttpServer(handler)
    client = Client(connect(nursery, server))
    response, body = await client.request("HEAD", "/")
    assert (header(response, b"content-length"), body) == (b"5", b"")
    response, body = await client.request("HEAD", "/meta")
    assert (header(response, b"content-length"), body) == (b"1234", b"")
    response, body = await client.request("GET", "/meta")
    assert (header(response, b"content-length"), body) == (b"0", b"")  # None is sent as empty
    response, body = await client.request("HEAD", "/unknown")
    assert (header(response, b"content-length"), body) == (None, b"")  # not a claimed 0
    response, body = await client.request("GET", "/unknown")
    assert (header(response, b"content-length"), body) == (b"0", b"")
    response, body = await client.request("GET", "/")  # framing still intact
    assert body == b"hello"


async def test_response_headers_fixed_up(nursery: trio.Nursery) -> None:
    async def handler(req: Request) -> Response:
        if req.path == "/204":
            return Response(204, [("content-length", "10")], b"")
        if req.path == "/dated":
            return Response(200, [("date", "Mon, 01 Jan 2024 00:00:00 GMT"), ("server", "origin")], b"x")
        return Response(
            200, [("content-length", "999"), ("transfer-encoding", "chunked"), ("keep-alive", "5")], b"abc"
        )

    server = HttpServer(handler, server_name="test-server")
    client = Client(connect(nursery, server))
    response, body = await client.request("GET", "/")
    assert body == b"abc"
    assert header(response, b"content-length") == b"3"
    assert header(response, b"transfer-encoding") is None
    assert header(response, b"keep-alive") is None
    assert header(response, b"server") == b"test-server"
    assert header(response, b"date") is not None
    response, body = await client.request("GET", "/204")
    assert (response.status_code, header(response, b"content-length"), body) == (204, None, b"")
    response, _ = await client.request("GET", "/dated")
    assert header(response, b"date") == b"Mon, 01 Jan 2024 00:00:00 GMT"
    assert header(response, b"server") == b"origin"


async def test_connection_close_honoured(nursery: trio.Nursery) -> None:
    async def handler(req: Request) -> Response:
        if req.path == "/bye":
            return Response(200, [("connection", "close")], b"bye")
        return Response(200, [], b"ok")

    server = HttpServer(handler)
    client = Client(connect(nursery, server))
    response, _ = await client.request("GET", "/", headers=[("connection", "close")])
    assert header(response, b"connection") == b"close"
    assert await read_until_eof(client.stream) == b""

    client = Client(connect(nursery, server))
    response, body = await client.request("GET", "/bye")
    assert (header(response, b"connection"), body) == (b"close", b"bye")
    assert await read_until_eof(client.stream) == b""


async def test_expect_100_continue(nursery: trio.Nursery) -> None:
    handler = Recorder()
    server = HttpServer(handler)
    client = Client(connect(nursery, server))
    data = client.conn.send(
        h11.Request(
            method="PUT",
            target="/up",
            headers=[("host", "a"), ("content-length", "3"), ("expect", "100-continue")],
        )
    )
    await client.stream.send_all(data)
    event = None
    while not isinstance(event, h11.InformationalResponse):
        event = client.conn.next_event()
        if event is h11.NEED_DATA:
            client.conn.receive_data(bytes(await client.stream.receive_some(65536)))
    assert event.status_code == 100
    await client.stream.send_all(
        client.conn.send(h11.Data(data=b"abc")) + client.conn.send(h11.EndOfMessage())
    )
    response, _, _ = await client.receive()
    assert response.status_code == 200
    assert handler.seen[0].body == b"abc"


async def test_http10_request_gets_answer_and_close(nursery: trio.Nursery) -> None:
    handler = Recorder()
    server = HttpServer(handler)
    client = connect(nursery, server)
    await client.send_all(b"GET /old HTTP/1.0\r\n\r\n")
    answer = await read_until_eof(client)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"\r\n\r\nok")
    assert handler.seen[0].http_version == "1.0"


# -- isolation -------------------------------------------------------------------------


async def test_handler_exception_is_500_and_isolated(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(req: Request) -> Response:
        if req.path == "/boom":
            raise RuntimeError("boom")
        if req.path == "/bad-header":
            return Response(200, [("x-a", "b\r\nx-injected: 1")], b"")
        if req.path == "/bad-status":
            return Response(600, [], b"beyond 599")  # RFC 9110 §15: invalid
        return Response(200, [], b"fine")

    server = HttpServer(handler)
    bystander = Client(connect(nursery, server))
    assert (await bystander.request())[1] == b"fine"

    with caplog.at_level(logging.ERROR, logger="edgesim.server"):
        victim = connect(nursery, server)
        await victim.send_all(b"GET /boom HTTP/1.1\r\nHost: a\r\n\r\n")
        answer = await read_until_eof(victim)
    assert answer.startswith(b"HTTP/1.1 500 ")
    assert any("handler failed" in r.getMessage() and r.exc_info for r in caplog.records)

    victim = connect(nursery, server)
    await victim.send_all(b"GET /bad-header HTTP/1.1\r\nHost: a\r\n\r\n")
    answer = await read_until_eof(victim)
    assert answer.startswith(b"HTTP/1.1 500 ")
    assert b"x-injected" not in answer

    victim = connect(nursery, server)
    await victim.send_all(b"GET /bad-status HTTP/1.1\r\nHost: a\r\n\r\n")
    answer = await read_until_eof(victim)
    assert answer.startswith(b"HTTP/1.1 500 ") and b"beyond 599" not in answer

    # The other connection and new ones are unaffected.
    assert (await bystander.request())[1] == b"fine"
    assert (await Client(connect(nursery, server)).request())[1] == b"fine"
    assert server.statistics().errors_500 == 3


async def test_head_500_has_no_body(nursery: trio.Nursery) -> None:
    async def handler(req: Request) -> Response:
        raise ValueError("nope")

    server = HttpServer(handler)
    client = Client(connect(nursery, server))
    response, body = await client.request("HEAD", "/")
    assert (response.status_code, body) == (500, b"")


# -- graceful shutdown (real sockets) ---------------------------------------------------


async def _serve_tcp(nursery: trio.Nursery, server: HttpServer) -> tuple[int, trio.Event]:
    """Start ``server.serve_tcp`` in ``nursery``: its port, and an event set when it
    returns."""
    finished = trio.Event()

    async def run(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        await server.serve_tcp(task_status=task_status)
        finished.set()

    return await nursery.start(run), finished


async def test_graceful_shutdown_drains_in_flight(nursery: trio.Nursery) -> None:
    entered = trio.Event()
    release = trio.Event()

    async def handler(req: Request) -> Response:
        if req.path == "/slow":
            entered.set()
            await release.wait()
            return Response(200, [], b"slow done")
        return Response(200, [], b"quick")

    server = HttpServer(handler)
    port, finished = await _serve_tcp(nursery, server)
    idle = Client(await trio.open_tcp_stream("127.0.0.1", port))
    assert (await idle.request())[1] == b"quick"
    busy = Client(await trio.open_tcp_stream("127.0.0.1", port))
    await busy.send("GET", "/slow")
    await entered.wait()

    server.begin_shutdown()
    assert await read_until_eof(idle.stream) == b""  # the idle connection is closed
    with pytest.raises(OSError, match="connect"):
        await trio.open_tcp_stream("127.0.0.1", port)  # no longer accepting
    assert not finished.is_set()

    release.set()
    response, body, _ = await busy.receive()
    assert body == b"slow done"
    assert header(response, b"connection") == b"close"
    assert await read_until_eof(busy.stream) == b""
    await busy.stream.aclose()
    await idle.stream.aclose()
    with trio.fail_after(5):
        await finished.wait()
    assert server.statistics().connections_open == 0


async def test_shutdown_drain_timeout_cancels_stuck_handlers(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    entered = trio.Event()

    async def handler(req: Request) -> Response:
        entered.set()
        await trio.sleep_forever()
        raise AssertionError

    server = HttpServer(handler)
    port, finished = await _serve_tcp(nursery, server)
    stuck = Client(await trio.open_tcp_stream("127.0.0.1", port))
    await stuck.send()
    await entered.wait()
    server.begin_shutdown(drain_timeout=5.0)
    mock_clock.jump(4.0)
    await trio.testing.wait_all_tasks_blocked()
    assert not finished.is_set()
    mock_clock.jump(2.0)
    await finished.wait()
    assert await read_until_eof(stuck.stream) == b""  # closed without an answer


async def test_shutdown_gives_a_request_still_arriving_a_short_grace(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    bodies: list[bytes] = []

    async def handler(req: Request) -> Response:
        bodies.append(req.body)
        return Response(200, [], b"done")

    server = HttpServer(handler)
    port, finished = await _serve_tcp(nursery, server)
    stalled_head = await trio.open_tcp_stream("127.0.0.1", port)
    await stalled_head.send_all(b"GET / HTTP/1.1\r\nHost: a\r\n")
    stalled_body = await trio.open_tcp_stream("127.0.0.1", port)
    await stalled_body.send_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n12345")
    late = await trio.open_tcp_stream("127.0.0.1", port)
    await late.send_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab")
    await trio.testing.wait_all_tasks_blocked()
    server.begin_shutdown(drain_timeout=30.0, read_grace=1.0)
    mock_clock.jump(0.5)
    await late.send_all(b"cd")  # arrives within the grace: answered, then closed
    answer = await read_until_eof(late)
    assert answer.startswith(b"HTTP/1.1 200 ") and b"\r\nconnection: close\r\n" in answer
    await trio.testing.wait_all_tasks_blocked()
    assert not finished.is_set()
    mock_clock.jump(0.6)  # the grace is over; the header and body timeouts are far
    assert await read_until_eof(stalled_head) == b""  # closed unanswered
    assert await read_until_eof(stalled_body) == b""
    with trio.fail_after(5):
        await finished.wait()
    assert bodies == [b"abcd"]
    assert server.statistics().timeouts == 0
    for stream in (stalled_head, stalled_body, late):
        await stream.aclose()


async def test_serve_stream_after_shutdown_is_503(nursery: trio.Nursery) -> None:
    server = HttpServer(bare_app(b"x"))
    server.begin_shutdown()
    client = connect(nursery, server)
    assert (await read_until_eof(client)).startswith(b"HTTP/1.1 503 ")


async def test_bare_app(nursery: trio.Nursery) -> None:
    server = HttpServer(bare_app(b"payload"))
    client = Client(connect(nursery, server))
    response, body = await client.request()
    assert (response.status_code, body) == (200, b"payload")
    assert get_header([(k.decode(), v.decode()) for k, v in response.headers], "content-length") == "7"


# -- interim (1xx) responses ------------------------------------------------------------


async def test_handler_sends_interim_responses(nursery: trio.Nursery) -> None:
    from edgesim._server import interim_sender

    late: list[object] = []

    async def handler(req: Request) -> Response:
        send = interim_sender()
        assert send is not None
        sent = await send(103, [("link", "</s.css>; rel=preload")])
        late.append(send)
        return Response(200, [], b"final" if sent else b"no-hints")

    server = HttpServer(handler)
    client = Client(connect(nursery, server))
    await client.send()
    response, body, informational = await client.receive()
    assert [(i.status_code, list(i.headers)) for i in informational] == [
        (103, [(b"link", b"</s.css>; rel=preload")])
    ]
    assert (response.status_code, body) == (200, b"final")
    # A sender outlives its request only as a no-op.
    stale = late[0]
    assert callable(stale)
    assert await stale(103, []) is False
    assert interim_sender() is None  # not inside a handler

    # HTTP/1.0 clients never get 1xx (RFC 9110 §15.2).
    raw = connect(nursery, server)
    await raw.send_all(b"GET / HTTP/1.0\r\n\r\n")
    answer = await read_until_eof(raw)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"no-hints")


async def test_interim_sender_rejects_non_interim_status(nursery: trio.Nursery) -> None:
    from edgesim._server import interim_sender

    async def handler(req: Request) -> Response:
        send = interim_sender()
        assert send is not None
        for bad in (100, 101, 200):
            with pytest.raises(ValueError, match="interim status"):
                await send(bad, [])
        with pytest.raises(ValueError, match="invalid interim header"):
            await send(103, [("link", "a\r\nx-injected: 1")])
        return Response(200, [], b"ok")

    server = HttpServer(handler)
    client = Client(connect(nursery, server))
    response, body = await client.request()
    assert (response.status_code, body) == (200, b"ok")
