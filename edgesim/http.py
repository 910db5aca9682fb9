"""Lightweight HTTP values shared by the sans-IO cores, the Trio shells and the simulator.

The cores (``edgesim.node``, ``origin.core``) take and return these, never h11 events:
the capacity engine builds them directly, about 100,000 times per simulated second, so
they are plain slotted classes with no validation on construction. The Trio shells
convert h11 events to and from them at the socket boundary, where validation happens.

Header names are lower-case ``str``; values are ``str`` (ISO-8859-1, as on the wire).
A response body of ``None`` means "metadata only": ``size`` bytes that nobody stores
(the simulator's stores keep sizes, not bodies).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

Headers = list[tuple[str, str]]
# Headers kept unchanged for long (stored cache entries, an origin's per-file fields): a
# tuple of (str, str) pairs, which Python's cyclic garbage collector stops tracking once
# it has seen it, unlike a list that it rescans on every full collection.
FrozenHeaders = tuple[tuple[str, str], ...]

# Hop-by-hop headers (RFC 9110 §7.6.1): never stored, never forwarded.
HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    }
)


def get_header(headers: Headers | FrozenHeaders, name: str) -> str | None:
    """First value of ``name`` (lower-case), or None."""
    for k, v in headers:
        if k == name:
            return v
    return None


def get_all(headers: Headers, name: str) -> list[str]:
    """Every value of ``name`` (lower-case), in order."""
    return [v for k, v in headers if k == name]


def joined(headers: Headers, name: str) -> str | None:
    """All values of a list-valued header joined with ", " (RFC 9110 §5.3)."""
    # One pass with no list built: most fields have no line or one line (this runs per
    # stored response and per served request).
    out = None
    for k, v in headers:
        if k == name:
            out = v if out is None else f"{out}, {v}"
    return out


def without(headers: Headers, names: Iterable[str]) -> Headers:
    """``headers`` minus every header in ``names`` (lower-case)."""
    drop = set(names)
    return [(k, v) for k, v in headers if k not in drop]


# Fields a request needs end to end, whatever its Connection header lists: a client
# listing Host would strip it from what a proxy forwards (and an origin's answer for
# another host would be cached under this one).
NEVER_HOP_BY_HOP: Final = frozenset({"host"})


def connection_listed(value: str) -> frozenset[str]:
    """The field names a Connection header value lists as hop-by-hop (lower-case),
    without those in ``NEVER_HOP_BY_HOP``."""
    return frozenset(t.strip().lower() for t in value.split(",") if t.strip()) - NEVER_HOP_BY_HOP


def strip_hop_by_hop(headers: Headers) -> Headers:
    """Remove hop-by-hop headers, including those the Connection header names (but never
    Host, which a request needs end to end)."""
    named = HOP_BY_HOP
    for k, v in headers:
        if k == "connection":
            named = named | connection_listed(v)
    return [h for h in headers if h[0] not in named]


def replace(headers: Headers, name: str, value: str | None) -> Headers:
    """``headers`` with every ``name`` removed and, unless ``value`` is None, one
    ``name: value`` appended."""
    out = [(k, v) for k, v in headers if k != name]
    if value is not None:
        out.append((name, value))
    return out


# Request.host's parses, by Host value
_HOSTS: dict[str, str] = {}


class Request:
    """One HTTP request.

    Attributes:
        method: ``GET``, ``HEAD``, ``PUT``, ... (as sent; case-sensitive).
        target: the request-target as sent (``/path?query``, or absolute-form).
        headers: lower-case names with their values, in order.
        body: the request body (empty for most requests).
        http_version: ``"1.1"`` or ``"1.0"``.
    """

    __slots__ = (
        "_host",
        "_host_of",
        "_path",
        "_path_of",
        "body",
        "headers",
        "http_version",
        "method",
        "target",
    )

    def __init__(
        self,
        method: str,
        target: str,
        headers: Headers | None = None,
        body: bytes = b"",
        http_version: str = "1.1",
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers if headers is not None else []
        self.body = body
        self.http_version = http_version
        # host and path are derived once per Host value / target (memo keyed by identity,
        # so reassigning ``target`` or the Host field is still seen)
        self._host_of: str | None = None
        self._host = ""
        self._path_of: str | None = None
        self._path = "/"

    def header(self, name: str) -> str | None:
        return get_header(self.headers, name)

    def forwarded(self, headers: Headers) -> Request:
        """This request as HTTP/1.1 with ``headers`` instead (what a node sends
        upstream). It keeps what :attr:`host` and :attr:`path` derived so far: both
        are still checked against the Host value and the target by identity, so
        they are recomputed if ``headers`` carry another Host line."""
        r = Request(self.method, self.target, headers, self.body, "1.1")
        r._host_of = self._host_of
        r._host = self._host
        r._path_of = self._path_of
        r._path = self._path
        return r

    @property
    def host(self) -> str:
        """The Host header, lower-cased, without a port or trailing dot."""
        h = get_header(self.headers, "host") or ""
        if h is self._host_of:
            return self._host
        self._host_of = h
        # clients send few Host values, over and over: each is parsed once
        host = _HOSTS.get(h)
        if host is None:
            if h.startswith("["):
                end = h.find("]")
                host = h[: end + 1].lower() if end > 0 else h.lower()
            else:
                host = h.rsplit(":", 1)[0].rstrip(".").lower() if ":" in h else h.rstrip(".").lower()
            if len(_HOSTS) >= 4096:
                _HOSTS.clear()
            _HOSTS[h] = host
        self._host = host
        return host

    @property
    def path(self) -> str:
        """The path part of the target (no query)."""
        t = self.target
        if t is self._path_of:
            return self._path
        self._path_of = t
        if t[:1] != "/" and "://" in t:  # absolute-form; "/a?next=http://b" is origin-form
            rest = t.split("://", 1)[1]
            i = rest.find("/")
            q = rest.find("?")
            # the path starts at the first "/" of the authority's end ("http://a?x=/b": none)
            t = rest[i:] if i >= 0 and (q < 0 or i < q) else "/"
        # cut at the first "?" or "#" (most targets have neither: no copy then)
        if "?" in t:
            t = t.partition("?")[0]
        if "#" in t:
            t = t.partition("#")[0]
        path = self._path = t or "/"
        return path

    @property
    def query(self) -> str:
        return self.target.partition("?")[2].partition("#")[0]

    def __repr__(self) -> str:
        return f"Request({self.method} {self.target})"


class Response:
    """One HTTP response.

    Attributes:
        status: the status code.
        headers: lower-case names with their values, in order.
        body: the body, or None when only the size is modelled.
        size: body length in bytes (``len(body)`` when there is a body).
    """

    __slots__ = ("body", "headers", "size", "status")

    def __init__(
        self, status: int, headers: Headers | None = None, body: bytes | None = b"", size: int | None = None
    ) -> None:
        self.status = status
        self.headers = headers if headers is not None else []
        self.body = body
        self.size = size if size is not None else (len(body) if body is not None else 0)

    def header(self, name: str) -> str | None:
        return get_header(self.headers, name)

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.size} bytes)"
