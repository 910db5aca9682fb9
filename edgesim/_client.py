"""A pooled HTTP/1.1 client for edge-to-origin fetches (Trio + h11).

Theory of operation
-------------------
Each :class:`OriginPool` talks to one origin address. A request takes an idle
connection (newest first: LIFO keeps few connections warm and lets the old ones hit the
origin's idle timeout), or opens one; sends the request as one write; reads the whole
response under a deadline; and puts the connection back when both sides of h11 are
``DONE``. Anything else closes the connection.

The one rule that shapes the code: **a request is never sent twice once any byte of it
may have reached the origin** (RFC 9110 §9.2.2 allows retrying idempotent requests, but
the edge can't know what the origin did with a half-received one, and the simulator
must count origin load exactly). A pooled connection found dead *before* sending is
replaced once with a fresh connection:

* before sending, an idle socket that is readable has either EOF (the origin closed it)
  or stray bytes; both make it unusable, and since LIFO hands out the newest idle
  connection, the older ones are dropped too;
* if the first write on a reused connection fails and the request fits in
  :data:`_ATOMIC_WRITE` bytes, nothing went out (see there).

After that, every failure raises: :class:`OriginTimeout` (sent, no complete answer in
time: 504), :class:`OriginProtocolError` (bad bytes, or the connection broke after
sending: 502), :class:`OriginConnectError` (nothing was sent).
"""

from __future__ import annotations

import logging
import re
import select
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import h11
import trio

from edgesim._server import BAD_FIELD_VALUE_BYTES
from edgesim.http import Request, Response, replace, strip_hop_by_hop

__all__ = [
    "InterimCallback",
    "OriginConnectError",
    "OriginError",
    "OriginPool",
    "OriginProtocolError",
    "OriginTimeout",
    "PoolStats",
]

log = logging.getLogger("edgesim.client")

_RECEIVE_SIZE = 65536

# A write this small to an idle socket is taken by the kernel in one send() or refused
# whole: the socket's send buffer is empty (the previous response proves the origin read
# the previous request) and Linux never shrinks it below tcp_wmem[0] = 4 KiB. So a
# failed first write of at most this many bytes sent nothing and may be retried on a
# fresh connection; a larger one may have gone out in part and is never retried.
_ATOMIC_WRITE = 4096

# Response head limit: h11's default is 16 KiB; origins behind a CDN send more
# (Set-Cookie, CSP, Link headers), and nginx's proxy_buffer for headers is 4-8 KiB x 8.
_MAX_RESPONSE_HEAD = 65536

# The end of a response head; h11 accepts bare LF line endings from origins, so do we.
_HEAD_END_RE = re.compile(rb"\r?\n\r?\n")

# Called with each 1xx response (status, headers) the origin sends before its final one.
InterimCallback = Callable[[int, list[tuple[str, str]]], Awaitable[object]]

# Methods whose requests carry a body by definition: they always get Content-Length,
# even 0 (RFC 9110 §8.6: a user agent SHOULD send it when the method defines a body).
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class OriginError(Exception):
    """Base of the origin-fetch errors; never raised itself."""


class OriginConnectError(OriginError):
    """No connection could be made, or it failed before any byte was sent."""


class OriginTimeout(OriginError):
    """The request went out, but no complete response came within ``read_timeout``."""


