"""The Trio + h11 HTTP/1.1 server shell shared by the edge node and the origin.

Theory of operation
-------------------
One task per connection runs the loop of h11's ``examples/trio-server.py``: read on
``NEED_DATA``, hand complete requests to the handler, write the answer, start the next
cycle. Two things differ, both because h11 is deliberately lenient and this server sits
in front of caches, where a framing disagreement between two parsers is a request-
smuggling hole:

* **The shell owns the bytes of every request head.** It buffers raw bytes until the
  blank line that ends the head, checks them with a strict pre-parser
  (:func:`_check_head`), and only then gives the head to a fresh ``h11.Connection``.
  h11 accepts bare LF line endings, obs-fold, whitespace in odd places and several
  Content-Length headers with equal values; RFC 9112 lets a server reject all of these,
  and we do (400), before any handler sees the request.
* **The shell meters the body bytes.** A small framer (:class:`_LengthFramer` or
  :class:`_ChunkScanner`) sees each body byte before h11 does, checks chunk framing
  strictly (RFC 9112 §7.1), enforces ``max_body`` while bytes arrive (so a declared
  chunk of 2**64 bytes is refused at once instead of being read), and finds where the
  message ends, so pipelined bytes of the next request stay in the shell's buffer for
  the pre-parser instead of disappearing into h11's.

One ``h11.Connection`` per request/response cycle follows from this; h11 still decides
keep-alive (``our_state is DONE``), builds the response bytes and rejects anything the
pre-parser let through.

Invariants
----------
* A handler is only ever called with a complete, validated request whose body has been
  read in full (at most ``Limits.max_body`` bytes).
* An exception in one connection never reaches another connection or the listener.
* Every wait has a deadline: ``header_timeout`` (from the first byte of a head, or from
  accept for the first request), ``idle_timeout`` (between requests), ``body_timeout``
  (whole body), ``send_timeout`` (whole response) and the lingering close.
"""

from __future__ import annotations

import email.utils
import errno
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus

import h11
import trio

from edgesim.http import Request, Response, replace

__all__ = ["Handler", "HttpServer", "Limits", "ServerStats", "bare_app"]

