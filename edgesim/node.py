"""The edge node core: one request plus ``now`` in, a decision out.

Theory of operation
-------------------
An :class:`EdgeNode` is an h11-style state machine with no I/O. A driver (the Trio shell
in ``edgesim.serve``, or the capacity engine in virtual time) calls :meth:`EdgeNode.handle`
with a :class:`~edgesim.http.Request` and the current time and gets a *step* back:

* :class:`Reply` -- send this response; if ``background`` is set, also carry out that
  fetch after replying (stale-while-revalidate).
* :class:`Fetch` -- send ``fetch.request`` to the origin and report the outcome with
  :meth:`EdgeNode.complete`, which returns the next step for the same client.
* :class:`Join` -- another client's fetch for the same cache key is in flight (request
  collapsing): wait until that fetch completes, then call :meth:`EdgeNode.joined`.

All policy lives here and in ``edgesim.cache``: redirect rules (native matcher, one
compiled set per site and deploy), deploy tracking from the origin's manifest and deploy
header, cache keys, freshness and revalidation, collapsing, stale serving, purges and
the response headers (``Age``, ``X-Cache``, ``Via``). The drivers only move bytes and
time, so live and simulated runs cannot drift apart.

Invariants:

* The deploy id is part of every cache key. A fill is stored under the deploy that
  produced it (the origin's deploy header), so a fill still in flight during a deploy
  cannot be served under the new deploy.
* A request is sent to the origin at most once per step; the node never retries.
* One origin fetch per cache key at a time: concurrent misses join it.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs

from edgesim._reqfields import MISSING, memo_key, request_path, resolve_file, visitor_fields
from edgesim.cache import FRESH, CacheEntry, HttpCache
from edgesim.http import (
    HOP_BY_HOP,
    FrozenHeaders,
    Headers,
    Request,
    Response,
    connection_listed,
    get_header,
    strip_hop_by_hop,
)
from edgesim.redirects import RuleSet

if TYPE_CHECKING:
    from edgesim.shadow import Shadow

# The origin's header naming the deploy that produced a response (origin/core.py).
DEPLOY_HEADER: Final = "x-edgesim-deploy"
# Reserved paths. The origin serves the manifest; the edge answers its own admin API.
MANIFEST_PATH: Final = "/.edgesim/manifest"
EDGE_ADMIN_PREFIX: Final = "/.edgesim/edge/"
# Header telling our origin that the edge already applied a rewrite (no second pass of
# the rules, spec R2.22); other origins ignore it.
REWRITE_HEADER: Final = "x-edgesim-rewrite"
# Visitor country, as set by a geo-IP front end or the load generator.
COUNTRY_HEADER: Final = "x-country"

_SAFE: Final = frozenset({"GET", "HEAD"})
_CACHEABLE_METHODS: Final = _SAFE
# request fields an edge never forwards as they are (Via is re-added with the node).
# Expect too: the server shell answers 100-continue itself and reads the whole body
# before the node sees the request, so the expectation was met at this hop; forwarded,
# it would make the origin send a 100 (or a 417) for nothing (RFC 9110 §10.1.1).
_NOT_FORWARDED: Final = HOP_BY_HOP | {"via", "expect"}
_NOT_FORWARDED_SAFE: Final = _NOT_FORWARDED | {"if-none-match", "if-modified-since"}

# Outcomes, used for X-Cache and metrics.
HIT: Final = "HIT"
MISS: Final = "MISS"
STALE: Final = "STALE"
REVALIDATED: Final = "REVALIDATED"
REDIRECT: Final = "REDIRECT"
PASS: Final = "PASS"
ERROR: Final = "ERROR"


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    """Settings of one edge node.

    Attributes:
        name: the node's name, used in ``Via``.
        manifests: fetch each site's manifest from the origin (our origin serves one);
            off for an origin without manifests.
        rules: host -> compiled rules given by the operator (``--rules HOST=FILE``); they
            win over manifest rules, and no shadowing applies to them.
        shared_rules: nodes given the same dict share the rule sets they compile from
            manifests (per host, the latest deploy's set, and with it its match memo: a
            shield then finds the match of a request an edge forwarded already made).
            None (default): each node compiles its own. The capacity engine gives the
            nodes of a run one dict.
        shield: a regional tier behind edge nodes. Its requests come from edges, which
            applied the site's rules already, so it never applies them again: a
            rewrite's target would otherwise be rewritten or redirected a second time
            by a forced rule (rewrites are not recursive, spec R2.22), and for any other
            request a second match finds what the edge found (nothing that stays at a
            node: no match, a file shadowing the rule, a proxy or function rewrite).
    """

    name: str = "edge"
    manifests: bool = True
    rules: dict[str, RuleSet] = field(default_factory=dict)
    shared_rules: dict[str, tuple[str, tuple[tuple[str, str], ...], RuleSet]] | None = None
    shield: bool = False


class Reply:
    """Send ``response``; then, if ``background`` is set, carry out that fetch too."""

    __slots__ = ("background", "outcome", "response")

    def __init__(self, response: Response, outcome: str, background: Fetch | None = None) -> None:
        self.response = response
        self.outcome = outcome
        self.background = background


class Fetch:
    """An origin request the driver must carry out, then report via ``complete``.

    ``token`` is free for the driver (the Trio shell keeps a ``trio.Event`` there for
    joined clients; the capacity engine keeps its waiter list).
    """

    __slots__ = (
        "client",
        "done",
        "error",
        "key",
        "kind",
        "lookup",
        "override",
        "request",
        "response",
        "site",
        "started",
        "stored",
        "token",
    )

    def __init__(
        self, kind: str, request: Request, client: Request, site: str, key: str, started: float
    ) -> None:
        self.kind = kind  # "fill", "revalidate", "pass", "manifest", "background"
        self.request = request
        self.client = client
        self.site = site
        self.key = key
        self.started = started
        self.lookup: Any = None
        self.response: Response | None = None
        self.error: str | None = None
        self.stored: Any = None  # the cache entry the fill produced, for joined clients
        self.done = False
        self.token: Any = None
        self.override = 0  # status of a rewrite rule (e.g. 404 pages), applied to the reply


class Join:
    """Wait for ``fetch`` to complete, then call :meth:`EdgeNode.joined` with this join.

    ``client`` is the request as the node sees it (after a rewrite); ``token`` is free
    for the driver.
    """

    __slots__ = ("client", "fetch", "override", "token")

    def __init__(self, fetch: Fetch, client: Request) -> None:
        self.fetch = fetch
        self.client = client
        self.override = 0
        self.token: Any = None


Step = Reply | Fetch | Join


class _Site:
    __slots__ = ("created", "deploy", "exists", "manifest", "pending", "rules")

    def __init__(self) -> None:
        self.deploy = ""
        self.created = -math.inf  # when the deploy was published (its manifest's "created")
        self.rules: RuleSet | None = None
        # Does a decoded path name a file of the deploy? None: unknown, no shadowing.
        self.exists: Callable[[str], bool] | None = None
        self.manifest = False
        self.pending: Fetch | None = None


@dataclass(slots=True)
class EdgeStats:
    """Counters of one node (a live object; :meth:`EdgeNode.statistics` copies it)."""

    requests: int = 0
    hits: int = 0
    misses: int = 0
    stale: int = 0
    revalidated: int = 0
    collapsed: int = 0
    redirects: int = 0
    passes: int = 0
    errors: int = 0
    origin_requests: int = 0
    origin_bytes: int = 0
    bytes_served: int = 0
    bytes_from_cache: int = 0
    deploys_seen: int = 0
    purges: int = 0

    def snapshot(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class EdgeNode:
    """The sans-IO edge node (see the module docstring for the protocol).

    Args:
        cache: the node's cache (memory tier, optional disk tier).
        config: node settings.
    """

    def __init__(self, cache: HttpCache, config: EdgeConfig | None = None) -> None:
        self.cache = cache
        self.config = config or EdgeConfig()
        self.stats = EdgeStats()
        self._sites: dict[str, _Site] = {}
        self._inflight: dict[str, Fetch] = {}
        self._via = f"1.1 {self.config.name}"
        self._vias: dict[str, str] = {}  # a Via value received -> it with this node added
        # A candidate evaluated beside the rules (edgesim.shadow); None costs one test.
        self.shadow: Shadow | None = None

    # ---- the protocol --------------------------------------------------------

    def handle(self, req: Request, now: float) -> Step:
        """First step for a client request."""
        self.stats.requests += 1
        path = req.path
        if path.startswith(EDGE_ADMIN_PREFIX):
            return self._admin(req, path)
        host = req.host
        site = self._sites.get(host)
        if site is None:
            site = self._sites[host] = _Site()
            rules = self.config.rules.get(host)
            if rules is not None:
                site.rules = rules
        if self.config.manifests and not site.manifest and not path.startswith("/.edgesim/"):
            if site.pending is not None:
                return Join(site.pending, req)
            mreq = Request("GET", MANIFEST_PATH, [("host", get_header(req.headers, "host") or host)])
            f = Fetch("manifest", mreq, req, host, "", now)
            site.pending = f
            self.stats.origin_requests += 1
            return f
        return self._after_manifest(req, host, site, now)

    def complete(self, fetch: Fetch, response: Response | None, error: str | None, now: float) -> Step:
        """Report the outcome of ``fetch`` (a response, or an error: ``"connect"``,
        ``"timeout"`` or ``"protocol"``); returns the next step of its client."""
        fetch.done = True
        fetch.response = response
        fetch.error = error
        if response is not None:
            self.stats.origin_bytes += response.size
        kind = fetch.kind
        if kind == "manifest":
            return self._manifest_done(fetch, now)
        if kind == "pass":
            return _override(self._pass_done(fetch, now), fetch.override)
        if self._inflight.get(fetch.key) is fetch:
            del self._inflight[fetch.key]
        if kind == "background":
            self._revalidation_done(fetch, now)
            return Reply(Response(204), PASS)  # nobody waits for a background fetch
        if kind == "revalidate":
            return _override(self._revalidation_done(fetch, now), fetch.override)
        return _override(self._fill_done(fetch, now), fetch.override)

    def joined(self, join: Join, now: float) -> Step:
        """Next step for a client that waited (``join``) on another client's fetch."""
        fetch, req = join.fetch, join.client
        if fetch.kind == "manifest":
            site = self._sites[fetch.site]
            return self._after_manifest(req, fetch.site, site, now)
        entry = fetch.stored
        if entry is not None:
            lk = self.cache.lookup(fetch.key, req, now)
            if lk is not None and lk.entry is entry:
                self.stats.collapsed += 1
                self.stats.hits += 1
                return _override(self._from_cache(lk.entry, now, HIT, req), join.override)
        # The fill was not shareable (uncacheable, or another Vary variant): go alone.
        site = self._sites[fetch.site]
        return _override(self._cache_step(req, fetch.site, site, now, join=False), join.override)

    # ---- pipeline ------------------------------------------------------------

    def _after_manifest(self, req: Request, host: str, site: _Site, now: float) -> Step:
        if (
            site.rules is not None
            and not self.config.shield
            and req.method in _SAFE
            and not req.path.startswith("/.edgesim/")
        ):
            step = self._apply_rules(req, host, site, now)
            if step is not None:
                return step
        return self._cache_step(req, host, site, now)

    def _apply_rules(self, req: Request, host: str, site: _Site, now: float) -> Step | None:
        rules = site.rules
        assert rules is not None
        url = "https://" + host + req.target if req.target.startswith("/") else req.target
        try:
            if self.shadow is None:
                # ``rules.match(url, headers=..., country=..., now=now)``, with its memo
                # read and filled here and its native match called positionally: the
                # interpreted ``match`` would derive the same key again
                memo = rules.memo
                m: Any = memo.shared(url)  # a Match, None, or the memo's MISSING
                if m is MISSING:
                    hs = req.headers
                    country = get_header(hs, COUNTRY_HEADER)
                    fields = visitor_fields(hs)  # None: an nf_jwt cookie, roles depend on the time
                    key = None if fields is None else memo_key(url, country, None, fields)
                    if key is not None:
                        m = memo.get(key)
                    if m is MISSING:
                        m, own = rules.match_scoped(url, country, None, None, hs, now, fields)
                        if not own:
                            memo.share(url, m)
                        elif key is not None:
                            memo.put(key, m)
            else:
                m = self.shadow.match(rules, req, host, url, now, site.exists)
        except ValueError:
            return None
        if m is None:
            return None
        if m.denied:
            return self._rewrite(req, host, site, "/404.html", 404, now)
        if not m.force and site.exists is not None and resolve_file(request_path(req.target), site.exists):
            return None  # shadowed by a file of the deploy (spec R2.20)
        if m.is_redirect:
            self.stats.redirects += 1
            headers: Headers = [
                ("location", m.location),
                ("cache-control", "public, max-age=0, must-revalidate"),
                ("content-length", "0"),
            ]
            return self._finish(Response(m.status, headers, b""), REDIRECT, age=0)
        if m.is_rewrite:
            target = m.location
            status = m.status if m.status != 200 else 0
            return self._rewrite(req, host, site, target, status, now)
        return None  # proxies and function rewrites go to the origin, which answers them

    def _rewrite(self, req: Request, host: str, site: _Site, target: str, status: int, now: float) -> Step:
        """Serve ``target`` under the request's URL (a rewrite rule, or the 404 page)."""
        headers = [(k, v) for k, v in req.headers if k != REWRITE_HEADER]
        headers.append((REWRITE_HEADER, req.target))
        inner = Request(req.method, target, headers, req.body, req.http_version)
        step = self._cache_step(inner, host, site, now)
        if status:
            if isinstance(step, Reply):
                _override(step, status)
            else:
                step.override = status
        return step

    def _cache_step(self, req: Request, host: str, site: _Site, now: float, join: bool = True) -> Step:
        key = _key(host, site.deploy, req.target)
        if req.method not in _CACHEABLE_METHODS:
            f = Fetch("pass", self._origin_request(req), req, host, key, now)
            self.stats.origin_requests += 1
            return f
        lk = self.cache.lookup(key, req, now)
        if lk is not None:
            if lk.state == FRESH:
                self.stats.hits += 1
                return self._from_cache(lk.entry, now, HIT, req)
            if lk.can_serve_stale_while_revalidate and key not in self._inflight:
                self.stats.stale += 1
                bg = self._fetch("background", req, host, key, now, lk)
                return Reply(self._serve_entry(lk.entry, now, STALE, req), STALE, bg)
        if req.method == "GET":
            pending = self._inflight.get(key)
            if pending is not None and join:
                return Join(pending, req)
        return self._fetch("revalidate" if lk is not None else "fill", req, host, key, now, lk)

    def _fetch(self, kind: str, req: Request, host: str, key: str, now: float, lk: Any) -> Fetch:
        oreq = self._origin_request(req)
        if lk is not None:
            oreq.headers.extend(self.cache.conditional_headers(lk.entry))
        f = Fetch(kind, oreq, req, host, key, now)
        f.lookup = lk
        if req.method == "GET" and key not in self._inflight:
            self._inflight[key] = f  # HEAD fetches are never joined
        self.stats.origin_requests += 1
        return f

    def _origin_request(self, req: Request) -> Request:
        # one pass: hop-by-hop (and Connection-listed) fields, Via (re-added with this
        # node), and for safe methods the client's conditionals (the cache's business)
        rh = req.headers
        named = _NOT_FORWARDED_SAFE if req.method in _SAFE else _NOT_FORWARDED
        via = None
        headers: Headers = []
        keep = headers.append
        for h in rh:
            k = h[0]
            if k not in named:
                keep(h)
            elif k == "connection":
                named = named | connection_listed(h[1])  # never Host
            if k == "via" and via is None:
                via = h[1]
        if named is not _NOT_FORWARDED_SAFE and named is not _NOT_FORWARDED:
            # Connection named more fields, maybe some already kept: filter again (rare)
            headers = [h for h in headers if h[0] not in named]
        headers.append(("via", f"{via}, {self._via}" if via else self._via))
        return req.forwarded(headers)

    # ---- fetch outcomes --------------------------------------------------------

    def _fill_done(self, f: Fetch, now: float) -> Step:
        resp = f.response
        if resp is None:
            return self._error_reply(f.error or "connect")
        if resp.status == 304 and not _conditional(f.request):
            return self._error_reply("protocol")  # a 304 nobody asked for (see _conditional)
        key = f.key = self._fill_key(f, resp)
        entry = self.cache.store(key, f.client, resp, f.started, now, tag=f.site)
        f.stored = entry
        outcome = self._count_fetched(resp, MISS)
        if entry is not None:
            return self._finish(self._render(entry, now, outcome, f.client), outcome, rendered=True)
        return self._finish(_relay(resp), outcome)

    def _count_fetched(self, resp: Response, outcome: str) -> str:
        """The outcome of a reply carrying the upstream's own answer ``resp`` (``outcome``:
        MISS or PASS), counted. A 5xx is an error: the origin's own, or the 502 or 504 a
        shield (another edge) made of its origin's failure, which the shield marked ERROR
        as this node marks its own (``_error_reply``); the reports count every reply of
        status 500 or more as an error (edgesim.metrics), and the node's counters and
        X-Cache now say the same."""
        if resp.status >= 500:
            self.stats.errors += 1
            return ERROR
        if outcome == MISS:
            self.stats.misses += 1
        else:
            self.stats.passes += 1
        return outcome

    def _revalidation_done(self, f: Fetch, now: float) -> Step:
        resp = f.response
        lk = f.lookup
        if resp is None or resp.status >= 500:
            if lk is not None and self.cache.stale_if_error_ok(lk.entry, now):
                self.stats.stale += 1
                return Reply(self._serve_entry(lk.entry, now, STALE, f.client), STALE)
            if resp is None:
                return self._error_reply(f.error or "connect")
        assert resp is not None
        if resp.status == 304 and lk is not None:
            self._track_deploy(f.site, resp)
            entry = self.cache.revalidated(f.key, lk, resp, f.started, now)
            f.stored = entry
            self.stats.revalidated += 1
            return Reply(self._serve_entry(entry, now, REVALIDATED, f.client), REVALIDATED)
        fresh = self.cache.store(self._fill_key(f, resp), f.client, resp, f.started, now, tag=f.site)
        f.stored = fresh
        outcome = self._count_fetched(resp, MISS)
        if fresh is not None:
            return self._finish(self._render(fresh, now, outcome, f.client), outcome, rendered=True)
        return self._finish(_relay(resp), outcome)

    def _pass_done(self, f: Fetch, now: float) -> Step:
        resp = f.response
        if resp is None:
            return self._error_reply(f.error or "connect")
        if resp.status == 304 and not _conditional(f.request):
            return self._error_reply("protocol")
        self._track_deploy(f.site, resp)
        site = self._sites[f.site]
        self.cache.invalidate_after(lambda target: _key(f.site, site.deploy, target), f.client, resp)
        outcome = self._count_fetched(resp, PASS)
        return self._finish(_relay(resp), outcome)

    def _manifest_done(self, f: Fetch, now: float) -> Step:
        site = self._sites[f.site]
        site.pending = None
        site.manifest = True
        resp = f.response
        if resp is not None and resp.status == 200 and resp.body is not None:
            self._install_manifest(f.site, site, resp.body)
        return self._after_manifest(f.client, f.site, site, now)

    def _install_manifest(self, host: str, site: _Site, body: bytes) -> None:
        read = _read_manifest(body)
        if read is None:
            return
        doc, exists = read
        deploy = str(doc.get("deploy_id") or "")
        if deploy and deploy != site.deploy:
            if site.deploy:
                self.stats.deploys_seen += 1
                self.stats.purges += 1
                self.cache.purge_tag(host)
            site.deploy = deploy
            created = doc.get("created")
            site.created = float(created) if isinstance(created, int | float) else -math.inf
        site.exists = exists
        if host in self.config.rules:
            site.rules = self.config.rules[host]
            site.exists = None
            return
        rules = doc.get("rules") or {}
        parts = []
        if isinstance(rules, dict):
            for name in ("_redirects", "netlify.toml"):
                text = rules.get(name)
                if isinstance(text, str) and text:
                    parts.append((name, text))
        site.rules = _compile_rules(parts, self.config.shared_rules, host, deploy) if parts else None

    def purge_deploy(self, host: str, created: float) -> int:
        """The purge of a deploy of ``host`` published at ``created`` (the origin's time)
        reached this node: drop the site's cached content, unless the node has already
        moved to that deploy or a later one (it dropped the site's content then, and what
        it has cached since is of the new deploy). Returns the entries dropped."""
        site = self._sites.get(host.lower())
        if site is not None and site.deploy and site.created >= created:
            return 0
        return self.cache.purge_tag(host)

    def _track_deploy(self, host: str, resp: Response) -> str | None:
        """A response from a deploy we have not seen: refetch the manifest next time.
        Returns the response's deploy header (None when absent)."""
        deploy = get_header(resp.headers, DEPLOY_HEADER)
        site = self._sites.get(host)
        if deploy and site is not None and site.deploy and deploy != site.deploy and self.config.manifests:
            site.manifest = False  # the next request fetches the new manifest and purges
        return deploy

    def _fill_key(self, f: Fetch, resp: Response) -> str:
        """Track the deploy of a fill's response and return the key to store it under:
        that of the deploy which produced it (see the invariants), else the site's."""
        deploy = self._track_deploy(f.site, resp)
        if not self.config.manifests:
            # No manifest ever tells the site's deploy, so lookups key on none: a fill
            # keyed by the response's deploy header could never be hit (in front of
            # edgesim's origin, --no-manifests cached nothing and filled the store).
            deploy = None
        return _key(f.site, deploy or self._sites[f.site].deploy, f.client.target)

    # ---- responses -------------------------------------------------------------

    def _from_cache(self, entry: Any, now: float, outcome: str, req: Request) -> Reply:
        return Reply(self._serve_entry(entry, now, outcome, req), outcome)

    def _serve_entry(self, entry: Any, now: float, outcome: str, req: Request) -> Response:
        resp = self._render(entry, now, outcome, req)
        self.stats.bytes_served += resp.size
        self.stats.bytes_from_cache += resp.size
        return resp

    def _render(self, entry: CacheEntry, now: float, outcome: str, req: Request) -> Response:
        """``cache.serve`` then ``_headers(owned=True)``, with the stored fields' share of
        that work done once per entry: its lines without X-Cache and Via, and the Via
        value (theirs plus this node), kept in ``entry.memo`` for the next hits."""
        memo = entry.memo
        if memo is None or memo[0] is not self._via:
            memo = entry.memo = self._rendering(entry.headers)
        resp = self.cache.serve(entry, now, req, memo[1])
        if resp.status == entry.status:
            # the stored response itself: its lines (from the memo), then Age, as
            # ``_headers`` would leave them, and X-Cache and Via to append
            hs = resp.headers
            hs.append(("x-cache", outcome))
            hs.append(("via", memo[2]))
        else:  # a 304, 206 or 416, built from the entry's own lines
            self._headers(resp, outcome, owned=True)
        return resp

    def _rendering(self, stored: FrozenHeaders) -> tuple[str, FrozenHeaders, str]:
        """What ``_headers`` makes of stored lines, for ``_render``: this node's Via (the
        memo's owner), the lines without X-Cache and Via, and the Via value to append."""
        via = None
        lines: Headers = []
        keep = lines.append
        found = False
        for h in stored:
            k = h[0]
            if k == "via":
                found = True
                if via is None:
                    via = h[1]
            elif k == "x-cache":
                found = True
            else:
                keep(h)
        if not found:
            return self._via, stored, self._via
        if not via:
            return self._via, tuple(lines), self._via
        vias = self._vias
        merged = vias.get(via)
        if merged is None:
            if len(vias) >= 256:  # an upstream sending many Via values: start over
                vias.clear()
            merged = vias[via] = f"{via}, {self._via}"
        return self._via, tuple(lines), merged

    def _finish(
        self,
        resp: Response,
        outcome: str,
        *,
        age: int | None = None,
        owned: bool = False,
        rendered: bool = False,
    ) -> Reply:
        # an owned response comes from ``HttpCache.serve``, which always sets Age; a
        # rendered one from ``_render``, which set X-Cache and Via too
        if not rendered:
            if age is not None or (not owned and get_header(resp.headers, "age") is None):
                self._headers(resp, outcome, str(age or 0))
            else:
                self._headers(resp, outcome, owned=owned)
        self.stats.bytes_served += resp.size
        return Reply(resp, outcome)

    def _headers(self, resp: Response, outcome: str, age: str | None = None, *, owned: bool = False) -> None:
        """Drop X-Cache and Via (and Age when ``age`` is given: it is then appended),
        then append X-Cache and Via with this node added; one pass over the fields.

        ``owned``: ``resp.headers`` is a list nobody else holds (``HttpCache.serve`` built
        it), so without X-Cache and Via it is appended to in place instead of rebuilt."""
        if owned and age is None:
            hs = resp.headers
            for h in hs:
                k = h[0]
                if k == "via" or k == "x-cache":
                    break
            else:
                hs.append(("x-cache", outcome))
                hs.append(("via", self._via))
                return
        via = None
        out: Headers = []
        add = out.append
        for h in resp.headers:
            k = h[0]
            if k == "via":
                if via is None:
                    via = h[1]
            elif k != "x-cache" and (age is None or k != "age"):
                add(h)
        if age is not None:
            add(("age", age))
        add(("x-cache", outcome))
        add(("via", f"{via}, {self._via}" if via else self._via))
        resp.headers = out

    def _error_reply(self, error: str) -> Reply:
        self.stats.errors += 1
        if error == "timeout":
            status, text = 504, "origin timed out"
        elif error == "protocol":
            # an invalid response (bad status or header, broken framing) or one cut short
            status, text = 502, "invalid or incomplete response from origin"
        else:
            status, text = 502, f"origin unreachable ({error})"
        body = f"{status} {text}\n".encode()
        resp = Response(
            status,
            [
                ("content-type", "text/plain; charset=utf-8"),
                ("cache-control", "no-store"),
                ("content-length", str(len(body))),
            ],
            body,
        )
        return self._finish(resp, ERROR, age=0)

    # ---- admin -----------------------------------------------------------------

    def _admin(self, req: Request, path: str) -> Reply:
        qs = parse_qs(req.query)
        if path == EDGE_ADMIN_PREFIX + "purge" and req.method in ("POST", "PURGE"):
            site = (qs.get("site") or [""])[0].lower()
            url = (qs.get("url") or [""])[0]
            if not site:
                return self._json(400, {"error": "purge needs ?site=HOST (and optionally &url=/path)"})
            s = self._sites.get(site)
            if url:
                removed = int(self.cache.invalidate(_key(site, s.deploy if s else "", url)))
            else:
                removed = self.cache.purge_tag(site)
            self.stats.purges += 1
            return self._json(200, {"purged": removed, "site": site, "url": url or None})
        if path == EDGE_ADMIN_PREFIX + "stats" and req.method in _SAFE:
            return self._json(200, self.statistics())
        if path == EDGE_ADMIN_PREFIX + "shadow" and req.method in _SAFE and self.shadow is not None:
            return self._json(200, self.shadow.statistics())
        return self._json(404, {"error": f"unknown edge endpoint {path}"})

    def _json(self, status: int, doc: object) -> Reply:
        body = json.dumps(doc, sort_keys=True).encode() + b"\n"
        resp = Response(
            status,
            [
                ("content-type", "application/json"),
                ("cache-control", "no-store"),
                ("content-length", str(len(body))),
            ],
            body,
        )
        return self._finish(resp, PASS, age=0)

    def statistics(self) -> dict[str, Any]:
        """A snapshot of the node's counters and its cache's."""
        cache_stats = self.cache.statistics()
        return {
            "node": self.config.name,
            **self.stats.snapshot(),
            "cache": _asdict(cache_stats),
            "sites": {
                h: {"deploy": s.deploy, "rules": len(s.rules) if s.rules else 0}
                for h, s in self._sites.items()
            },
            **({"shadow": self.shadow.statistics()} if self.shadow is not None else {}),
        }


