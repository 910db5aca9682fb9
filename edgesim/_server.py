"""The Trio HTTP/1.1 server shell shared by the edge node and the origin.

Theory of operation
-------------------
One task per connection runs the loop of h11's ``examples/trio-server.py``: read until a
request is complete, hand it to the handler, write the answer in one ``send_all``, and
go round again. The loop differs from h11's in who parses, because h11 is deliberately
lenient and this server sits in front of caches, where a framing disagreement between
two parsers is a request-smuggling hole:

* **One strict parser owns every byte of a request.** The shell buffers raw bytes until
  the blank line that ends the head, and :func:`_check_head` parses it: bare LF line
  endings, obs-fold, whitespace in odd places, several Content-Length headers, any
  Transfer-Encoding but exactly ``chunked`` and the like are refused (400/413/414/431/
  505) before any handler sees the request (RFC 9112 lets a server reject them all;
  h11 accepts several). The body is read by length or by :class:`_ChunkScanner`, which
  enforces ``max_body`` while bytes arrive (a declared chunk of 2**64 bytes is refused
  at once) and finds where the message ends, so pipelined bytes stay buffered for the
  next head.
* **Responses are encoded here too**, with h11's rules for what a handler may send
  (token names, field values without CR/LF/CTL; a final status 200-599; else a 500).

The shell used to hand each validated head to a fresh ``h11.Connection`` as a second
opinion and let h11 encode the response. Measured on the edge benchmark, that cost
~40 us of a ~75 us request (h11 parses the head again and validates every header twice),
and h11 could never disagree in a way that mattered: the strict parser had already
decided the framing, and a second parser's opinion on framing is exactly what must not
exist. So the shell speaks HTTP/1.1 itself; h11 remains the client (``_client.py``) and
the reference the grammar here follows (h11's keep-alive rule, 100-continue rule and
header validation).

Invariants
----------
* A handler is only ever called with a complete, validated request whose body has been
  read in full (at most ``Limits.max_body`` bytes).
* An exception in one connection never reaches another connection or the listener.
* Every wait has a deadline: ``header_timeout`` (from the first byte of a head, or from
  accept for the first request), ``idle_timeout`` (between requests), ``body_timeout``
  (whole body), ``send_timeout`` (whole response) and the lingering close. The handler
  itself has none; its own I/O carries its deadlines.
* A handler may send 1xx interim responses before its final one through
  :func:`interim_sender` (102/103; ``100 Continue`` is the shell's own).
"""

from __future__ import annotations

import contextvars
import email.utils
import errno
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus

import trio

from edgesim.http import Request, Response, replace

__all__ = ["Handler", "HttpServer", "InterimSender", "Limits", "ServerStats", "bare_app", "interim_sender"]

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