class OriginProtocolError(OriginError):
    """The origin sent bytes that aren't valid HTTP/1.1, or the connection broke after
    the request went out."""


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of an :class:`OriginPool`'s counters.

    Attributes:
        connects: connections opened.
        reuses: requests that went out on a pooled connection.
        replaced_stale: pooled connections found dead before sending and replaced.
        errors: requests that raised an :class:`OriginError`.
        requests: requests answered.
        idle: connections in the pool now.
    """

    connects: int
    reuses: int
    replaced_stale: int
    errors: int
    requests: int = 0
    idle: int = 0


class _NothingSent(Exception):
    """Internal: the first write failed and provably sent nothing."""


@dataclass(slots=True)
class _OriginConnection:
    stream: trio.abc.Stream
    conn: h11.Connection


def _peer_spoke(stream: trio.abc.Stream) -> bool:
    """Whether an idle socket is readable (EOF or stray bytes), without blocking.

    Only sockets can be polled; other streams (in-memory ones) report False and rely on
    the failed-write check.
    """
    if not isinstance(stream, trio.SocketStream):
        return False
    fd = stream.socket.fileno()
    if fd < 0:
        return True
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)
    return bool(readable)


class OriginPool:
    """Keep-alive HTTP/1.1 connections to one origin.

    Args:
        base_url: where to connect, ``http://HOST:PORT`` (port 80 by default). Only the
            address is used: the path, and the ``Host`` sent, come from each request.
        connect_timeout: seconds to open a connection.
        read_timeout: seconds from starting to send a request to the end of its
            response (a total, not per read).
        max_idle: most idle connections kept; extra ones are closed when released.
        open_stream: ``async (host, port) -> Stream`` used instead of
            ``trio.open_tcp_stream`` (in-memory streams for tests and the Trio-virtual
            driver).
        max_body: largest response body accepted; more is an
            :class:`OriginProtocolError`.

    Resource handling:
        The pool owns every connection it opens; :meth:`aclose` closes the idle ones,
        and connections in use are closed when their request ends. The pool may be
        shared by any number of tasks; each request uses its own connection.

    Error handling:
        :meth:`request` raises only :class:`OriginError` subclasses for network and
        protocol failures (plus ``ValueError`` for a request h11 can't encode, before
        anything is sent). Cancellation closes the connection in use.
    """

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_idle: int = 32,
        open_stream: Callable[[str, int], Awaitable[trio.abc.Stream]] | None = None,
        max_body: int = 64 * 2**20,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.username is not None or parts.password is not None:
            # (not echoed: it holds a password)
            raise ValueError("expected http://HOST[:PORT], got a URL with a user name or password")
        try:
            port = parts.port
        except ValueError:  # "Port out of range 0-65535", or not a number
            wanted = "expected http://HOST[:PORT] with a port from 1 to 65535"
            raise ValueError(f"{wanted}, got {base_url!r}") from None
        extra = parts.path not in ("", "/") or parts.query or parts.fragment
        if parts.scheme != "http" or not parts.hostname or extra:
            raise ValueError(f"expected http://HOST[:PORT] (no path or query), got {base_url!r}")
        self._host: str = parts.hostname
        self._port: int = port or 80
        self._netloc = parts.netloc
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_idle = max_idle
        self._open_stream = open_stream
        self._max_body = max_body
        self._idle: list[_OriginConnection] = []
        self._closed = False
        self._connects = 0
        self._reuses = 0
        self._replaced_stale = 0
        self._errors = 0
        self._requests = 0

    # -- public ----------------------------------------------------------------------

    async def request(self, req: Request, *, on_interim: InterimCallback | None = None) -> Response:
        """Send ``req`` to the origin and return its response with the full body.

        The request goes out as given (method, target, headers, body) except that
        hop-by-hop headers are dropped and ``Content-Length`` is set from ``req.body``
        (for a non-empty body or POST/PUT/PATCH). ``Host`` passes through unchanged; it is
        only added (from ``base_url``) when missing. The response has hop-by-hop headers
        (``Transfer-Encoding``, ``Connection``, ...) removed, since its body arrives
        de-chunked, and a ``Content-Length`` that is its body's length (however the
        origin framed it; not for 204 and 304); a ``HEAD`` response keeps the origin's
        ``Content-Length``, if any, and has an empty body. A response whose
        ``Transfer-Encoding`` doesn't end in ``chunked`` is read until the origin closes
        (RFC 9112 §6.3) and returned without that header.

        Args:
            req: the request to send.
            on_interim: awaited with ``(status, headers)`` (hop-by-hop headers removed)
                for each 1xx response other than ``100 Continue`` that precedes the
                final one (``103 Early Hints``, ``102 Processing``). Interim responses
                are never part of the returned response. An exception from the
                callback is logged and ignored: relaying a hint must not fail the fetch.

        Raises:
            OriginConnectError: nothing was sent (connect refused, timed out, or the
                pool is closed).
            OriginTimeout: sent, but no complete response within ``read_timeout``.
            OriginProtocolError: invalid response, or the connection broke after
                sending.
            ValueError: ``req`` can't be encoded as HTTP/1.1 (nothing was sent).
        """
        try:
            payload = self._encode(req)
        except h11.LocalProtocolError as exc:
            raise ValueError(f"cannot send {req!r}: {exc}") from None
        try:
            resp = await self._request(req, payload, on_interim)
        except OriginError as exc:
            self._errors += 1
            log.debug("origin request %r failed: %r", req, exc)
            raise
        self._requests += 1
        return resp

    async def aclose(self) -> None:
        """Close the idle connections; later requests raise :class:`OriginConnectError`.

        Safe to call more than once.
        """
        self._closed = True
        idle, self._idle = self._idle, []
        for oc in idle:
            await trio.aclose_forcefully(oc.stream)

    def statistics(self) -> PoolStats:
        """A frozen snapshot of the counters."""
        return PoolStats(
            connects=self._connects,
            reuses=self._reuses,
            replaced_stale=self._replaced_stale,
            errors=self._errors,
            requests=self._requests,
            idle=len(self._idle),
        )

    # -- internals -------------------------------------------------------------------

    def _encode(self, req: Request) -> list[h11.Event]:
        """h11 events for ``req`` (validated now, so bad input fails before connecting)."""
        headers = [(k, v) for k, v in strip_hop_by_hop(req.headers) if k != "content-length"]
        if not any(k == "host" for k, _ in headers):
            headers.insert(0, ("host", self._netloc))
        if req.body or req.method in _BODY_METHODS or req.header("content-length") is not None:
            headers.append(("content-length", str(len(req.body))))
        events: list[h11.Event] = [
            h11.Request(
                method=req.method.encode("ascii"),
                target=req.target.encode("ascii"),
                headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers],
            )
        ]
        if req.body:
            events.append(h11.Data(data=req.body))
        events.append(h11.EndOfMessage())
        return events

    async def _connect(self) -> _OriginConnection:
        if self._closed:
            raise OriginConnectError("pool is closed")
        try:
            with trio.fail_after(self._connect_timeout):
                if self._open_stream is not None:
                    stream = await self._open_stream(self._host, self._port)
                else:
                    stream = await trio.open_tcp_stream(self._host, self._port)
        except trio.TooSlowError:
            raise OriginConnectError(
                f"connect to {self._host}:{self._port} timed out after {self._connect_timeout} s"
            ) from None
        except OSError as exc:
            raise OriginConnectError(f"connect to {self._host}:{self._port} failed: {exc}") from exc
        self._connects += 1
        return _OriginConnection(
            stream, h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_RESPONSE_HEAD)
        )

    async def _checkout(self) -> tuple[_OriginConnection, bool]:
        """An idle connection (and True) or a new one (and False)."""
        if self._idle:
            oc = self._idle.pop()
            if not _peer_spoke(oc.stream):
                self._reuses += 1
                return oc, True
            # Dead before sending. It was the newest idle connection, so the older ones
            # have been idle longer against the same origin timeout: drop them all.
            self._replaced_stale += 1
            stale = [oc, *self._idle]
            self._idle.clear()
            for s in stale:
                await trio.aclose_forcefully(s.stream)
        return await self._connect(), False

    async def _release(self, oc: _OriginConnection) -> None:
        conn = oc.conn
        if (
            not self._closed
            and len(self._idle) < self._max_idle
            and conn.our_state is h11.DONE
            and conn.their_state is h11.DONE
            # Bytes after the response (a body longer than its Content-Length, or a
            # response nobody asked for) would be read as the next request's answer:
            # the framing is untrustworthy, so the connection is closed, not pooled.
            and not conn.trailing_data[0]
            and not conn.trailing_data[1]
        ):
            oc.conn.start_next_cycle()
            self._idle.append(oc)
        else:
            await trio.aclose_forcefully(oc.stream)

    async def _send(self, oc: _OriginConnection, events: list[h11.Event]) -> None:
        """Write the request in one send_all.

        Raises:
            _NothingSent: the write failed and provably sent nothing.
            OriginProtocolError: the write failed after bytes may have gone out.
        """
        payload = b"".join(oc.conn.send(e) or b"" for e in events)
        try:
            await oc.stream.send_all(payload)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            oc.conn.send_failed()
            if len(payload) <= _ATOMIC_WRITE:
                raise _NothingSent from exc
            raise OriginProtocolError(f"connection broke while sending: {exc}") from exc

    async def _receive(
        self, oc: _OriginConnection, on_interim: InterimCallback | None = None, head: bool = False
    ) -> Response:
        """Read one complete response (after any 1xx ones) to a request (``head``: a
        HEAD).

        h11 is given each response head only once it is complete, so that
        :func:`_close_delimited_head` can first rewrite a head h11 would refuse; body
        bytes go to h11 as they arrive.

        Raises:
            OriginProtocolError: invalid bytes, early close, or body over max_body.
        """
        status = 0
        headers: list[tuple[str, str]] = []
        body = bytearray()
        conn = oc.conn
        pending = bytearray()  # received, not yet given to h11
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    if conn.their_state is h11.SEND_RESPONSE:
                        await self._feed_head(oc, pending)
                    elif pending:
                        conn.receive_data(bytes(pending))
                        pending.clear()
                    else:
                        data = await oc.stream.receive_some(_RECEIVE_SIZE)
                        conn.receive_data(bytes(data))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    if status > 599:
                        # RFC 9110 §15: codes outside 100..599 are invalid (h11 takes
                        # any three digits: 000-099 it refuses, 600-999 it passes as a
                        # final response). Relayed, they would be cached and served.
                        raise OriginProtocolError(
                            f"invalid response from origin: status {status} outside 100..599"
                        )
                    bad = _bad_field(event.headers)
                    if bad is not None:
                        # h11 refuses only NUL; a value the edge could never send on
                        # (nor should store) makes the whole response invalid.
                        raise OriginProtocolError(f"invalid response from origin: control character in {bad}")
                    headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers]
                elif isinstance(event, h11.InformationalResponse):
                    # RFC 9110 §15.2. 100 Continue answers our own Expect (we never
                    # send one); the others are the origin's to the client.
                    bad = _bad_field(event.headers)
                    if bad is not None:
                        log.warning("dropped a %d response: control character in %s", event.status_code, bad)
                    elif on_interim is not None and event.status_code != 100:
                        interim = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers]
                        try:
                            await on_interim(event.status_code, strip_hop_by_hop(interim))
                        except Exception:
                            log.exception("relaying a %d interim response failed", event.status_code)
                elif isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > self._max_body:
                        raise OriginProtocolError(f"response body over {self._max_body} bytes")
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise OriginProtocolError("origin closed the connection before a complete response")
                else:  # PAUSED: can't happen for a client that sent one request
                    raise OriginProtocolError(f"unexpected h11 event {event!r}")
        except h11.RemoteProtocolError as exc:
            raise OriginProtocolError(f"invalid response from origin: {exc}") from exc
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise OriginProtocolError(f"connection broke while reading the response: {exc}") from exc
        if pending:
            # Bytes past the end of this response: give them to h11 so _release sees
            # them as trailing data and closes the connection.
            conn.receive_data(bytes(pending))
        headers = strip_hop_by_hop(headers)
        if not head and status != 204 and status != 304:
            # The body arrives whole and de-chunked: say its length. A chunked or
            # close-delimited response had none (or, with Transfer-Encoding, one to
            # ignore: RFC 9112 §6.3), and a cached copy without one answered HEAD with
            # Content-Length: 0. (h11 already holds a Content-Length body to its value.)
            length = str(len(body))
            if [v for k, v in headers if k == "content-length"] != [length]:
                headers = replace(headers, "content-length", length)
        return Response(status, headers, bytes(body))

    async def _feed_head(self, oc: _OriginConnection, pending: bytearray) -> None:
        """Give h11 the next complete response head from ``pending`` (reading more as
        needed); bytes after it stay in ``pending``. At EOF, h11 gets what there is and
        reports the truncated head itself."""
        while True:
            m = _HEAD_END_RE.search(pending)
            if m is not None:
                break
            if len(pending) > _MAX_RESPONSE_HEAD:
                raise OriginProtocolError(f"response head over {_MAX_RESPONSE_HEAD} bytes")
            data = await oc.stream.receive_some(_RECEIVE_SIZE)
            if not data:
                oc.conn.receive_data(bytes(pending))
                pending.clear()
                oc.conn.receive_data(b"")
                return
            pending += data
        head = bytes(pending[: m.end()])
        del pending[: m.end()]
        oc.conn.receive_data(_close_delimited_head(head))

    async def _request(
        self, req: Request, events: list[h11.Event], on_interim: InterimCallback | None
    ) -> Response:
        oc, reused = await self._checkout()
        try:
            with trio.fail_after(self._read_timeout):
                try:
                    await self._send(oc, events)
                except _NothingSent:
                    await trio.aclose_forcefully(oc.stream)
                    if not reused:
                        raise OriginConnectError("connection failed before the request was sent") from None
                    # Replace once: a fresh connection, never another pooled one.
                    self._replaced_stale += 1
                    oc = await self._connect()
                    try:
                        await self._send(oc, events)
                    except _NothingSent:
                        raise OriginConnectError("connection failed before the request was sent") from None
                resp = await self._receive(oc, on_interim, req.method == "HEAD")
        except trio.TooSlowError:
            await trio.aclose_forcefully(oc.stream)
            raise OriginTimeout(
                f"no complete response to {req.method} {req.target} within {self._read_timeout} s"
            ) from None
        except BaseException:
            await trio.aclose_forcefully(oc.stream)
            raise
        await self._release(oc)
        return resp


def _bad_field(fields: Any) -> str | None:
    """The name of the first field whose value has a control character other than HTAB
    (RFC 9110 §5.5), or None."""
    for name, value in fields:
        if BAD_FIELD_VALUE_BYTES.search(value):  # RFC 9110 §5.5; h11 refuses only NUL
            return str(name.decode("latin-1"))
    return None


def _close_delimited_head(head: bytes) -> bytes:
    """``head`` rewritten so that h11 reads a close-delimited body, when it has a
    Transfer-Encoding whose final coding isn't chunked; else ``head`` unchanged.

    RFC 9112 §6.3 item 4: such a response's body runs until the server closes the
    connection. h11 refuses any Transfer-Encoding but ``chunked``, yet reads a response
    without Content-Length or Transfer-Encoding until EOF, which is the same framing.
    So the Transfer-Encoding lines (and any Content-Length, which §6.3 says it
    overrides) are dropped before h11 parses the head. The connection is never pooled
    afterwards (h11 ends in MUST_CLOSE), the body still counts against ``max_body`` and
    the whole read stays under ``read_timeout``. The coding itself is not undone; the
    body is passed on as received, without the (hop-by-hop) header.
    """
    if b"transfer-encoding" not in head.lower():
        return head
    lines = head.split(b"\n")
    codings: list[bytes] = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() == b"transfer-encoding":
            codings += [c.strip().lower() for c in value.split(b",") if c.strip()]
    if not codings or codings[-1] == b"chunked":
        return head  # chunked (h11's own case), or a malformed value h11 will refuse
    kept = [lines[0]]
    for line in lines[1:]:
        name = line.partition(b":")[0].strip().lower()
        if name not in (b"transfer-encoding", b"content-length"):
            kept.append(line)
    return b"\n".join(kept)