log = logging.getLogger("edgesim.server")

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-server resource limits. The defaults follow common servers' precedents.

    Attributes:
        max_request_line: longest request-line (bytes, without CRLF); longer gets 414.
            nginx's ``large_client_header_buffers`` is 8 KiB, Apache's
            ``LimitRequestLine`` 8190.
        max_header_bytes: longest header block (all field lines with their CRLFs, not
            the request-line); longer gets 431. node's ``--max-http-header-size`` was
            8 KiB and is 16 KiB now, nginx allows 4 x 8 KiB; 32 KiB leaves room for
            large cookies.
        max_headers: most field lines; more gets 431. Apache's ``LimitRequestFields``
            is 100, node's ``maxHeadersCount`` 2000.
        header_timeout: seconds to receive a whole request head, counted from the first
            byte (from accept for a connection's first request); slowloris defence.
            nginx's ``client_header_timeout`` and Apache's ``RequestReadTimeout
            header=`` range are 60 s and 20-40 s; 10 s is plenty on the networks
            edgesim runs on.
        idle_timeout: seconds a keep-alive connection may wait for the next request.
            nginx's ``keepalive_timeout`` is 75 s, node's ``keepAliveTimeout`` 5 s.
        body_timeout: seconds to receive a whole request body (a total, stricter than
            nginx's per-read ``client_body_timeout`` of 60 s, so slow-drip bodies are
            bounded too).
        max_body: largest request body; more gets 413 (before reading it when
            Content-Length says so). nginx's ``client_max_body_size`` is 1 MiB; the
            origin accepts deploy uploads, hence 16 MiB.
        max_connections: concurrent connections. Beyond it a new connection at once gets
            ``503`` with ``Retry-After: 1`` and is closed, rather than waiting: load
            tests and the simulator must *see* overload, and the kernel's listen backlog
            already queues bursts (nginx's ``worker_connections``, 512 by default, also
            refuses rather than queues).
        send_timeout: seconds to write one whole response (nginx's ``send_timeout`` is
            60 s between writes); a client that stops reading is dropped.
    """

    max_request_line: int = 8192
    max_header_bytes: int = 32768
    max_headers: int = 100
    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    body_timeout: float = 30.0
    max_body: int = 16 * 2**20
    max_connections: int = 1024
    send_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class ServerStats:
    """A snapshot of an :class:`HttpServer`'s counters (see :meth:`HttpServer.statistics`).

    ``rejected_*`` count requests answered with that status by the shell itself, never
    by the handler; ``timeouts`` counts header and body timeouts (not quiet idle closes);
    ``errors_500`` counts handler exceptions and unusable handler responses.
    """

    connections_open: int
    connections_total: int
    requests: int
    rejected_400: int
    rejected_431: int
    timeouts: int
    errors_500: int
    rejected_413: int = 0
    rejected_414: int = 0
    rejected_505: int = 0
    rejected_503: int = 0


# Bytes asked of the socket per read. 64 KiB is what trio's own examples use and covers
# a whole default-limit head in one read.
_RECEIVE_SIZE = 65536

# Lingering close (RFC 9112 §9.6): after a server-initiated close we half-close and
# discard what the client still sends, so its unread data doesn't make our kernel send a
# RST that could destroy the error response in flight. Apache lingers up to 30 s, 2 s
# per read; nginx ``lingering_time`` 30 s, ``lingering_timeout`` 5 s. We only need the
# response to reach the client, so: 2 s and 4 MiB at most.
_LINGER_SECONDS = 2.0
_LINGER_BYTES = 4 * 2**20

# Longest chunk-size line, extensions included. Nobody sends long extensions; nginx
# allows none beyond its buffer, and a bound keeps the scanner's buffer small.
_MAX_CHUNK_LINE = 4096

# Content-Length with more digits than this is rejected outright: 18 digits is already
# far beyond any max_body and keeps int() cheap (h11 uses 20).
_MAX_CL_DIGITS = 18

# accept() errors that mean "out of file descriptors or memory": trio's serve_listeners
# logs them and sleeps 100 ms instead of dying, as do Go and Tornado.
_ACCEPT_CAPACITY_ERRNOS = frozenset(
    e for e in (errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS) if e is not None
)

# --- the pre-parser's grammar (RFC 9110 §5.6.2, RFC 9112 §3, §5) --------------------

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN_RE = re.compile(_TOKEN)
# request-target: visible ASCII only (RFC 9112 §3.2; no fragments, RFC 3986 §3.5).
_TARGET_RE = re.compile(rb"[\x21-\x22\x24-\x7e]+")
_VERSION_RE = re.compile(rb"HTTP/([0-9])\.([0-9])")
# Field values: no CTL except HTAB (RFC 9110 §5.5); obs-text (0x80-0xff) allowed.
_BAD_VALUE_CHAR_RE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_BARE_LF_RE = re.compile(rb"(?<!\r)\n")
_DIGITS_RE = re.compile(rb"[0-9]+")
# uri-host [ ":" port ] (RFC 9110 §7.2), loosely: reg-name / IPv4 / IP-literal chars.
_HOST_RE = re.compile(rb"[A-Za-z0-9\-._~%!$&'()*+,;=\[\]:]*")
# chunk-size [ chunk-ext ] (RFC 9112 §7.1.1); no trailing whitespace (h11 allows it).
_CHUNK_LINE_RE = re.compile(rb"([0-9A-Fa-f]+)(;[^\x00-\x08\x0a-\x1f\x7f]*)?")

_REASONS = {int(s): s.phrase for s in HTTPStatus}


class _Reject(Exception):
    """Internal: stop this connection, answering ``status`` first unless it is 0."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Head:
    """What the pre-parser learned from a head: enough to frame the body."""

    http_version: bytes
    content_length: int | None
    chunked: bool


def _check_head(head: bytes, limits: Limits) -> _Head:
    """Strictly validate a complete request head (without its final CRLF CRLF).

    The caller has already rejected bare LF. This runs before h11 so that every
    ambiguity h11 tolerates is refused with a definite status.

    Raises:
        _Reject: with 400, 413, 414, 431 or 505.
    """
    lines = head.split(b"\r\n")
    request_line = lines[0]
    if len(request_line) > limits.max_request_line:
        # RFC 9112 §3: a target longer than the server wishes to parse gets 414.
        raise _Reject(414, "request-line too long")
    parts = request_line.split(b" ")
    if len(parts) != 3:
        # Covers HTTP/0.9 "GET /" (no version) and extra or missing spaces.
        raise _Reject(400, "malformed request-line")
    method, target, version = parts
    if not _TOKEN_RE.fullmatch(method):
        raise _Reject(400, "invalid method")
    if not _TARGET_RE.fullmatch(target):
        raise _Reject(400, "invalid request-target")
    m = _VERSION_RE.fullmatch(version)
    if m is None:
        # "http/1.1", "HTTP/1", "HTTP/1.1x": HTTP-name is case-sensitive (RFC 9112 §2.3).
        raise _Reject(400, "malformed HTTP-version")
    http_version = m.group(1) + b"." + m.group(2)
    if http_version not in (b"1.1", b"1.0"):
        raise _Reject(505, "unsupported HTTP version")
    # Request-target forms (RFC 9112 §3.2): origin-form, absolute-form, and the
    # authority- and asterisk-forms only with the methods that use them.
    if not (
        target.startswith(b"/")
        or (b"://" in target and target.split(b"://", 1)[0].isalpha())
        or (method == b"CONNECT" and b"/" not in target)
        or (method == b"OPTIONS" and target == b"*")
    ):
        raise _Reject(400, "invalid request-target form")

    field_lines = lines[1:]
    if len(field_lines) > limits.max_headers:
        raise _Reject(431, "too many header fields")
    if sum(len(x) + 2 for x in field_lines) > limits.max_header_bytes:
        raise _Reject(431, "header block too large")

    content_lengths: list[bytes] = []
    transfer_encodings: list[bytes] = []
    hosts = 0
    for line in field_lines:
        if line[:1] in (b" ", b"\t"):
            # obs-fold: RFC 9112 §5.2 lets a server reject it with 400; folding rules
            # differ between parsers, so accepting it invites smuggling.
            raise _Reject(400, "obsolete line folding")
        name, colon, value = line.partition(b":")
        if not colon:
            raise _Reject(400, "header line without colon")
        if not _TOKEN_RE.fullmatch(name):
            # Includes whitespace between name and colon: RFC 9112 §5.1 says MUST 400.
            raise _Reject(400, "invalid header name")
        if _BAD_VALUE_CHAR_RE.search(value):
            # NUL, bare CR and other controls (RFC 9110 §5.5).
            raise _Reject(400, "control character in header value")
        value = value.strip(b" \t")
        lname = name.lower()
        if lname == b"content-length":
            content_lengths.append(value)
        elif lname == b"transfer-encoding":
            transfer_encodings.append(value)
        elif lname == b"host":
            hosts += 1
            if not _HOST_RE.fullmatch(value):
                raise _Reject(400, "invalid Host")

    # RFC 9112 §3.2: a 1.1 request must carry exactly one Host; more than one is 400
    # for any version.
    if hosts > 1 or (hosts == 0 and http_version == b"1.1"):
        raise _Reject(400, "missing or repeated Host")

    content_length: int | None = None
    if content_lengths:
        # More than one Content-Length (RFC 9112 §6.3 item 5 allows collapsing equal
        # values, but a proxy before us may have picked another one): always 400. The
        # list form "5, 5" is the same thing and fails the digits check.
        if len(content_lengths) > 1:
            raise _Reject(400, "repeated Content-Length")
        cl = content_lengths[0]
        if not _DIGITS_RE.fullmatch(cl) or len(cl) > _MAX_CL_DIGITS:
            raise _Reject(400, "invalid Content-Length")
        content_length = int(cl)

    chunked = False
    if transfer_encodings:
        if http_version == b"1.0":
            # RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means the framing is faulty.
            raise _Reject(400, "Transfer-Encoding in HTTP/1.0")
        if content_length is not None:
            # RFC 9112 §6.3 item 3: both at once is the classic smuggling vector; a
            # server "ought to" treat it as an error and we do.
            raise _Reject(400, "both Content-Length and Transfer-Encoding")
        if len(transfer_encodings) > 1 or transfer_encodings[0].lower() != b"chunked":
            # "gzip" (chunked not final: RFC 9112 §6.3 item 4 says MUST 400),
            # "chunked, chunked" (chunked twice is forbidden, §7) and codings we don't
            # implement: we only take exactly one "chunked".
            raise _Reject(400, "unsupported Transfer-Encoding")
        chunked = True

    if content_length is not None and content_length > limits.max_body:
        raise _Reject(413, "Content-Length exceeds max_body")
    return _Head(http_version=http_version, content_length=content_length, chunked=chunked)


class _LengthFramer:
    """Meters a Content-Length body (or an absent one) so pipelined bytes stay ours."""

    def __init__(self, length: int) -> None:
        self.remaining = length

    @property
    def done(self) -> bool:
        return self.remaining == 0

    def feed(self, data: bytes) -> int:
        """Return how many bytes of ``data`` belong to this body."""
        n = min(self.remaining, len(data))
        self.remaining -= n
        return n


class _ChunkScanner:
    """Strict chunked-framing check (RFC 9112 §7.1), run on raw bytes before h11.

    h11 accepts up to 20 hex digits of chunk size (and then waits for that many bytes),
    trailing whitespace after the size, any bytes in extensions and bare LF in
    trailers. The scanner refuses all of those, counts data against ``max_body`` when a
    chunk is declared (413 before reading it), and reports where the message ends.
    """

    _SIZE, _DATA, _DATA_CRLF, _TRAILER, _DONE = range(5)

    def __init__(self, max_body: int, max_trailer_bytes: int) -> None:
        self._state = self._SIZE
        self._line = bytearray()
        self._remaining = 0
        self._crlf_seen = 0
        self._total = 0
        self._max_body = max_body
        self._trailer_budget = max_trailer_bytes

    @property
    def done(self) -> bool:
        return self._state == self._DONE

    def feed(self, data: bytes) -> int:
        """Scan ``data``; return how many bytes belong to this message.

        Raises:
            _Reject: 400 for bad framing, 413 for a body over ``max_body``, 431 for
                oversized trailers.
        """
        i = 0
        n = len(data)
        while i < n and self._state != self._DONE:
            if self._state == self._DATA:
                take = min(self._remaining, n - i)
                self._remaining -= take
                i += take
                if self._remaining == 0:
                    self._state = self._DATA_CRLF
                    self._crlf_seen = 0
            elif self._state == self._DATA_CRLF:
                if data[i] != b"\r\n"[self._crlf_seen]:
                    raise _Reject(400, "chunk data not followed by CRLF")
                self._crlf_seen += 1
                i += 1
                if self._crlf_seen == 2:
                    self._state = self._SIZE
            else:
                # SIZE or TRAILER: collect one line.
                j = data.find(b"\n", i)
                end = n if j < 0 else j + 1
                self._line += data[i:end]
                i = end
                limit = _MAX_CHUNK_LINE if self._state == self._SIZE else self._trailer_budget
                if len(self._line) > limit + 2:
                    if self._state == self._SIZE:
                        raise _Reject(400, "chunk-size line too long")
                    raise _Reject(431, "trailer section too large")
                if j >= 0:
                    line = bytes(self._line)
                    self._line.clear()
                    if not line.endswith(b"\r\n"):
                        raise _Reject(400, "bare LF in chunked framing")
                    self._line_done(line[:-2])
        return i

    def _line_done(self, line: bytes) -> None:
        if self._state == self._SIZE:
            m = _CHUNK_LINE_RE.fullmatch(line)
            if m is None:
                raise _Reject(400, "invalid chunk size")
            size_text = m.group(1).lstrip(b"0") or b"0"
            # More than 16 significant hex digits overflows 64 bits: parsers that wrap
            # would read 2**64 + 5 as 5, the basis of chunk-size smuggling. h11 takes up
            # to 20 digits and would then wait for the bytes.
            if len(size_text) > 16:
                raise _Reject(400, "chunk size overflow")
            size = int(size_text, 16)
            if size == 0:
                self._state = self._TRAILER
                return
            self._total += size
            if self._total > self._max_body:
                raise _Reject(413, "chunked body exceeds max_body")
            self._remaining = size
            self._state = self._DATA
        else:
            if not line:
                self._state = self._DONE
                return
            self._trailer_budget -= len(line) + 2
            if self._trailer_budget < 0:
                raise _Reject(431, "trailer section too large")
            name, colon, value = line.partition(b":")
            if not colon or not _TOKEN_RE.fullmatch(name) or _BAD_VALUE_CHAR_RE.search(value):
                raise _Reject(400, "invalid trailer field")


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    """IMF-fixdate for the Date header (RFC 9110 §6.6.1), formatted once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


def _error_bytes(
    status: int, server_name: str, *, retry_after: bool = False, head_only: bool = False
) -> bytes:
    """A complete ``Connection: close`` error response, built without h11 (whose state
    may be ERROR by now). ``head_only`` omits the body (answer to HEAD) but keeps its
    Content-Length."""
    reason = _REASONS.get(status, "Error")
    body = f"{status} {reason}\n".encode("ascii")
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        f"date: {_http_date()}\r\n"
        f"server: {server_name}\r\n"
        "content-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\n"
        + ("retry-after: 1\r\n" if retry_after else "")
        + "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + (b"" if head_only else body)


class _Counters:
    """Mutable counters behind :class:`ServerStats`."""

    __slots__ = (
        "connections_total",
        "errors_500",
        "rejected",
        "requests",
        "timeouts",
    )

    def __init__(self) -> None:
        self.connections_total = 0
        self.requests = 0
        self.timeouts = 0
        self.errors_500 = 0
        self.rejected: dict[int, int] = {}


class _Connection:
    """One client connection: the read/answer loop and its buffer."""

    def __init__(self, server: HttpServer, stream: trio.abc.Stream) -> None:
        self._server = server
        self._stream = stream
        self._limits = server._limits
        self._buf = bytearray()
        self._accepted_at = trio.current_time()
        # Set while waiting for the first byte of a request; begin_shutdown cancels it.
        self.idle_scope: trio.CancelScope | None = None

    # -- reading ---------------------------------------------------------------------

    async def _receive(self) -> bytes:
        return bytes(await self._stream.receive_some(_RECEIVE_SIZE))

    async def _read_head(self, first: bool) -> bytes | None:
        """Wait for a complete request head; return it without its blank line.

        Returns None when the connection should close quietly (idle timeout, shutdown,
        clean EOF between requests). Bytes after the head stay in ``self._buf``.

        Raises:
            _Reject: malformed or oversized head (400/414/431) or header timeout (408).
        """
        lim = self._limits
        if not self._buf:
            if self._server._shutting_down:
                return None
            if first:
                scope = trio.CancelScope(deadline=self._accepted_at + lim.header_timeout)
            else:
                scope = trio.CancelScope(deadline=trio.current_time() + lim.idle_timeout)
            with scope:
                self.idle_scope = scope
                try:
                    data = await self._receive()
                finally:
                    self.idle_scope = None
            if scope.cancelled_caught:
                if first and not self._server._shutting_down:
                    self._server._counters.timeouts += 1
                return None
            if not data:
                return None
            self._buf += data
            deadline = (
                self._accepted_at + lim.header_timeout if first else trio.current_time() + lim.header_timeout
            )
        else:
            # Pipelined bytes: the head began arriving with the previous request.
            deadline = trio.current_time() + lim.header_timeout

        buf = self._buf
        scanned = 0
        max_head = lim.max_request_line + 2 + lim.max_header_bytes + 2
        with trio.move_on_at(deadline):
            while True:
                # RFC 9112 §2.2: ignore empty lines before the request-line (some
                # clients send a stray CRLF after a POST body).
                while buf.startswith(b"\r\n"):
                    del buf[:2]
                    scanned = 0
                end = buf.find(b"\r\n\r\n")
                region = end if end >= 0 else len(buf)
                # h11 accepts bare LF as a line ending (RFC 9112 §2.2 allows it, but a
                # proxy that doesn't would see different lines): refuse it, and check
                # as bytes arrive, since a head ending in LF LF never shows CRLF CRLF.
                if _BARE_LF_RE.search(buf, max(0, scanned - 1), region):
                    raise _Reject(400, "bare LF in request head")
                scanned = region
                if buf and not _TOKEN_RE.match(buf[:1]):
                    # A method starts with a tchar; anything else (a TLS ClientHello,
                    # binary junk) is refused now rather than at the header timeout,
                    # as h11's is_next_line_obviously_invalid_request_line does.
                    raise _Reject(400, "not an HTTP request")
                line_end = buf.find(b"\r\n")
                if (line_end < 0 and len(buf) > lim.max_request_line) or (line_end > lim.max_request_line):
                    raise _Reject(414, "request-line too long")
                if end >= 0:
                    head = bytes(buf[:end])
                    del buf[: end + 4]
                    return head
                if len(buf) > max_head:
                    raise _Reject(431, "request head too large")
                data = await self._receive()
                if not data:
                    # The client gave up mid-head; nobody is left to answer.
                    raise _Reject(0, "EOF inside request head")
                buf += data
        self._server._counters.timeouts += 1
        raise _Reject(408, "header timeout")

    async def _read_body(self, conn: h11.Connection, framer: _LengthFramer | _ChunkScanner) -> bytes:
        """Pump body bytes through the framer and h11 until EndOfMessage.

        Raises:
            _Reject: 400 (bad framing), 413 (too large), 408 (body timeout), or 0 when
                the client vanished.
        """
        lim = self._limits
        body = bytearray()
        pending = bytes(self._buf)
        self._buf.clear()
        with trio.move_on_after(lim.body_timeout):
            while True:
                if pending:
                    n = framer.feed(pending)
                    conn.receive_data(pending[:n])
                    self._buf += pending[n:]
                    pending = b""
                event = conn.next_event()
                if isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > lim.max_body:
                        raise _Reject(413, "body exceeds max_body")
                elif isinstance(event, h11.EndOfMessage):
                    return bytes(body)
                elif event is h11.NEED_DATA:
                    if framer.done:
                        raise _Reject(400, "framing disagreement")
                    if conn.they_are_waiting_for_100_continue:
                        # RFC 9110 §10.1.1: say "go on" rather than make the client
                        # wait out its own timer.
                        await self._send_bytes(
                            conn.send(h11.InformationalResponse(status_code=100, headers=[]))
                        )
                    pending = await self._receive()
                    if not pending:
                        raise _Reject(0, "EOF inside request body")
                else:
                    raise _Reject(400, f"unexpected event {type(event).__name__}")
        self._server._counters.timeouts += 1
        raise _Reject(408, "body timeout")

    # -- writing ---------------------------------------------------------------------

    async def _send_bytes(self, data: bytes) -> None:
        with trio.fail_after(self._limits.send_timeout):
            await self._stream.send_all(data)

    def _response_bytes(self, conn: h11.Connection, method: bytes, resp: Response, close: bool) -> bytes:
        """Encode ``resp`` through h11, fixing up framing and adding defaults.

        Raises:
            h11.LocalProtocolError, UnicodeEncodeError, TypeError, ValueError: the
                handler's response can't be sent (the caller answers 500).
        """
        status = resp.status
        body = resp.body if resp.body is not None else b""
        headers: list[tuple[bytes, bytes]] = []
        have_date = have_server = False
        handler_cl: str | None = None
        for name, value in resp.headers:
            lname = name.lower()
            if lname == "content-length":
                handler_cl = value
                continue
            if lname in ("transfer-encoding", "connection", "keep-alive"):
                # The shell owns framing and connection management.
                if lname == "connection" and "close" in value.lower():
                    close = True
                continue
            have_date = have_date or lname == "date"
            have_server = have_server or lname == "server"
            headers.append((lname.encode("latin-1"), value.encode("latin-1")))
        if not have_date:
            headers.append((b"date", _http_date().encode("ascii")))
        if not have_server:
            headers.append((b"server", self._server._server_name.encode("latin-1")))
        no_body = method == b"HEAD" or status in (204, 304) or 100 <= status < 200
        if status == 204 or 100 <= status < 200:
            pass  # RFC 9110 §8.6: MUST NOT send Content-Length
        elif method == b"HEAD" or status == 304:
            # RFC 9110 §9.3.2 / §15.4.5: the length the GET would have had. Keep the
            # handler's value; else the modelled size (body bytes, or size for None).
            cl = handler_cl if handler_cl is not None else str(resp.size)
            headers.append((b"content-length", cl.encode("latin-1")))
        else:
            # The body we send decides; a handler's differing value would break framing.
            headers.append((b"content-length", str(len(body)).encode("ascii")))
        if close:
            headers.append((b"connection", b"close"))
        reason = _REASONS.get(status, "").encode("ascii")
        out = conn.send(h11.Response(status_code=status, headers=headers, reason=reason))
        if body and not no_body:
            out += conn.send(h11.Data(data=body))
        out += conn.send(h11.EndOfMessage())
        return out

    # -- closing ---------------------------------------------------------------------

    async def _linger_close(self) -> None:
        """Half-close, then discard input until EOF or the linger bound (RFC 9112 §9.6)."""
        with trio.move_on_after(_LINGER_SECONDS):
            try:
                if isinstance(self._stream, trio.abc.HalfCloseableStream):
                    await self._stream.send_eof()
                got = 0
                while got < _LINGER_BYTES:
                    data = await self._stream.receive_some(_RECEIVE_SIZE)
                    if not data:
                        break
                    got += len(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    async def _reject(self, exc: _Reject) -> None:
        """Answer an error status (unless 0), count it and close with lingering."""
        counters = self._server._counters
        if exc.status:
            counters.rejected[exc.status] = counters.rejected.get(exc.status, 0) + 1
        log.debug("rejecting request: %d %s", exc.status, exc.reason)
        if exc.status:
            try:
                await self._send_bytes(_error_bytes(exc.status, self._server._server_name))
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
                return
            await self._linger_close()

    # -- the loop --------------------------------------------------------------------

    async def run(self) -> None:
        """Serve requests until the connection closes. Never raises _Reject."""
        first = True
        while True:
            try:
                head = await self._read_head(first)
                if head is None:
                    return
                first = False
                info = _check_head(head, self._limits)
                conn = h11.Connection(h11.SERVER, max_incomplete_event_size=len(head) + 4)
                conn.receive_data(head + b"\r\n\r\n")
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError as exc:
                    # The pre-parser is stricter than h11 everywhere we know of; this
                    # is the backstop.
                    hint = exc.error_status_hint
                    raise _Reject(hint if hint in (400, 413, 431) else 400, str(exc)) from None
                if not isinstance(event, h11.Request):
                    raise _Reject(400, "no request")
                framer: _LengthFramer | _ChunkScanner
                if info.chunked:
                    framer = _ChunkScanner(self._limits.max_body, self._limits.max_header_bytes)
                else:
                    framer = _LengthFramer(info.content_length or 0)
                try:
                    body = await self._read_body(conn, framer)
                except h11.RemoteProtocolError as exc:
                    raise _Reject(400, str(exc)) from None
            except _Reject as exc:
                await self._reject(exc)
                return

            self._server._counters.requests += 1
            target = event.target.decode("ascii")
            headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers]
            if "://" in target:
                # RFC 9112 §3.2.2: with an absolute-form target the server MUST ignore
                # Host and use the target's authority. Handlers key caches and sites
                # on Host, so make the two agree rather than let them be played off.
                authority = target.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
                headers = replace(headers, "host", authority)
            req = Request(
                method=event.method.decode("ascii"),
                target=target,
                headers=headers,
                body=body,
                http_version=info.http_version.decode("ascii"),
            )
            if not await self._answer(conn, event.method, req):
                return

    async def _answer(self, conn: h11.Connection, method: bytes, req: Request) -> bool:
        """Run the handler and send its response; return whether to keep the connection."""
        server = self._server
        try:
            resp = await server._handler(req)
            data = self._response_bytes(conn, method, resp, server._shutting_down)
        except Exception:
            # Isolation: a handler bug costs this connection only.
            log.exception("handler failed for %s %s", req.method, req.target)
            server._counters.errors_500 += 1
            await self._send_error_and_close(500, head_only=method == b"HEAD")
            return False
        try:
            await self._send_bytes(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            conn.send_failed()
            return False
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            return True
        await self._linger_close()
        return False

    async def _send_error_and_close(self, status: int, *, head_only: bool) -> None:
        try:
            await self._send_bytes(_error_bytes(status, self._server._server_name, head_only=head_only))
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            return
        await self._linger_close()


class HttpServer:
    """An HTTP/1.1 server that hands validated requests to ``handler``.

    The handler gets a :class:`~edgesim.http.Request` whose body has been read in full
    and returns a :class:`~edgesim.http.Response`. The shell then:

    * sends ``Content-Length: len(body)`` (a body of ``None`` is sent as empty), replacing
      any Content-Length the handler set; never chunked;
    * for ``HEAD`` and ``304`` sends no body and keeps the handler's Content-Length, or
      else uses ``Response.size`` (so a metadata-only response advertises its size);
      for ``204`` and ``1xx`` sends neither;
    * drops the handler's ``Transfer-Encoding``, ``Connection`` and ``Keep-Alive`` (a
      handler's ``Connection: close`` is honoured by closing after the response);
    * adds ``Date`` and ``Server`` when missing.

    A handler exception, or a response h11 cannot encode (bad header characters, a
    status below 200), becomes a 500 and closes that connection.

    Args:
        handler: ``async (Request) -> Response``.
        limits: resource limits; see :class:`Limits`.
        server_name: value of the ``Server`` header the shell adds.
    """

    def __init__(self, handler: Handler, *, limits: Limits = Limits(), server_name: str = "edgesim") -> None:
        self._handler = handler
        self._limits = limits
        self._server_name = server_name
        self._counters = _Counters()
        self._open: set[_Connection] = set()
        self._shedding = 0
        self._shutting_down = False
        self._drain_deadline = float("inf")
        # (accept scope, connections nursery scope) of every running serve_tcp.
        self._serving: list[tuple[trio.CancelScope, trio.CancelScope]] = []

    async def serve_tcp(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port`` and serve until :meth:`begin_shutdown`.

        Args:
            host: address to bind (loopback by default).
            port: port to bind; 0 picks a free one.
            task_status: ``task_status.started(port)`` reports the bound port, so
                ``port = await nursery.start(server.serve_tcp)`` never races.

        Returns:
            After a graceful shutdown, once every connection has finished or the drain
            timeout has passed.

        Resource handling:
            Owns its listeners and every accepted stream; all are closed before it
            returns or when it is cancelled.

        Error handling:
            Errors inside a connection are contained there (logged, 500 where possible).
            Running out of file descriptors while accepting is logged and retried after
            100 ms, as trio's ``serve_listeners`` does. Other ``accept`` errors
            propagate.
        """
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound: int = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as connections:
            with trio.CancelScope() as accept_scope:
                entry = (accept_scope, connections.cancel_scope)
                self._serving.append(entry)
                try:
                    if self._shutting_down:
                        accept_scope.cancel()
                    log.info("serving HTTP on %s:%d", host, bound)
                    task_status.started(bound)
                    async with trio.open_nursery() as acceptors:
                        for listener in listeners:
                            acceptors.start_soon(self._accept_loop, listener, connections)
                finally:
                    self._serving.remove(entry)
                    for listener in listeners:
                        await trio.aclose_forcefully(listener)
            # Accepting stopped because of begin_shutdown: the connections drain until
            # the drain deadline (set here too in case shutdown began before we ran).
            connections.cancel_scope.deadline = min(connections.cancel_scope.deadline, self._drain_deadline)

    async def _accept_loop(self, listener: trio.SocketListener, connections: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno in _ACCEPT_CAPACITY_ERRNOS:
                    log.error("accept() failed (%s); retrying in 100 ms", exc)
                    await trio.sleep(0.1)
                    continue
                raise
            connections.start_soon(self.serve_stream, stream)

    async def serve_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one connection until it closes.

        The "Trio virtual" driver and tests call this with in-memory streams;
        :meth:`serve_tcp` calls it for every accepted socket. Over ``max_connections``
        (or after :meth:`begin_shutdown`) the client gets 503 and the stream is closed.

        Resource handling:
            Takes ownership of ``stream`` and always closes it before returning.

        Error handling:
            Never raises for anything the peer or the handler does: those are logged and
            the connection is closed. Cancellation propagates (after closing).
        """
        try:
            if self._shutting_down or len(self._open) >= self._limits.max_connections:
                await self._shed(stream)
                return
            conn = _Connection(self, stream)
            self._open.add(conn)
            self._counters.connections_total += 1
            try:
                await conn.run()
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError) as exc:
                log.debug("connection dropped: %r", exc)
            except Exception:
                # A bug in the shell itself: keep it to this connection.
                log.exception("internal error in connection handler")
            finally:
                self._open.discard(conn)
        finally:
            await trio.aclose_forcefully(stream)

    async def _shed(self, stream: trio.abc.Stream) -> None:
        """Answer 503 without reading the request; shedding itself is bounded too."""
        if self._shedding >= self._limits.max_connections:
            return
        self._shedding += 1
        counters = self._counters
        counters.rejected[503] = counters.rejected.get(503, 0) + 1
        try:
            conn = _Connection(self, stream)
            try:
                await conn._send_bytes(_error_bytes(503, self._server_name, retry_after=True))
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
                return
            await conn._linger_close()
        finally:
            self._shedding -= 1

    def begin_shutdown(self, *, drain_timeout: float = 30.0) -> None:
        """Stop accepting and let the connections finish.

        Idle keep-alive connections close now; a connection with a request in flight
        finishes it (its response carries ``Connection: close``) and then closes.
        :meth:`serve_tcp` returns when all connections are done, or cancels the rest
        after ``drain_timeout`` seconds. Later :meth:`serve_stream` calls get 503.
        Must be called from the Trio thread; safe to call more than once.
        """
        self._drain_deadline = min(self._drain_deadline, trio.current_time() + drain_timeout)
        self._shutting_down = True
        for accept_scope, connections_scope in self._serving:
            accept_scope.cancel()
            connections_scope.deadline = min(connections_scope.deadline, self._drain_deadline)
        for conn in self._open:
            if conn.idle_scope is not None:
                conn.idle_scope.cancel()

    def statistics(self) -> ServerStats:
        """A frozen snapshot of the counters."""
        c = self._counters
        r = c.rejected
        return ServerStats(
            connections_open=len(self._open),
            connections_total=c.connections_total,
            requests=c.requests,
            rejected_400=r.get(400, 0),
            rejected_431=r.get(431, 0),
            timeouts=c.timeouts,
            errors_500=c.errors_500,
            rejected_413=r.get(413, 0),
            rejected_414=r.get(414, 0),
            rejected_505=r.get(505, 0),
            rejected_503=r.get(503, 0),
        )


def bare_app(body: bytes) -> Handler:
    """A handler that answers every request with 200 and ``body``: the baseline the
    benchmarks compare the edge against."""
    headers = [("content-type", "application/octet-stream")]

    async def handler(req: Request) -> Response:
        return Response(200, list(headers), body)

    return handler