def _asdict(obj: Any) -> Any:
    """A JSON-ready copy of a (nested) statistics dataclass."""
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _asdict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    return obj


def _key(host: str, deploy: str, target: str) -> str:
    return f"{host}\x00{deploy}\x00{target}"


def _conditional(req: Request) -> bool:
    """Whether ``req``, as forwarded, may be answered 304: it carries If-None-Match or
    If-Modified-Since (RFC 9110 §15.4.5: a 304 answers a conditional request only). A
    304 to any other request names a stored copy that neither this node nor its client
    has: an invalid response, never relayed or stored. (A fill never carries the
    client's conditionals, which are this node's to evaluate on its stored response, so
    a 304 to one is always invalid; a revalidation's 304 refreshes the entry it
    validated, which is then served in full or as this node's own 304.)"""
    hs = req.headers
    return get_header(hs, "if-none-match") is not None or get_header(hs, "if-modified-since") is not None


def _relay(resp: Response) -> Response:
    return Response(resp.status, strip_hop_by_hop(resp.headers), resp.body, resp.size)


def _override(step: Step, status: int) -> Step:
    """Apply a rewrite rule's status (404 pages, 410, ...) to a successful reply."""
    if status and isinstance(step, Reply) and 200 <= step.response.status < 300:
        step.response.status = status
    elif status and not isinstance(step, Reply):
        step.override = status
    return step


