"""What rule matching and shadowing read of a request (compiled with the cores).

The visitor fields that a match depends on in a request's headers (the memo key of
``edgesim.redirects.RuleSet.match``) and the memo itself (:class:`MatchMemo`), a URL's
decoded path, and the deploy file a path resolves to with pretty URLs (spec §2.9,
R2.20). Apart from the native binding in ``edgesim.redirects``, which re-exports them:
the edge core calls them for every request, and the origin core for every miss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final
from urllib.parse import unquote

__all__ = [
    "MISSING",
    "MatchMemo",
    "cookie_and_language",
    "memo_key",
    "request_path",
    "resolution_fields",
    "resolve_file",
    "visitor_fields",
]

# The function-rewrite prefix (spec R2.18 rule 3).
FUNCTIONS: Final = "/.netlify/functions/"

# Results a MatchMemo keeps; then it starts over (cheaper than LRU bookkeeping).
MATCH_MEMO: Final = 65536
# What MatchMemo.get and .lookup return for a request they hold no result of.
MISSING: Final = object()

# Extensions that are never given pretty-URL fallbacks (netlify-cli's asset list).
_ASSET_EXTENSIONS: Final = (
    ".html",
    ".htm",
    ".css",
    ".js",
    ".mjs",
    ".json",
    ".xml",
    ".txt",
    ".png",
    ".jpg",
    ".jpeg",
    ".gif",
    ".svg",
    ".webp",
    ".avif",
    ".ico",
    ".woff",
    ".woff2",
    ".ttf",
    ".otf",
    ".eot",
    ".mp4",
    ".webm",
    ".mp3",
    ".wav",
    ".pdf",
    ".zip",
    ".gz",
    ".map",
    ".wasm",
)


def visitor_fields(headers: list[tuple[str, str]] | None) -> tuple[str | None, str | None] | None:
    """What a match depends on in a request's headers: the first Cookie and
    Accept-Language values (names case-insensitive). None when a match must not be
    memoised: an ``nf_jwt`` cookie, whose roles depend on the time. With the URL, the
    country and the language, this is the memo key of :meth:`RuleSet.match`."""
    cl = cookie_and_language(headers) if headers else (None, None)
    cookie = cl[0]
    return cl if cookie is None or "nf_jwt" not in cookie else None


def memo_key(
    url: str, country: str | None, language: str | None, fields: tuple[str | None, str | None]
) -> tuple[str | None, ...]:
    """The memo key of a request whose ``visitor_fields`` are ``fields``."""
    return (url, country, language, fields[0], fields[1])


class MatchMemo:
    """The results of one rule set's matches (a rule set never changes). Compiled, so
    that the edge core finds a repeated request's result without an interpreted call.
    Two kinds of answers, each kept up to :data:`MATCH_MEMO`, then started over:

    * shared ones, by URL: no visitor condition decided them (``RuleSet.match_scoped``),
      so every visitor gets them (:meth:`shared`, :meth:`share`);
    * a visitor's own, by :func:`memo_key` (a match depends on nothing else of a request
      without an ``nf_jwt`` cookie): :meth:`get`, :meth:`put`.

    ``RuleSet.match`` fills it. A closed rule set clears it."""

    __slots__ = ("_results", "_shared")

    def __init__(self) -> None:
        self._results: dict[tuple[str | None, ...], Any] = {}
        self._shared: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self._results) + len(self._shared)

    def shared(self, url: str) -> Any:
        """The answer every visitor gets for ``url``, or :data:`MISSING`."""
        return self._shared.get(url, MISSING)

    def get(self, key: tuple[str | None, ...]) -> Any:
        """The visitor's own result kept under ``key``, or :data:`MISSING`."""
        return self._results.get(key, MISSING)

    def lookup(
        self, url: str, country: str | None, language: str | None, headers: list[tuple[str, str]]
    ) -> Any:
        """The result kept for this request, shared or its own, or :data:`MISSING` (also
        for a request whose own results are never memoised)."""
        hit = self._shared.get(url, MISSING)
        if hit is not MISSING:
            return hit
        fields = visitor_fields(headers)
        if fields is None:
            return MISSING
        return self._results.get(memo_key(url, country, language, fields), MISSING)

    def put(self, key: tuple[str | None, ...], result: Any) -> None:
        """Keep a visitor's own ``result`` under ``key``."""
        results = self._results
        if len(results) >= MATCH_MEMO:
            results.clear()
        results[key] = result

    def share(self, url: str, result: Any) -> None:
        """Keep ``result`` for ``url`` and every visitor."""
        shared = self._shared
        if len(shared) >= MATCH_MEMO:
            shared.clear()
        shared[url] = result

    def clear(self) -> None:
        self._results.clear()
        self._shared.clear()