# Seconds a request still arriving (head or body) when shutdown begins is given to
# arrive in full. Requests already being handled get the whole drain timeout; an idle
# connection none. Long enough for a request whose bytes are on the way, short enough
# that a stalled client (a slowloris, a stray partial head) cannot hold up an exit.
_SHUTDOWN_READ_GRACE = 1.0

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
#
# The head is decoded once as ISO-8859-1 (one char per byte, so every pattern below
# means exactly what it would on bytes) and checked as ``str``: the handler gets ``str``
# headers anyway, and one decode of the whole head is cheaper than one per header.

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN_RE = re.compile(_TOKEN)
_TOKEN_B_RE = re.compile(_TOKEN.encode("ascii"))
# The request-line in one pass: method SP request-target SP HTTP-version. The target is
# visible ASCII only (RFC 9112 §3.2; no fragments, RFC 3986 §3.5). Anything that fails
# goes through _diagnose_request_line for the precise status and reason.
_REQUEST_LINE_RE = re.compile(
    _TOKEN_RE.pattern.join("()") + r" ([\x21-\x22\x24-\x7e]+) HTTP/([0-9])\.([0-9])"
)
_TARGET_RE = re.compile(r"[\x21-\x22\x24-\x7e]+")
_VERSION_RE = re.compile(r"HTTP/([0-9])\.([0-9])")
# A field line in one pass (RFC 9112 §5): token ":" OWS value OWS, where the value has
# no CTL except HTAB (RFC 9110 §5.5; obs-text 0x80-0xff allowed). The lazy value plus
# the trailing [ \t]* strips OWS the way h11 does. Failures go to _diagnose_field_line.
_FIELD_LINE_RE = re.compile(rf"({_TOKEN}):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*?)[ \t]*")
_BAD_VALUE_CHAR_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_BARE_LF_RE = re.compile(rb"(?<!\r)\n")
_DIGITS_RE = re.compile(r"[0-9]+")
# uri-host [ ":" port ] (RFC 9110 §7.2; RFC 3986 §3.2.2): an IP-literal in brackets
# or a reg-name / IPv4address, then an optional all-digit port. Empty is allowed (an
# authority without a host).
_HOST_RE = re.compile(r"(?:\[[0-9A-Za-z:._~%!$&'()*+,;=-]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)(?::[0-9]*)?")
# chunk-size [ chunk-ext ] (RFC 9112 §7.1.1); no trailing whitespace (h11 allows it).
_CHUNK_LINE_RE = re.compile(rb"([0-9A-Fa-f]+)(;[^\x00-\x08\x0a-\x1f\x7f]*)?")
_TRAILER_NAME_RE = re.compile(_TOKEN.encode("ascii"))
# (also the origin client's check of response fields: edgesim._client)
BAD_FIELD_VALUE_BYTES = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# What a handler's response field line must look like once written as "name: value"
# (what h11's send() enforced: a token name, a field-value without CTLs, CR, LF or
# leading/trailing whitespace, RFC 9110 §5.5). Anything else is a 500: a value with
# CRLF in it would be response splitting.
_OUT_FIELD_RE = re.compile(
    rf"{_TOKEN}: (?:[\x21-\x7e\x80-\xff](?:[ \t\x21-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?"
)

_REASONS = {int(s): s.phrase for s in HTTPStatus}

# Response headers the shell owns (framing and connection management); a handler's
# values are dropped (Content-Length is kept for HEAD/304, see _encode_response).
_SHELL_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})

# The states of a connection, for attributing a deadline to what was being waited for
# (one CancelScope serves all of them, see _Connection).
_IDLE, _HEAD, _BODY, _HANDLER, _SEND = range(5)