# Manifests read lately, by body: the document and its file test (_read_manifest).
_READ: dict[bytes, tuple[dict[str, Any], Callable[[str], bool] | None]] = {}
_READ_MAX: Final = 64  # manifests kept, at most
_READ_BYTES: Final = 64 << 20  # and their bodies' bytes (but the last one's, whatever its size)
_READ_LOCK: Final = threading.Lock()


def _read_manifest(body: bytes) -> tuple[dict[str, Any], Callable[[str], bool] | None] | None:
    """A manifest's document (read only: shared) and its file test (``_file_oracle``);
    None: not a JSON object. Every node of a run reads each deploy's manifest, the same
    body; a synthetic site's lists every deploy so far, so parsing it once per node
    made the cost of a site's deploys grow with their square. Kept per process, by
    body, for the last ``_READ_MAX`` manifests read (``_READ_BYTES`` of bodies)."""
    with _READ_LOCK:
        got = _READ.get(body)
    if got is not None:
        return got
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    got = (doc, _file_oracle(doc))
    with _READ_LOCK:
        _READ[body] = got
        kept = sum(len(b) for b in _READ)
        while len(_READ) > 1 and (len(_READ) > _READ_MAX or kept > _READ_BYTES):
            oldest = next(iter(_READ))
            kept -= len(oldest)
            del _READ[oldest]
    return got