def cookie_and_language(headers: list[tuple[str, str]]) -> tuple[str | None, str | None]:
    """The first Cookie and Accept-Language values (names case-insensitive) in one pass."""
    cookie = language = None
    for k, v in headers:
        lk = k.lower()
        if lk == "cookie":
            if cookie is None:
                cookie = v
                if language is not None:
                    break
        elif lk == "accept-language" and language is None:
            language = v
            if cookie is not None:
                break
    return cookie, language


def resolve_file(path: str, exists: Callable[[str], bool]) -> str | None:
    """The deploy file a request path resolves to, with pretty URLs, or None.

    ``path`` is a decoded site path (``/about``); ``exists`` answers for decoded file
    paths such as ``/about.html``. Order: the path itself; for ``/dir/``:
    ``/dir.html``, ``/dir.htm``, ``/dir/index.html``, ``/dir/index.htm`` (only the last
    two for ``/``); for other paths without an asset extension: ``.html``, ``.htm``,
    ``/index.html``, ``/index.htm``. Edge and origin both use this (R2.21).
    """
    if path != "/" and not path.endswith("/") and exists(path):
        return path
    if path.endswith("/"):
        stem = path[:-1]
        tries = [path + "index.html", path + "index.htm"]
        if stem:
            tries = [stem + ".html", stem + ".htm", *tries]
    elif path.lower().endswith(_ASSET_EXTENSIONS):
        return None
    else:
        tries = [path + ".html", path + ".htm", path + "/index.html", path + "/index.htm"]
    for t in tries:
        if exists(t):
            return t
    return None


def request_path(url: str) -> str:
    """The decoded path of a URL or origin-form target."""
    # Before the first "#", then before the first "?": found, not partitioned (each
    # partition builds a tuple and a copy; most URLs have neither and stay uncopied).
    end = url.find("#")
    if end < 0:
        end = len(url)
    q = url.find("?", 0, end)
    if q >= 0:
        end = q
    rest = url[:end] if end < len(url) else url
    if not rest.startswith("/"):
        scheme = rest.find("://")
        if scheme >= 0:  # a URL; "/go/https://x" is a path
            slash = rest.find("/", scheme + 3)
            rest = rest[slash:] if slash >= 0 else "/"
    if "%" not in rest:  # nothing to decode: skip unquote's interpreted call
        return rest or "/"
    return unquote(rest, errors="surrogateescape")


def resolution_fields(
    rules: Any,
    url: str,
    exists: Callable[[str], bool],
    match: Any,
    visitor: dict[str, Any],
    not_found: str | None = None,
) -> tuple[str, int, str, Any]:
    """The fields of ``edgesim.redirects.resolve(rules, url, exists=exists,
    match=match, **visitor)``, its :class:`~edgesim.redirects.Resolution` (action,
    status, target, match): rules, shadowing and pretty URLs applied to one request
    (spec R2.20). Here, compiled, for the origin core, which resolves every miss.
    ``not_found``: what ``exists`` makes the 404 page (``/404.html`` or ""), when the
    caller knows it already (else ``exists`` is asked)."""
    m = match if match is not None else (rules.match(url, **visitor) if rules is not None else None)
    if not_found is None:
        not_found = "/404.html" if exists("/404.html") else ""
    if m is not None and m.denied:
        return ("not_found", 404, not_found, m)
    f = resolve_file(request_path(url), exists)
    if m is None or (f is not None and not m.force):
        if f is not None:
            return ("file", 200, f, None)
        return ("not_found", 404, not_found, None)
    if m.is_redirect:
        return ("redirect", m.status, m.location, m)
    if m.is_proxy:
        return ("proxy", m.status, m.location, m)
    if m.to.startswith(FUNCTIONS):
        return ("function", m.status, m.location, m)
    target = resolve_file(request_path(m.to), exists)
    if target is not None:
        return ("rewrite", m.status, target, m)
    status = m.status if m.status >= 400 else 404
    return ("not_found", status, not_found, m)