class _Reject(Exception):
    """Internal: stop this connection, answering ``status`` first unless it is 0."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(slots=True)
class _Head:
    """A validated request head: the request fields plus what frames its body."""

    method: str
    target: str
    http_version: str
    headers: list[tuple[str, str]]
    content_length: int | None
    chunked: bool
    # The client asked to close (``Connection: close``) or can't keep alive (1.0):
    # h11's rule (``_keep_alive``); we don't implement 1.0 keep-alive either.
    close: bool
    expect_continue: bool


def _authority(target: str) -> str:
    """The authority of an absolute-form ``target`` (up to its path, query or fragment)."""
    rest = target.split("://", 1)[1]
    end = len(rest)
    for c in "/?#":
        i = rest.find(c)
        if 0 <= i < end:
            end = i
    return rest[:end]


def _diagnose_request_line(line: str) -> _Reject:
    """The precise rejection for a request-line that failed _REQUEST_LINE_RE."""
    parts = line.split(" ")
    if len(parts) != 3:
        # Covers HTTP/0.9 "GET /" (no version) and extra or missing spaces.
        return _Reject(400, "malformed request-line")
    method, target, _version = parts
    if not _TOKEN_RE.fullmatch(method):
        return _Reject(400, "invalid method")
    if not _TARGET_RE.fullmatch(target):
        return _Reject(400, "invalid request-target")
    # "http/1.1", "HTTP/1", "HTTP/1.1x": HTTP-name is case-sensitive (RFC 9112 §2.3).
    return _Reject(400, "malformed HTTP-version")


def _diagnose_field_line(line: str) -> _Reject:
    """The precise rejection for a field line that failed _FIELD_LINE_RE."""
    if line[:1] in (" ", "\t"):
        # obs-fold: RFC 9112 §5.2 lets a server reject it with 400; folding rules
        # differ between parsers, so accepting it invites smuggling.
        return _Reject(400, "obsolete line folding")
    name, colon, _ = line.partition(":")
    if not colon:
        return _Reject(400, "header line without colon")
    if not _TOKEN_RE.fullmatch(name):
        # Includes whitespace between name and colon: RFC 9112 §5.1 says MUST 400.
        return _Reject(400, "invalid header name")
    # NUL, bare CR and other controls (RFC 9110 §5.5).
    return _Reject(400, "control character in header value")


def _check_head(head: str, limits: Limits) -> _Head:
    """Strictly parse and validate a complete request head (without its final CRLF CRLF).

    ``head`` is the raw head decoded as ISO-8859-1. The caller has already rejected bare
    LF. This is the only parser of request heads: everything h11 tolerates but another
    parser on the path might read differently is refused with a definite status.

    Raises:
        _Reject: with 400, 413, 414, 431 or 505.
    """
    lines = head.split("\r\n")
    request_line = lines[0]
    if len(request_line) > limits.max_request_line:
        # RFC 9112 §3: a target longer than the server wishes to parse gets 414.
        raise _Reject(414, "request-line too long")
    m = _REQUEST_LINE_RE.fullmatch(request_line)
    if m is None:
        raise _diagnose_request_line(request_line)
    method, target, major, minor = m.groups()
    http_version = major + "." + minor
    if http_version != "1.1" and http_version != "1.0":
        raise _Reject(505, "unsupported HTTP version")
    # Request-target forms (RFC 9112 §3.2): origin-form, absolute-form, and the
    # authority- and asterisk-forms only with the methods that use them.
    if not (
        target[0] == "/"
        or ("://" in target and target.split("://", 1)[0].isalpha())
        or (method == "CONNECT" and "/" not in target)
        or (method == "OPTIONS" and target == "*")
    ):
        raise _Reject(400, "invalid request-target form")
    if target[0] != "/" and "://" in target:
        # absolute-form (RFC 9112 §3.2.2): an http(s) URI whose authority is a valid
        # host[:port] without userinfo (RFC 9110 §4.2.4: a recipient treats it as an error)
        scheme = target.partition("://")[0]
        if scheme.lower() not in ("http", "https"):
            raise _Reject(400, "absolute-form target must be an http or https URI")
        if not _HOST_RE.fullmatch(_authority(target)):  # no "@": userinfo is refused
            raise _Reject(400, "invalid authority in absolute-form target")

    n_fields = len(lines) - 1
    if n_fields > limits.max_headers:
        raise _Reject(431, "too many header fields")
    # Field lines plus their CRLFs: the head minus the request-line and its CRLF.
    if len(head) - len(request_line) > limits.max_header_bytes:
        raise _Reject(431, "header block too large")

    headers: list[tuple[str, str]] = []
    content_lengths: list[str] = []
    transfer_encodings: list[str] = []
    hosts = 0
    close = http_version == "1.0"
    expect_continue = False
    match_field = _FIELD_LINE_RE.fullmatch
    for line in lines[1:]:
        fm = match_field(line)
        if fm is None:
            raise _diagnose_field_line(line)
        name = fm.group(1).lower()
        value = fm.group(2)
        headers.append((name, value))
        # Only a handful of names matter for framing; one dict-free chain of compares
        # is cheaper than anything cleverer for the usual 1-20 fields.
        if name == "host":
            hosts += 1
            if not _HOST_RE.fullmatch(value):
                raise _Reject(400, "invalid Host")
        elif name == "content-length":
            content_lengths.append(value)
        elif name == "transfer-encoding":
            transfer_encodings.append(value)
        elif name == "connection":
            if any(t.strip().lower() == "close" for t in value.split(",")):
                close = True
        elif name == "expect":
            # h11's rule: only a 1.1 client waits for 100 Continue (RFC 9110 §10.1.1).
            expect_continue = http_version == "1.1" and value.lower() == "100-continue"

    # RFC 9112 §3.2: a 1.1 request must carry exactly one Host; more than one is 400
    # for any version.
    if hosts > 1 or (hosts == 0 and http_version == "1.1"):
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
        if http_version == "1.0":
            # RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means the framing is faulty.
            raise _Reject(400, "Transfer-Encoding in HTTP/1.0")
        if content_length is not None:
            # RFC 9112 §6.3 item 3: both at once is the classic smuggling vector; a
            # server "ought to" treat it as an error and we do.
            raise _Reject(400, "both Content-Length and Transfer-Encoding")
        if len(transfer_encodings) > 1 or transfer_encodings[0].lower() != "chunked":
            # "gzip" (chunked not final: RFC 9112 §6.3 item 4 says MUST 400),
            # "chunked, chunked" (chunked twice is forbidden, §7) and codings we don't
            # implement: we only take exactly one "chunked".
            raise _Reject(400, "unsupported Transfer-Encoding")
        chunked = True

    if content_length is not None and content_length > limits.max_body:
        raise _Reject(413, "Content-Length exceeds max_body")
    return _Head(method, target, http_version, headers, content_length, chunked, close, expect_continue)


class _ChunkScanner:
    """Strict chunked-framing parser (RFC 9112 §7.1): de-chunks into ``body``.

    Refuses what h11 would accept: more than 16 hex digits of chunk size, trailing
    whitespace after the size, control bytes in extensions and bare LF in trailers. It
    counts data against ``max_body`` when a chunk is declared (413 before reading it),
    and reports where the message ends so pipelined bytes stay with the connection.
    Trailer fields are checked and dropped (RFC 9110 §6.5.1 lets a recipient discard
    them; handlers only see the content).
    """

    _SIZE, _DATA, _DATA_CRLF, _TRAILER, _DONE = range(5)

    def __init__(self, max_body: int, max_trailer_bytes: int) -> None:
        self.body = bytearray()
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

    def feed(self, data: bytes | bytearray) -> int:
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
                self.body += data[i : i + take]
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
            if not colon or not _TRAILER_NAME_RE.fullmatch(name) or BAD_FIELD_VALUE_BYTES.search(value):
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
    """A complete ``Connection: close`` error response. ``head_only`` omits the body
    (answer to HEAD) but keeps its Content-Length."""
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


def _interim_bytes(status: int, headers: list[tuple[str, str]]) -> bytes:
    """An encoded 1xx response (RFC 9110 §15.2).

    Raises:
        ValueError: not a 1xx status we may relay, or an invalid field line.
    """
    # 100 is the shell's own business (Expect), 101 would switch protocols.
    if not 102 <= status < 200:
        raise ValueError(f"not a relayable interim status: {status}")
    parts = [f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n"]
    for name, value in headers:
        line = f"{name.lower()}: {value}"
        if not _OUT_FIELD_RE.fullmatch(line):
            raise ValueError(f"invalid interim header {name!r}")
        parts.append(line)
        parts.append("\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("latin-1")


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


InterimSender = Callable[[int, list[tuple[str, str]]], Awaitable[bool]]

# The connection serving the current task's request; set once per connection task, so
# a handler (and only code running inside one) can find where 1xx responses go.
_current_connection: contextvars.ContextVar[_Connection | None] = contextvars.ContextVar(
    "edgesim_server_connection", default=None
)


def interim_sender() -> InterimSender | None:
    """From inside a handler: a coroutine function that sends a 1xx response (102-199)
    to the client of the request being handled, or None outside a handler.

    The sender is bound to that one request: once its final response is on the way, or
    for an HTTP/1.0 client (RFC 9110 §15.2: a server must not send it 1xx), calls are
    ignored. ``await send(status, headers)`` returns whether the response was written.
    It never raises for the client's failures (a broken or slow client makes the
    connection close after the handler returns), only ``ValueError`` for an invalid
    status or header.
    """
    conn = _current_connection.get()
    if conn is None or conn._phase != _HANDLER:
        return None
    seq = conn._seq

    async def send(status: int, headers: list[tuple[str, str]]) -> bool:
        return await conn._send_interim(seq, status, headers)

    return send


class _Connection:
    """One client connection: the read/answer loop and its buffer.

    Deadlines: one ``CancelScope`` covers the whole loop and its ``deadline`` is moved
    in place as the connection goes idle -> head -> body -> handler (no deadline) ->
    send. Entering a scope per wait cost ~5 us each (three per request), a third of the
    shell's budget; assigning a deadline costs almost nothing. A cancelled scope stays
    cancelled, which is fine because every deadline that fires ends the connection;
    ``_phase`` says which one fired. Shutdown cancels the scope only while idle, and
    shortens it to the shutdown's read grace while a request arrives.
    """

    def __init__(self, server: HttpServer, stream: trio.abc.Stream) -> None:
        self._server = server
        self._stream = stream
        self._limits = server._limits
        self._buf = bytearray()
        self._accepted_at = trio.current_time()
        self._scope = trio.CancelScope()
        self._phase = _IDLE
        self._first = True
        # Numbers requests, so an interim sender can tell its request is over.
        self._seq = 0
        self._http10 = False
        # Set when a write from _send_interim failed or timed out: the stream may hold
        # half a response, so nothing more may be written.
        self._broken = False
        self._sending = False

    def begin_shutdown(self, read_deadline: float) -> None:
        """For shutdown: end the connection now if it is waiting for a request; give a
        request still arriving (head or body) until ``read_deadline``."""
        phase = self._phase
        if phase == _IDLE:
            self._scope.cancel()
        elif phase in (_HEAD, _BODY):
            self._scope.deadline = min(self._scope.deadline, read_deadline)

    # -- reading ---------------------------------------------------------------------

    async def _read_head(self) -> bytes | None:
        """Wait for a complete request head; return it without its blank line.

        Returns None when the connection should close quietly (clean EOF between
        requests, shutdown). Bytes after the head stay in ``self._buf``.

        Raises:
            _Reject: malformed or oversized head (400/414/431).
        """
        lim = self._limits
        scope = self._scope
        buf = self._buf
        server = self._server
        # RFC 9112 §2.2: ignore empty lines before the request-line (some clients send
        # a stray CRLF after a POST body). A connection holding nothing else is idle:
        # shutdown closes it at once and idle_timeout applies, not header_timeout.
        while buf.startswith(b"\r\n"):
            del buf[:2]
        if not buf or buf == b"\r":
            if server._shutting_down:
                return None
            self._phase = _IDLE
            # The first request's wait counts against header_timeout from accept
            # (slowloris: a connection that never speaks); later ones get idle_timeout.
            if self._first:
                scope.deadline = self._accepted_at + lim.header_timeout
            else:
                scope.deadline = trio.current_time() + lim.idle_timeout
            while True:
                data = await self._stream.receive_some(_RECEIVE_SIZE)
                if not data:
                    return None
                buf += data
                while buf.startswith(b"\r\n"):
                    del buf[:2]
                if buf and buf != b"\r":
                    break
            self._phase = _HEAD
            if not self._first:
                scope.deadline = min(trio.current_time() + lim.header_timeout, server._read_deadline)
        else:
            # Pipelined bytes: the head began arriving with the previous request.
            self._phase = _HEAD
            scope.deadline = min(trio.current_time() + lim.header_timeout, server._read_deadline)

        scanned = 0
        max_head = lim.max_request_line + 2 + lim.max_header_bytes + 2
        while True:
            # (empty lines again: a CRLF may arrive split across reads)
            while buf.startswith(b"\r\n"):
                del buf[:2]
                scanned = 0
            end = buf.find(b"\r\n\r\n")
            region = end if end >= 0 else len(buf)
            # h11 and others accept bare LF as a line ending (RFC 9112 §2.2 allows
            # it, but a proxy that doesn't would see different lines): refuse it, and
            # check as bytes arrive, since a head ending in LF LF never shows CRLF CRLF.
            if _BARE_LF_RE.search(buf, max(0, scanned - 1), region):
                raise _Reject(400, "bare LF in request head")
            scanned = region
            if buf and not _TOKEN_B_RE.match(buf, 0, 1):
                # A method starts with a tchar; anything else (a TLS ClientHello,
                # binary junk) is refused now rather than at the header timeout,
                # as h11's is_next_line_obviously_invalid_request_line does.
                raise _Reject(400, "not an HTTP request")
            line_end = buf.find(b"\r\n", 0, lim.max_request_line + 2)
            if line_end < 0 and len(buf) > lim.max_request_line:
                raise _Reject(414, "request-line too long")
            if end >= 0:
                head = bytes(buf[:end])
                del buf[: end + 4]
                return head
            if len(buf) > max_head:
                raise _Reject(431, "request head too large")
            data = await self._stream.receive_some(_RECEIVE_SIZE)
            if not data:
                # The client gave up mid-head; nobody is left to answer.
                raise _Reject(0, "EOF inside request head")
            buf += data

    async def _receive_body_bytes(self, info: _Head, got_body: bool) -> None:
        """Append one read to the buffer (after 100 Continue if the client waits)."""
        if info.expect_continue and not got_body and not self._buf:
            # RFC 9110 §10.1.1: say "go on" rather than make the client wait out its
            # own timer. Written under the body deadline; at most once per request.
            info.expect_continue = False
            await self._stream.send_all(b"HTTP/1.1 100 Continue\r\n\r\n")
        data = await self._stream.receive_some(_RECEIVE_SIZE)
        if not data:
            raise _Reject(0, "EOF inside request body")
        self._buf += data

    async def _read_body(self, info: _Head) -> bytes:
        """Read the body framed by ``info``; pipelined bytes after it stay buffered.

        Raises:
            _Reject: 400 (bad chunked framing), 413 (too large), or 0 when the client
                vanished.
        """
        buf = self._buf
        if info.chunked:
            scanner = _ChunkScanner(self._limits.max_body, self._limits.max_header_bytes)
            while True:
                used = scanner.feed(buf)
                del buf[:used]
                if scanner.done:
                    return bytes(scanner.body)
                await self._receive_body_bytes(info, bool(used))
        n = info.content_length or 0
        # _check_head capped n at max_body, so this buffers at most max_body + one read.
        while len(buf) < n:
            await self._receive_body_bytes(info, bool(buf))
        body = bytes(buf[:n])
        del buf[:n]
        return body

    # -- writing ---------------------------------------------------------------------

    async def _send_bytes(self, data: bytes) -> None:
        with trio.fail_after(self._limits.send_timeout):
            await self._stream.send_all(data)

    async def _send_interim(self, seq: int, status: int, headers: list[tuple[str, str]]) -> bool:
        """Write a 1xx response for request ``seq`` if it is still being handled."""
        data = _interim_bytes(status, headers)  # ValueError before any state changes
        if seq != self._seq or self._phase != _HANDLER or self._http10 or self._broken or self._sending:
            return False
        self._sending = True
        try:
            # Its own deadline: the handler runs without one, and a client too slow to
            # take a few hundred bytes must not cancel the handler's origin fetch.
            with trio.move_on_after(self._limits.send_timeout):
                await self._stream.send_all(data)
                return True
            self._broken = True
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._broken = True
            return False
        finally:
            self._sending = False

    def _encode_response(self, head_request: bool, resp: Response, close: bool) -> tuple[bytes, bool]:
        """Encode ``resp``, fixing up framing and adding defaults; also return whether
        to close after it.

        Raises:
            ValueError, TypeError, UnicodeEncodeError: the handler's response can't be
                sent (the caller answers 500).
        """
        status = resp.status
        if not 200 <= status < 600:
            # Final responses only; 1xx go through interim_sender(). RFC 9110 §15:
            # codes above 599 are invalid (h11 would send up to 999).
            raise ValueError(f"invalid final status {status!r}")
        parts = [f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n"]
        have_date = have_server = False
        handler_cl: str | None = None
        check = _OUT_FIELD_RE.fullmatch
        for name, value in resp.headers:
            lname = name.lower()
            if lname in _SHELL_HEADERS:
                # The shell owns framing and connection management.
                if lname == "content-length":
                    handler_cl = value
                elif lname == "connection" and "close" in value.lower():
                    close = True
                continue
            if lname == "date":
                have_date = True
            elif lname == "server":
                have_server = True
            line = f"{lname}: {value}"
            if not check(line):
                raise ValueError(f"invalid response header {name!r}")
            parts.append(line)
            parts.append("\r\n")
        if not have_date:
            parts.append(f"date: {_http_date()}\r\n")
        if not have_server:
            parts.append(self._server._server_line)
        body = resp.body if resp.body is not None else b""
        no_body = head_request or status == 204 or status == 304
        if status == 204:
            pass  # RFC 9110 §8.6: MUST NOT send Content-Length
        elif status == 304 and handler_cl is None:
            # RFC 9110 §8.6: a 304 may carry Content-Length only as the 200's length;
            # a handler that gave none (a 304 built from a cache entry) sends none.
            pass
        elif head_request and handler_cl is None and resp.body == b"" and resp.size == 0:
            # A HEAD answered with neither a length nor a body (an origin's chunked
            # answer to HEAD, relayed): the GET's length is unknown here, and
            # Content-Length: 0 would claim an empty body. RFC 9110 §9.3.2 lets it go.
            pass
        elif no_body:
            # RFC 9110 §9.3.2 / §15.4.5: the length the GET would have had. Keep the
            # handler's value (if it is one); else the modelled size.
            cl = handler_cl if handler_cl is not None else str(resp.size)
            if not _DIGITS_RE.fullmatch(cl):
                raise ValueError(f"invalid Content-Length {cl!r}")
            parts.append(f"content-length: {cl}\r\n")
        else:
            # The body we send decides; a handler's differing value would break framing.
            parts.append(f"content-length: {len(body)}\r\n")
        if close:
            parts.append("connection: close\r\n")
        parts.append("\r\n")
        out = "".join(parts).encode("latin-1")
        if body and not no_body:
            out += body
        return out, close

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

    def _reject_bytes(self, exc: _Reject) -> bytes | None:
        """Count a rejection; the error response to send, or None (status 0)."""
        log.debug("rejecting request: %d %s", exc.status, exc.reason)
        if not exc.status:
            return None
        counters = self._server._counters
        counters.rejected[exc.status] = counters.rejected.get(exc.status, 0) + 1
        return _error_bytes(exc.status, self._server._server_name)

    # -- the loop --------------------------------------------------------------------

    async def run(self) -> None:
        """Serve requests until the connection closes. Never raises _Reject."""
        _current_connection.set(self)
        scope = self._scope
        with scope:
            final = await self._serve_requests()
        if scope.cancelled_caught:
            # A deadline (or shutdown) fired; what we were waiting for decides.
            phase = self._phase
            counters = self._server._counters
            if phase == _IDLE:
                # Quiet close; a first request that never came counts as a timeout
                # (unless it is shutdown that closed us).
                if self._first and not self._server._shutting_down:
                    counters.timeouts += 1
                return
            if phase == _SEND:
                return  # the client stopped reading
            if self._server._shutting_down:
                # A request still arriving when the server stops gets the shutdown's
                # short grace (HttpServer.begin_shutdown); after it the connection
                # closes unanswered, as an idle one does: the server is going away,
                # and lingering for an answer would only delay that.
                return
            counters.timeouts += 1
            final = self._reject_bytes(_Reject(408, "header timeout" if phase == _HEAD else "body timeout"))
        if final is not None:
            try:
                await self._send_bytes(final)
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
                return
            await self._linger_close()

    async def _serve_requests(self) -> bytes | None:
        """The keep-alive loop, inside the connection's scope.

        Returns:
            None to close quietly, or the bytes of a last response (an error, or a
            response after which the connection closes) for :meth:`run` to send
            before a lingering close.
        """
        server = self._server
        scope = self._scope
        lim = self._limits
        while True:
            try:
                raw = await self._read_head()
                if raw is None:
                    return None
                self._first = False
                info = _check_head(raw.decode("latin-1"), lim)
                if info.content_length or info.chunked:
                    self._phase = _BODY
                    scope.deadline = min(trio.current_time() + lim.body_timeout, server._read_deadline)
                    body = await self._read_body(info)
                else:
                    body = b""
            except _Reject as exc:
                return self._reject_bytes(exc)

            self._phase = _HANDLER
            scope.deadline = math.inf
            if scope.cancel_called:
                # The deadline (or shutdown) fired in the same instant as the last
                # bytes arrived: the scope can't be revived, and a handler must not be
                # cancelled half-way, so treat the request as one that came too late.
                return None
            server._counters.requests += 1
            self._seq += 1
            self._http10 = info.http_version == "1.0"
            headers = info.headers
            target = info.target
            if target[0] != "/" and "://" in target:
                # RFC 9112 §3.2.2: with an absolute-form target the server MUST ignore
                # Host and use the target's authority. Handlers key caches and sites
                # on Host, so make the two agree rather than let them be played off.
                # (Origin-form targets may carry "://" in their path or query.)
                headers = replace(headers, "host", _authority(target))
            req = Request(info.method, target, headers, body, info.http_version)
            head_request = info.method == "HEAD"
            try:
                resp = await server._handler(req)
                data, close = self._encode_response(head_request, resp, info.close or server._shutting_down)
            except Exception:
                # Isolation: a handler bug costs this connection only.
                log.exception("handler failed for %s %s", req.method, req.target)
                server._counters.errors_500 += 1
                self._seq += 1  # the request is over for interim senders
                if self._broken:
                    return None
                return _error_bytes(500, server._server_name, head_only=head_request)
            self._seq += 1
            if self._broken:
                return None  # an interim write failed half-way: the stream is unusable
            if close and self._buf:
                # Pipelined bytes are waiting unread: close lingering (run), lest the
                # kernel answer them with a RST that destroys this response.
                return data
            self._phase = _SEND
            scope.deadline = trio.current_time() + lim.send_timeout
            # One write per response: head and body joined above.
            await self._stream.send_all(data)
            if close:
                # Nothing unread: close at once (as nginx does after a whole request),
                # rather than wait for the client's EOF, which during shutdown would
                # hold the exit up to the linger bound.
                return None


class HttpServer:
    """An HTTP/1.1 server that hands validated requests to ``handler``.

    The handler gets a :class:`~edgesim.http.Request` whose body has been read in full
    and returns a :class:`~edgesim.http.Response`. The shell then:

    * sends ``Content-Length: len(body)`` (a body of ``None`` is sent as empty), replacing
      any Content-Length the handler set; never chunked;
    * for ``HEAD`` and ``304`` sends no body and keeps the handler's Content-Length, or
      else uses ``Response.size`` (so a metadata-only response advertises its size);
      a ``HEAD`` answered with neither (empty body, size 0), a 304 without one and a
      ``204`` send no Content-Length;
    * drops the handler's ``Transfer-Encoding``, ``Connection`` and ``Keep-Alive`` (a
      handler's ``Connection: close`` is honoured by closing after the response);
    * adds ``Date`` and ``Server`` when missing.

    A handler exception, or a response that can't be encoded (bad header characters, a
    status outside 200-599), becomes a 500 and closes that connection. A handler sends 1xx
    interim responses with :func:`interim_sender`.

    Args:
        handler: ``async (Request) -> Response``.
        limits: resource limits; see :class:`Limits`.
        server_name: value of the ``Server`` header the shell adds.
    """

    def __init__(self, handler: Handler, *, limits: Limits = Limits(), server_name: str = "edgesim") -> None:
        self._handler = handler
        self._limits = limits
        self._server_name = server_name
        self._server_line = f"server: {server_name}\r\n"
        self._counters = _Counters()
        self._open: set[_Connection] = set()
        self._shedding = 0
        self._shutting_down = False
        self._drain_deadline = float("inf")
        # Once shutting down: when requests still arriving (head or body) are given up.
        self._read_deadline = math.inf
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

    def begin_shutdown(
        self, *, drain_timeout: float = 30.0, read_grace: float = _SHUTDOWN_READ_GRACE
    ) -> None:
        """Stop accepting and let the connections finish.

        Idle keep-alive connections (including a new one that has sent nothing yet)
        close now. A request whose head or body is still arriving gets ``read_grace``
        seconds to arrive in full, else its connection closes unanswered. A request
        being handled finishes (its response carries ``Connection: close``) and then
        its connection closes. :meth:`serve_tcp` returns when all connections are done,
        or cancels the rest after ``drain_timeout`` seconds. Later
        :meth:`serve_stream` calls get 503. Must be called from the Trio thread; safe to
        call more than once.
        """
        now = trio.current_time()
        self._drain_deadline = min(self._drain_deadline, now + drain_timeout)
        self._read_deadline = min(self._read_deadline, now + read_grace, self._drain_deadline)
        self._shutting_down = True
        for accept_scope, connections_scope in self._serving:
            accept_scope.cancel()
            connections_scope.deadline = min(connections_scope.deadline, self._drain_deadline)
        for conn in self._open:
            conn.begin_shutdown(self._read_deadline)

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