def _file_oracle(manifest: dict[str, Any]) -> Callable[[str], bool] | None:
    """The deploy's file existence test from its manifest: a file list, or the
    synthetic catalog (rebuilt exactly as the origin builds it)."""
    files = manifest.get("files")
    if isinstance(files, dict | list):
        return frozenset(files).__contains__
    catalog = manifest.get("catalog")
    if isinstance(catalog, dict):
        from origin.core import Catalog

        try:
            # many nodes (the capacity engine runs dozens) share one immutable catalog:
            # the manifest's reading (_read_manifest) and the catalogs rebuilt
            # (Catalog.from_manifest) are both kept per process
            return Catalog.from_manifest(catalog).exists
        except (ValueError, KeyError, TypeError):
            return None
    return None


def _compile_rules(
    parts: list[tuple[str, str]],
    shared: dict[str, tuple[str, tuple[tuple[str, str], ...], RuleSet]] | None = None,
    host: str = "",
    deploy: str = "",
) -> RuleSet:
    """Compile manifest rule texts in site order (_redirects, then netlify.toml).

    With ``shared`` (``EdgeConfig.shared_rules``), the set compiled for ``host`` at
    ``deploy`` from the same texts by another node is reused (rule sets never change,
    and nodes never close theirs); only each host's latest set is kept there.
    """
    texts = tuple(parts)
    if shared is None:
        return _compile_rule_texts(texts)
    latest = shared.get(host)
    if latest is not None and latest[0] == deploy and latest[1] == texts:
        return latest[2]
    rules = _compile_rule_texts(texts)
    shared[host] = (deploy, texts, rules)
    return rules


def _compile_rule_texts(parts: tuple[tuple[str, str], ...]) -> RuleSet:
    from edgesim._rulefiles import redirects_source, toml_source

    sources = [
        toml_source(name, text.encode()) if name.endswith(".toml") else redirects_source(name, text.encode())
        for name, text in parts
    ]
    return RuleSet._from_sources(sources, None, "app_metadata.authorization.roles", False, 0, 0)
