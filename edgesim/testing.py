"""edgesim's pytest plugin: a whole edge network inside one test.

``open_network(topology, mode=...)`` starts every edge node of a topology and its
origin, and yields a :class:`Network` the test sends requests to::

    async def test_home_is_cached(edge_network):
        async with edge_network("demo", mode="trio") as net:
            assert (await net.get("eu-west", "/index.html")).header("x-cache") == "MISS"
            assert (await net.get("eu-west", "/index.html")).header("x-cache") == "HIT"
            assert net.metrics()["totals"]["hits"] == 1

Modes (docs/testing.md):

* ``"trio"`` (Trio-virtual): nodes, origin and clients in-process, joined by memory
  streams through the real HTTP server shell and the real origin pool. Time for the
  cores is a fixed epoch plus ``trio.current_time()``, so the network runs on
  pytest-trio's ``autojump_clock``: TTLs expire without real sleeps.
* ``"live"``: the origin is a real ``python -m origin`` subprocess (or the user's URL),
  the nodes are real servers on 127.0.0.1 port 0, requests go over real sockets. Wall
  time; not for the autojump clock.
* ``"virtual"``: the capacity engine (:func:`edgesim.engine.simulate`) runs the
  topology's traffic; ``net.report`` and ``net.metrics()`` answer, ``net.get`` doesn't.

In trio and live modes ``await net.crash(name)`` and ``await net.restart(name)`` take
a node down and bring it back cold; clients retry on the region's other nodes, then on
the nearest regions, and the balancer drops the node after the topology's health check
delay, as in the capacity engine.

Any HTTP origin can stand in for edgesim's (``origin="http://127.0.0.1:PORT"``, or an
``async (Request) -> Response`` handler); the edges then fetch no manifests, and
``rules={host: path}`` supplies the rule files, so an edge configuration can be tested
before production.

This module is also the ``pytest11`` entry point ``edgesim``. Since every pytest run
of a project with edgesim installed imports it, it imports only the standard library,
pytest and edgesim's light value modules at the top; trio, numpy and the shells load
when a network opens.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import quote, urlsplit

import pytest

from edgesim.errors import EdgesimError, single_exception
from edgesim.http import Request, Response
from edgesim.topology import NodeCrash, ShadowSpec, Site, Topology
from edgesim.topology import Origin as OriginModel

if TYPE_CHECKING:
    import trio

    from edgesim._client import OriginPool
    from edgesim._server import HttpServer
    from edgesim.metrics import RunResult
    from edgesim.node import EdgeNode
    from edgesim.shadow import Shadow
    from origin.core import OriginCore

__all__ = [
    "Mode",
    "Network",
    "NetworkError",
    "RuleFileWarning",
    "build_origin_core",
    "edge_network",
    "open_network",
    "site_config_text",
    "write_sites",
]

Mode = Literal["trio", "live", "virtual"]
Handler = Callable[[Request], Awaitable[Response]]
MODES = ("trio", "live", "virtual")
# Balancer policies: the topology's three plus a plain rotation.
BALANCERS = ("random", "least-connections", "consistent-hash", "round-robin")

# Seconds the origin subprocess gets to load its sites and announce its port: loading
# is a few ms per synthetic site; a slow CI machine's interpreter start dominates.
ORIGIN_START_TIMEOUT = 30.0
# Seconds it gets to drain and exit after SIGTERM before it is killed.
ORIGIN_STOP_TIMEOUT = 10.0
# Client -> edge and edge -> origin read timeouts. Generous: in trio mode they run on
# virtual time (a test that parks the origin should not trip them by accident), and in
# live mode a loaded CI machine can be slow; tests bound their own waits.
READ_TIMEOUT = 120.0
# The test's own read timeout on its requests to the edges: longer than the edges' on
# the origin, so that an origin that never answers gives the test the edge's 504 rather
# than a timeout of its own.
CLIENT_READ_TIMEOUT = READ_TIMEOUT + 60.0
# Seconds a user's origin URL gets to accept the connection that checks it at the start.
ORIGIN_CONNECT_TIMEOUT = 10.0


class NetworkError(EdgesimError, RuntimeError):
    """A network could not start, or was asked something its mode cannot answer."""


class RuleFileWarning(UserWarning):
    """A rule line that the edges skip (as Netlify skips it): an error in a ``rules=``
    file or in a topology site's rule files, one warning per line (``FILE:LINE:COLUMN:
    error: MESSAGE [CODE]``). Make them errors with pytest's
    ``-W error::edgesim.testing.RuleFileWarning``."""


# --------------------------------------------------------------------------
# The origin of a topology
# --------------------------------------------------------------------------


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"no TOML form for {v!r}")


def site_config_text(site: Site, *, origin: OriginModel | None = None) -> str:
    """The ``_edgesim.toml`` of a synthetic topology site: its ``[cache]`` classes and its
    ``[catalog]``, converted exactly as the capacity engine converts them.

    The in-process origin (trio mode) and the origin subprocess (live mode) both parse
    this text, so the two serve identical sites. With ``origin`` (the topology's
    ``[origin]``), a ``[load]`` table adds its modelled service time, so a real origin
    server sleeps what the engine's origin model draws.
    """
    # The engine's converters are reused rather than copied so that the plugin's
    # origin cannot drift from the engine's.
    from edgesim.engine import _site_config_text, origin_catalog_spec

    cat = site.catalog
    if cat is None:
        raise ValueError(f"site {site.name}: not synthetic (it has a directory)")
    spec = origin_catalog_spec(cat)
    lines = [_site_config_text(site).rstrip("\n"), "[catalog]"]
    lines.extend(f"{k} = {_toml_value(v)}" for k, v in spec.as_dict().items())
    if origin is not None:
        from edgesim.engine import _origin_dist

        lines += ["[load]", f"service_time = {_toml_value(_origin_dist(origin.service_time).as_dict())}"]
    return "\n".join(line for line in lines if line) + "\n"


def build_origin_core(
    topology: Topology, *, now: float, bodies: bool = True, model_load: bool = False
) -> OriginCore:
    """An :class:`~origin.core.OriginCore` serving the topology's sites: site folders as
    they are, synthetic sites from their catalogs and rule files
    (:func:`edgesim.engine.origin_core`), each parsed from the ``_edgesim.toml`` an
    origin process would read (:func:`site_config_text`). ``model_load`` gives
    synthetic sites the topology's origin service time.
    """
    from functools import partial

    from edgesim.engine import origin_core

    text = partial(site_config_text, origin=topology.origin if model_load else None)
    return origin_core(topology, now, bodies=bodies, config_text=text)


def write_sites(topology: Topology, sites_dir: Path, *, model_load: bool = False) -> Path:
    """Lay out the topology's sites as a ``python -m origin --sites`` directory: one
    folder per host with ``_edgesim.toml`` and the rule files (synthetic sites), or a
    link to (else a copy of) the site's own folder. ``model_load``: as in
    :func:`build_origin_core`. A host's folder left by an earlier layout in
    ``sites_dir`` (a reused work folder) is replaced."""
    from edgesim.engine import site_rule_texts

    sites_dir.mkdir(parents=True, exist_ok=True)
    for s in topology.sites:
        dest = sites_dir / s.name.lower()
        if dest.is_symlink() or dest.is_file():
            dest.unlink()  # a link to a site's own folder: only the link goes
        elif dest.is_dir():
            shutil.rmtree(dest)
        if s.directory is not None:
            try:
                dest.symlink_to(s.directory.resolve(), target_is_directory=True)
            except OSError:
                shutil.copytree(s.directory, dest)
            continue
        dest.mkdir()
        text = site_config_text(s, origin=topology.origin if model_load else None)
        (dest / "_edgesim.toml").write_text(text, encoding="utf-8")
        for name, text in site_rule_texts(s).items():
            (dest / name).write_text(text, encoding="utf-8")
    return sites_dir


# --------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------


@dataclass(eq=False)
class _Member:
    """One edge node of a running network, the client that talks to it, and its lives:
    a life is a cold node core with its server, from a start (or restart) to a crash."""

    name: str
    region: str
    memory: int  # the region's memory_cache, for every life
    node: EdgeNode | None = None  # the current life's core (None before the first)
    server: HttpServer | None = None  # the current life's HTTP shell
    client: OriginPool | None = None  # the test's connections to the node
    port: int | None = None  # live mode: kept across restarts
    inflight: int = 0
    up: bool = False
    starting: bool = False  # a life is being started (a restart in progress)
    started: trio.Event | None = None  # set when that restart is over (started or not)
    down_at: float = 0.0  # trio.current_time() of the last crash
    crashes: int = 0
    generation: int = 0  # one more at every crash, scheduled or not (see _run_crash)
    past: dict[str, int] = field(default_factory=dict)  # counters of the lives that ended
    scope: trio.CancelScope | None = None  # cancels the current life
    ended: trio.Event | None = None  # set when the current life is over
    conns: trio.Nursery | None = None  # trio mode: the life's memory connections
    shadow: Shadow | None = None  # its [shadow], kept across lives (as the engines do)


@dataclass(eq=False)
class _Origin:
    """What the edges fetch from."""

    url: str  # "memory" in trio mode
    core: OriginCore | None = None  # edgesim's origin in this process
    client: OriginPool | None = None  # for deploys (edgesim's origin only)
    process: trio.Process | None = None
    server: HttpServer | None = None  # a handler the network serves
    candidate_process: trio.Process | None = None  # a [shadow] candidate origin (live)


@dataclass(eq=False)
class Network:
    """A running topology (see :func:`open_network`).

    Attributes:
        topology: the topology.
        mode: ``"trio"``, ``"live"`` or ``"virtual"``.
        report: the engine's :class:`~edgesim.metrics.RunResult` (virtual mode), else None.
        fault_events: with ``faults=True``, what the topology's scheduled crashes did:
            ``{"at", "kind", "node", ...}`` dicts (``at`` in seconds from the start), in
            the order they happened.
        origin_url: where the edges send misses (``"memory"`` in trio mode; None in
            virtual mode).
        default_host: the Host of requests that name none (the first site).
        rule_problems: the error lines of the ``rules=`` files and of the topology's
            rule files (``FILE:LINE:COLUMN: error: MESSAGE [CODE]``): rules the edges
            skip, each also a :class:`RuleFileWarning`.
    """

    topology: Topology
    mode: str
    default_host: str
    report: RunResult | None = None
    origin_url: str | None = None
    _members: dict[str, list[_Member]] = field(default_factory=dict)
    _policies: dict[str, str] = field(default_factory=dict)
    _origin: _Origin | None = None
    _rng: random.Random = field(default_factory=random.Random)
    _turn: itertools.count[int] = field(default_factory=itertools.count)
    _lives: _Lives | None = None
    fault_events: list[dict[str, Any]] = field(default_factory=list)
    rule_problems: list[str] = field(default_factory=list)

    # ---- lookups --------------------------------------------------------------

    def regions(self) -> list[str]:
        """Region names, in topology order."""
        return [r.name for r in self.topology.regions]

    def nodes(self, region: str | None = None) -> list[str]:
        """Node names (``eu-west-0``, ...) of ``region``, or of every region."""
        self._require_nodes("nodes")
        if region is None:
            return [m.name for ms in self._members.values() for m in ms]
        return [m.name for m in self._region(region)]

    def node(self, name: str) -> EdgeNode:
        """The sans-IO :class:`~edgesim.node.EdgeNode` behind node ``name`` (its current
        life's: a restart brings a new one, with a cold cache).

        Raises:
            NetworkError: no such node, or it is down (:meth:`crash`).
        """
        m = self._member(name)
        if not m.up or m.node is None:
            raise NetworkError(f"node {name} is down (crashed; net.restart({name!r}) starts it again)")
        return m.node

    def is_up(self, name: str) -> bool:
        """Whether node ``name`` is running (not crashed, or restarted since)."""
        return self._member(name).up

    def port(self, name: str) -> int | None:
        """The TCP port of node ``name`` (live mode), else None."""
        return self._member(name).port

    # ---- requests -------------------------------------------------------------

    async def get(
        self,
        region: str,
        url: str,
        *,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        node: str | int | None = None,
    ) -> Response:
        """GET ``url`` from an edge node of ``region``.

        Args:
            region: the region whose balancer picks the node.
            url: a path (``/index.html?x=1``; Host: the topology's first site) or an
                absolute URL whose host names the site (``https://news.example/``).
            headers: extra request headers (a ``host`` header wins over the URL's).
            node: a node name or index within the region, instead of the balancer.

        Returns:
            The edge's response with its whole body.

        Node crashes (:meth:`crash`): the balancer picks among the region's nodes that
        the health check has not dropped. When the chosen node refuses the connection
        (crashed, not dropped yet), the balancer chooses again among the region's nodes
        not tried, then among the nearest regions' by ``[network.region_latency]``. A
        pinned ``node`` is not retried.

        Raises:
            NetworkError: virtual mode, or an unknown region or node.
            edgesim._client.OriginError: the edge could not be reached (no node of the
                region or its failover regions accepted the connection, or the pinned
                node is down), or the connection broke (a crash during the request).
        """
        return await self.request(region, "GET", url, headers=headers, node=node)

    async def request(
        self,
        region: str,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        body: bytes = b"",
        node: str | int | None = None,
    ) -> Response:
        """Like :meth:`get`, with any method and a body."""
        self._require_nodes("get")
        host, target = self._split(url)
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or ())
        hdrs = [(k.lower(), v) for k, v in pairs]
        if not any(k == "host" for k, _ in hdrs):
            hdrs.insert(0, ("host", host))
        host = next(v for k, v in hdrs if k == "host").lower()
        req = Request(method, target, hdrs, body)
        if node is not None:  # pinned: a down node refuses the connection
            return await self._send(self._pinned(region, node), req)
        from edgesim._client import OriginConnectError

        refused: list[str] = []
        for m in self._order(region, host, target):
            try:
                return await self._send(m, req)
            except OriginConnectError:
                # a crashed node the health check has not dropped yet: the client tries
                # the next node, then the nearest regions (as the engine's clients do)
                refused.append(m.name)
        if refused:
            raise OriginConnectError(
                f"no edge node of {region} or its failover regions answered (refused: {', '.join(refused)})"
            )
        raise OriginConnectError(f"no edge node of {region} or its failover regions is up")

    async def _send(self, m: _Member, req: Request) -> Response:
        from edgesim._client import OriginProtocolError

        assert m.client is not None
        m.inflight += 1
        try:
            return await m.client.request(req)
        except OriginProtocolError as exc:
            if m.up:
                raise
            raise OriginProtocolError(f"edge node {m.name} crashed during the request") from exc
        finally:
            m.inflight -= 1

    async def purge(self, site: str, url: str | None = None) -> int:
        """Purge ``site`` (or one ``url`` path of it) on every node, through each node's
        admin endpoint. Returns the sum of the nodes' ``purged`` counts: what they held
        (a URL purge counts 1 on each node that had the URL cached, in any variant)."""
        self._require_nodes("purge")
        q = f"site={quote(site.lower(), safe='')}" + (f"&url={quote(url, safe='')}" if url else "")
        removed = 0
        for ms in self._members.values():
            for m in ms:
                if not m.up or m.client is None:  # a crashed node's cache went with it
                    continue
                req = Request("POST", f"/.edgesim/edge/purge?{q}", [("host", site)], b"")
                resp = await m.client.request(req)
                if resp.status != 200:
                    raise NetworkError(f"purge on {m.name}: {resp.status} {resp.body!r}")
                removed += int(json.loads(resp.body or b"{}").get("purged", 0))
        return removed

    async def deploy(self, site: str, *, seed: int | None = None, new_fraction: float | None = None) -> str:
        """Publish a new deploy of ``site`` at the origin, then purge the site on every
        node (as a CDN does on deploy, and as the engine's deploy events do).

        Args:
            seed, new_fraction: for synthetic sites, which objects change (origin
                defaults: the next seed, 10%).

        Returns:
            The new deploy id.

        Raises:
            NetworkError: the origin is not edgesim's, or refused the deploy.
        """
        self._require_nodes("deploy")
        o = self._origin
        if o is None or o.client is None:
            handler = o is not None and o.server is not None
            theirs = "an origin handler" if handler else f"origin {self.origin_url}"
            raise NetworkError(
                f"deploy() needs edgesim's origin (origin=None); this network uses {theirs}: after changing "
                f"what your origin serves, purge the edges with net.purge({site!r})"
            )
        opts: dict[str, Any] = {}
        if seed is not None:
            opts["seed"] = seed
        if new_fraction is not None:
            opts["new_fraction"] = new_fraction
        body = json.dumps(opts).encode()
        headers = [("host", site), ("content-type", "application/json")]
        resp = await o.client.request(Request("POST", "/.edgesim/deploy", headers, body))
        if resp.status != 200:
            raise NetworkError(
                f"deploy of {site}: {resp.status} {(resp.body or b'').decode(errors='replace')}"
            )
        deploy_id = str(json.loads(resp.body or b"{}")["deploy_id"])
        await self.purge(site)
        return deploy_id

    # ---- metrics --------------------------------------------------------------

    def metrics(self) -> dict[str, Any]:
        """Counters now: ``nodes`` (each node's ``EdgeNode.statistics()``, counters summed
        over its lives when it crashed, plus ``up`` and ``crashes``), ``regions``
        and ``totals`` (sums of the numeric counters plus ``hit_ratio``), and ``origin``
        (the in-process origin's load counters, else None).

        In virtual mode: the report's ``totals``, ``regions``, ``nodes`` and ``origin``.
        """
        if self.report is not None:
            r = self.report.report
            return {
                "mode": self.mode,
                "totals": r["totals"],
                "regions": r["regions"],
                "nodes": r["nodes"],
                "origin": r["origin"],
            }
        nodes = {m.name: _node_metrics(m) for ms in self._members.values() for m in ms}
        regions = {region: _totals([nodes[m.name] for m in ms]) for region, ms in self._members.items()}
        core = self._origin.core if self._origin is not None else None
        return {
            "mode": self.mode,
            "totals": _totals(list(nodes.values())),
            "regions": regions,
            "nodes": nodes,
            "origin": core.stats.as_dict() if core is not None else None,
        }

    # ---- internals ------------------------------------------------------------

    def _require_nodes(self, what: str) -> None:
        if self.mode == "virtual":
            raise NetworkError(
                f"net.{what}() is not available in virtual mode: the capacity engine answers whole "
                "runs, not single requests; read net.report or net.metrics(), or open the network "
                'with mode="trio" or mode="live" to send requests'
            )

    def _region(self, region: str) -> list[_Member]:
        ms = self._members.get(region)
        if ms is None:
            raise NetworkError(f"no region {region!r} (regions: {', '.join(self._members)})")
        return ms

    def _member(self, name: str) -> _Member:
        for ms in self._members.values():
            for m in ms:
                if m.name == name:
                    return m
        raise NetworkError(f"no node {name!r} (nodes: {', '.join(self.nodes())})")

    def _split(self, url: str) -> tuple[str, str]:
        if not url.isascii():  # as a browser sends it: UTF-8, percent-encoded
            url = quote(url, safe=_URL_SAFE)
        if "://" not in url:
            return self.default_host, url if url.startswith("/") else "/" + url
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return (parts.hostname or self.default_host), target

    def _pinned(self, region: str, node: str | int) -> _Member:
        ms = self._region(region)
        if isinstance(node, int):
            if not 0 <= node < len(ms):
                raise NetworkError(f"region {region} has nodes 0..{len(ms) - 1}, not {node}")
            return ms[node]
        m = self._member(node)
        if m.region != region:
            raise NetworkError(f"node {node} is in region {m.region}, not {region}")
        return m

    def _listed(self, m: _Member, now: float) -> bool:
        """Whether the balancer still sends to ``m``: up, or crashed less than the
        topology's ``health_check_delay`` ago."""
        return m.up or now - m.down_at < self.topology.faults.health_check_delay

    def _order(self, region: str, host: str, target: str) -> Iterator[_Member]:
        """The nodes a client request tries, in order: its region's (:meth:`_region_order`),
        then the failover regions' (nearest first; regions at the same latency in an
        order set by the URL's hash, as in the engine)."""
        import trio

        from edgesim.engine import failover_order

        now = trio.current_time()
        yield from self._region_order(region, host, target, now)
        names = self.regions()
        for _, group in failover_order(self.topology)[names.index(region)]:
            first = zlib.crc32(target.encode()) % len(group)
            for j in range(len(group)):
                yield from self._region_order(names[group[(first + j) % len(group)]], host, target, now)

    def _region_order(self, region: str, host: str, target: str, now: float) -> Iterator[_Member]:
        """The listed nodes of ``region`` in the order a client tries them: the
        balancer's choice, and after a refusal its choice among the nodes not tried yet
        (consistent-hash: the next node after the URL's, the others keeping theirs)."""
        every = self._region(region)
        left = [m for m in every if self._listed(m, now)]
        policy = self._policies[region]
        if policy == "consistent-hash":
            i = zlib.crc32(f"{host}{target}".encode()) % len(every)
            yield from (m for m in every[i:] + every[:i] if m in left)
            return
        while left:
            if policy == "random":
                pick = self._rng.choice(left)
            else:
                start = next(self._turn) % len(left)
                rotated = left[start:] + left[:start]
                pick = rotated[0]
                if policy == "least-connections":
                    pick = min(rotated, key=lambda m: m.inflight)  # ties: the rotation's order
            yield pick
            left.remove(pick)

    # ---- faults ---------------------------------------------------------------

    async def crash(self, name: str) -> None:
        """Crash node ``name``: its server stops at once, connections in progress break
        (their clients get ``OriginProtocolError``), and its cache and counters' life
        end. Until the topology's ``[faults] health_check_delay`` has passed (Trio's
        clock: virtual time in trio mode), the balancer still picks it and clients
        retry elsewhere when it refuses them; after that it is skipped. Its counters so
        far stay in :meth:`metrics`, and its ``[shadow]`` lives on.

        Raises:
            NetworkError: virtual mode, no such node, it is down already, or it is being
                restarted.
        """
        import trio

        self._require_nodes("crash")
        m = self._member(name)
        if m.starting:
            raise NetworkError(f"node {name} is being restarted; wait for net.restart to return")
        if not m.up:
            raise NetworkError(f"node {name} is down already")
        assert m.node is not None and m.scope is not None and m.ended is not None and m.client is not None
        for k, v in m.node.statistics().items():
            if isinstance(v, int) and not isinstance(v, bool):
                m.past[k] = m.past.get(k, 0) + v
        m.up = False
        m.crashes += 1
        m.generation += 1
        m.down_at = trio.current_time()
        m.scope.cancel()
        await m.ended.wait()
        # the test's pooled connections to it are dead: the next request connects anew
        await m.client.aclose()
        assert self._lives is not None
        m.client = self._lives.client(m)

    async def restart(self, name: str) -> None:
        """Start crashed node ``name`` again: a new life with a cold cache (it fetches
        its sites' manifests again), on the same port in live mode. The balancer picks
        it again from now on.

        Raises:
            NetworkError: virtual mode, no such node, it is up or being restarted, or
                (live) its port was taken meanwhile (the node stays down).
        """
        self._require_nodes("restart")
        m = self._member(name)
        if m.up:
            raise NetworkError(f"node {name} is up; crash it first")
        if m.starting:
            raise NetworkError(f"node {name} is being restarted already")
        import trio

        assert self._lives is not None
        m.starting = True
        m.started = trio.Event()
        try:
            await self._lives.start(m)
        except (OSError, BaseExceptionGroup) as exc:
            err = _only_oserror(exc)
            if err is None:
                raise
            raise NetworkError(f"restart of {name}: cannot listen on port {m.port} again: {err}") from None
        finally:
            m.starting = False
            m.started.set()

    async def _run_crash(self, crash: NodeCrash, t0: float) -> None:
        """Carry out one of the topology's ``[[faults.crashes]]`` (``faults=True``) as the
        engines do, ``t0`` being the network's start on Trio's clock: the node crashes at
        ``crash.at`` and restarts ``crash.down_for`` later, unless it crashed again
        meanwhile (that crash decides) or the test restarted it already. A node that is
        down at ``crash.at`` counts the crash and waits for this one's restart; a
        restart under way is waited for. Nothing is raised: a restart that cannot
        happen (live mode: the port was taken) is a ``node_restart_failed`` event and
        the node stays down."""
        import trio

        name = f"{crash.region}-{crash.node}"
        m = self._member(name)
        await trio.sleep_until(t0 + crash.at)
        while m.starting and m.started is not None:  # a restart is under way: crash what it starts
            await m.started.wait()
        event: dict[str, Any] = {"at": crash.at, "kind": "node_crash", "node": name}
        if not m.up:
            event["was_down"] = True
        event["restart"] = crash.at + crash.down_for
        self.fault_events.append(event)  # listed by the time the node is seen down
        if m.up:
            await self.crash(name)
        else:  # down already: this crash moves its restart
            m.crashes += 1
            m.generation += 1
        generation = m.generation
        await trio.sleep_until(t0 + crash.at + crash.down_for)
        if m.generation != generation or m.up or m.starting:
            return  # crashed again (that crash restarts it), or restarted by the test
        try:
            await self.restart(name)
        except NetworkError as exc:
            failed = {"kind": "node_restart_failed", "node": name, "error": str(exc)}
            self.fault_events.append({"at": crash.at + crash.down_for, **failed})
            return
        self.fault_events.append({"at": crash.at + crash.down_for, "kind": "node_restart", "node": name})


async def _scheduled_faults(net: Network, scope: trio.CancelScope, t0: float) -> None:
    """Run the topology's ``[[faults.crashes]]`` until ``scope`` is cancelled."""
    import trio

    with scope:
        async with trio.open_nursery() as crashes:
            for crash in net.topology.faults.crashes:
                crashes.start_soon(net._run_crash, crash, t0)


# What a URL keeps as it is when its other characters are percent-encoded (RFC 3986's
# reserved and unreserved characters, and % itself)
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~-._"


def _only_oserror(exc: BaseException) -> OSError | None:
    """The one OSError of ``exc`` (maybe wrapped in exception groups by Trio's
    nurseries), else None."""
    exc = single_exception(exc)
    return exc if isinstance(exc, OSError) else None


def _node_metrics(m: _Member) -> dict[str, Any]:
    """A node's :meth:`~edgesim.node.EdgeNode.statistics`, its counters summed over its
    lives, with ``up`` and ``crashes``. A down node has no ``cache`` (None) or ``sites``."""
    node = m.node if m.up else None
    out = node.statistics() if node is not None else {"node": m.name, "cache": None, "sites": {}}
    if node is None and m.shadow is not None:
        out["shadow"] = m.shadow.statistics()
    for k, v in m.past.items():
        out[k] = out.get(k, 0) + v
    out["up"] = m.up
    out["crashes"] = m.crashes
    return out


def _totals(stats: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in stats:
        for k, v in s.items():
            if isinstance(v, int) and not isinstance(v, bool):
                out[k] = out.get(k, 0) + v
    served = out.get("hits", 0) + out.get("misses", 0) + out.get("stale", 0) + out.get("revalidated", 0)
    out["hit_ratio"] = (
        (out.get("hits", 0) + out.get("stale", 0) + out.get("revalidated", 0)) / served if served else None
    )
    return out


# --------------------------------------------------------------------------
# Starting a network
# --------------------------------------------------------------------------


def _load(topology: str | os.PathLike[str] | Topology) -> Topology:
    if isinstance(topology, Topology):
        return topology
    from edgesim._topoload import load_topology, resolve_topology_arg

    return load_topology(resolve_topology_arg(os.fspath(topology)))


def _virtual_clock(topology: Topology) -> Callable[[], float]:
    import trio

    from edgesim.engine import EPOCH

    epoch = EPOCH + topology.traffic.start_hour_utc * 3600.0

    def clock() -> float:
        return epoch + trio.current_time()

    return clock


def _memory_opener(
    nursery: trio.Nursery, server: HttpServer
) -> Callable[[str, int], Awaitable[trio.abc.Stream]]:
    import trio.testing

    async def open_stream(host: str, port: int) -> trio.abc.Stream:
        client_side, server_side = trio.testing.memory_stream_pair()
        nursery.start_soon(server.serve_stream, server_side)
        await trio.lowlevel.checkpoint()
        return client_side

    return open_stream


def _core_handler(core: OriginCore, clock: Callable[[], float]) -> Handler:
    import trio

    async def handle(req: Request) -> Response:
        await trio.lowlevel.checkpoint()
        return core.handle(req, clock())

    return handle


def _origin_command(sites_dir: Path) -> tuple[list[str], dict[str, str]]:
    import edgesim

    env = dict(os.environ)
    root = str(Path(edgesim.__file__).resolve().parent.parent)  # where `origin` lives too
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return [sys.executable, "-P", "-m", "origin", "--sites", str(sites_dir), "--port", "0"], env


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(errors="replace").strip()[-limit:]
    except OSError:
        return ""


async def _start_origin_process(
    sites_dir: Path, log_path: Path, extra_args: Sequence[str] = ()
) -> tuple[trio.Process, str]:
    """``python -m origin --sites DIR --port 0 [extra_args]``; returns it and its URL once
    listening. Its stderr goes to ``log_path`` (quoted in the error when it fails to
    start)."""
    import trio

    cmd, env = _origin_command(sites_dir)
    cmd += [*extra_args, "--parent-pid", str(os.getpid())]  # no orphan if this process is killed
    log = log_path.open("wb")  # the child writes it; we only pass the descriptor
    try:
        proc = await trio.lowlevel.open_process(cmd, stdout=subprocess.PIPE, stderr=log, env=env)
    finally:
        log.close()
    assert proc.stdout is not None
    line = b""
    try:
        with trio.move_on_after(ORIGIN_START_TIMEOUT):
            while not line.endswith(b"\n"):
                chunk = await proc.stdout.receive_some(1024)
                if not chunk:
                    break
                line += chunk
    except BaseException:  # cancelled (or interrupted) while it starts: no orphan
        await _stop_process(proc)
        raise
    text = line.decode(errors="replace").strip()
    if not text.startswith("origin listening on "):
        await _stop_process(proc)
        raise NetworkError(f"origin subprocess did not start ({text or 'no output'}): {_tail(log_path)}")
    return proc, text.split()[-1]


async def _stop_process(proc: trio.Process) -> None:
    import trio

    with trio.CancelScope(shield=True):
        if proc.returncode is None:
            proc.terminate()  # SIGTERM: the origin drains and exits
            with trio.move_on_after(ORIGIN_STOP_TIMEOUT):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if proc.stdout is not None:
            await proc.stdout.aclose()


def _check_live_clock(mode: str, origin: object) -> None:
    """Refuse real I/O (live mode; a user's origin URL) under an autojumping clock: it
    jumps to the next timeout whenever every task waits, socket reads included."""
    import trio
    import trio.testing

    clock = trio.lowlevel.current_clock()
    if not isinstance(clock, trio.testing.MockClock) or clock.autojump_threshold == float("inf"):
        return
    if mode == "live":
        raise NetworkError(
            'mode="live" uses real sockets and a real subprocess: under autojump_clock virtual '
            'timeouts fire while they work. Drop autojump_clock, or use mode="trio".'
        )
    if isinstance(origin, str):
        raise NetworkError(
            f"origin={origin!r} is reached over real sockets: under autojump_clock the edges' "
            "virtual timeouts fire while it answers. Pass an async (Request) -> Response handler "
            'instead (served in memory), or drop autojump_clock (or use mode="live").'
        )


def _check_origin(origin: object) -> None:
    """``origin=``: None, an ``async (Request) -> Response`` callable, or a plain-HTTP
    URL ``http://HOST[:PORT]``, checked before anything starts."""
    if origin is None or callable(origin):
        return
    if not isinstance(origin, str):
        raise NetworkError(
            "origin: expected None (edgesim's origin), an http://HOST:PORT URL or an async "
            f"(Request) -> Response handler, got {origin!r}"
        )
    from edgesim._client import OriginPool

    if urlsplit(origin).scheme.lower() == "https":
        raise NetworkError(
            f"origin: {origin!r}: the edges speak plain HTTP/1.1 to their origin; give an http:// "
            "URL (for a TLS-only origin, a plain-HTTP proxy in front of it)"
        )
    try:
        OriginPool(origin)  # its checks of the URL, before any node is built
    except ValueError as exc:
        raise NetworkError(f"origin: {exc}") from None


async def _probe_origin(url: str) -> None:
    """Connect once to a user's origin URL, so that a server that is not running (or a
    wrong port) fails the start with its address, not every request with a 502."""
    import trio

    parts = urlsplit(url)
    assert parts.hostname is not None
    try:
        with trio.fail_after(ORIGIN_CONNECT_TIMEOUT):
            stream = await trio.open_tcp_stream(parts.hostname, parts.port or 80)
    except trio.TooSlowError:
        raise NetworkError(
            f"origin {url}: no connection within {ORIGIN_CONNECT_TIMEOUT:g} s; is your origin server running?"
        ) from None
    except OSError as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
        reason = cause.strerror or str(cause)
        raise NetworkError(
            f"origin {url}: cannot connect ({reason}); is your origin server running, on that port?"
        ) from None
    await stream.aclose()


def _rule_files(rules: object) -> dict[str, list[str]]:
    """``rules=`` as ``{host: [files]}`` (a ``_redirects`` first, then a netlify
    ``.toml``), checked before anything starts."""
    from edgesim._rulefiles import is_toml_name

    if rules is None:
        return {}
    if not isinstance(rules, Mapping):
        raise NetworkError(f"rules: expected {{host: rule file(s)}}, got {rules!r}")
    out: dict[str, list[str]] = {}
    for host, value in rules.items():
        if not isinstance(host, str) or not host.strip():
            raise NetworkError(f"rules: expected host names as keys, got {host!r}")
        items = [value] if isinstance(value, str | os.PathLike) else value
        try:
            files = [os.fspath(p) for p in items]
        except TypeError:
            files = []
        tomls = [f for f in files if is_toml_name(f)]
        if not files or len(tomls) > 1 or len(files) - len(tomls) > 1:
            raise NetworkError(
                f"rules[{host!r}]: expected a rule file, or a list of a _redirects file and a netlify "
                f".toml file (at most one of each), got {value!r}"
            )
        key = host.strip().lower()
        if key in out:
            raise NetworkError(f"rules: host {key} given twice")
        out[key] = sorted(files, key=is_toml_name)
    return out


def _topology_rule_files(topo: Topology) -> dict[str, list[str]]:
    """The rule files of the topology's sites by host (a site folder's ``_redirects``
    and ``netlify.toml``), for nodes whose origin announces none (a user's origin)."""
    out: dict[str, list[str]] = {}
    for site in topo.sites:
        files = list(site.rules_files)
        if site.directory is not None:
            found = (site.directory / "_redirects", site.directory / "netlify.toml")
            files = [f for f in found if f.is_file()]
        if files:
            out[site.name.lower()] = [os.fspath(f) for f in files]
    return out


def _rule_problems(topo: Topology, rule_files: dict[str, list[str]]) -> list[str]:
    """The error lines of the ``rules=`` files and of the topology's own rule files:
    lines the edges skip, as Netlify does. Each is also a :class:`RuleFileWarning`.

    Raises:
        RuleFileError: a ``rules=`` file cannot be read.
        NetworkError: a host's ``rules=`` files have errors and not one valid rule.
    """
    from edgesim.redirects import RuleSet
    from edgesim.shadow import compile_rule_files

    found: list[tuple[str, str, int]] = []  # (line, file, line number)
    for host, files in rule_files.items():
        with compile_rule_files(files) as rules:
            errors = rules.errors
            if errors and not len(rules):
                listed = "; ".join(map(str, errors))
                raise NetworkError(f"rules for {host}: no valid rule in {' + '.join(files)}: {listed}")
            found += [(str(d), d.file, d.line) for d in errors]
    sources = [f for s in topo.sites for f in s.rules_files]
    sources += [s.directory for s in topo.sites if s.directory is not None]
    for src in dict.fromkeys(sources):  # a file two sites name: once
        try:
            with RuleSet.from_site(src) if src.is_dir() else RuleSet.from_file(src) as rules:
                found += [(str(d), d.file, d.line) for d in rules.errors]
        except EdgesimError as exc:  # unreadable: the origin reports it as it starts
            found.append((str(exc), str(src), 0))
    for text, file, line in found:
        # located at the rule file's line: pytest's summary shows that line
        warnings.warn_explicit(RuleFileWarning(text), RuleFileWarning, file, max(line, 1), "edgesim.testing")
    return [text for text, _, _ in found]


async def _start(
    nursery: trio.Nursery,
    topo: Topology,
    mode: str,
    origin: str | Handler | None,
    rule_files: dict[str, list[str]],
    clock: Callable[[], float] | None,
    balancer: str | None,
    workdir: Path,
    processes: list[trio.Process],
) -> Network:
    from edgesim._client import OriginPool
    from edgesim._server import HttpServer

    now = clock or (_virtual_clock(topo) if mode == "trio" else time.time)
    if not topo.sites:
        raise NetworkError(f"topology {topo.name} has no sites")
    net = Network(topo, mode, topo.sites[0].name.lower(), _rng=random.Random(topo.seed))

    # The origin.
    o: _Origin
    opener: Callable[[str, int], Awaitable[trio.abc.Stream]] | None = None
    if origin is None:
        if mode == "trio":
            core = build_origin_core(topo, now=now())
            server = HttpServer(_core_handler(core, now), server_name="edgesim-origin")
            opener = _memory_opener(nursery, server)
            o = _Origin("memory", core=core, server=server)
        else:
            sites = write_sites(topo, workdir / "sites")
            proc, url = await _start_origin_process(sites, workdir / "origin.log")
            processes.append(proc)  # stopped by open_network, whatever happens next
            o = _Origin(url, process=proc)
    elif isinstance(origin, str):
        await _probe_origin(origin)
        o = _Origin(origin)
    else:  # the user's handler, served by the network
        server = HttpServer(origin, server_name="user-origin")
        if mode == "trio":
            opener = _memory_opener(nursery, server)
            o = _Origin("memory", server=server)
        else:
            port = await nursery.start(server.serve_tcp, "127.0.0.1", 0)
            o = _Origin(f"http://127.0.0.1:{port}", server=server)
    base = o.url if o.url != "memory" else "http://origin.invalid:80"

    def origin_pool() -> OriginPool:
        return OriginPool(base, read_timeout=READ_TIMEOUT, open_stream=opener)

    if origin is None:
        o.client = origin_pool()
    net._origin = o
    net.origin_url = o.url
    manifests = origin is None
    if not manifests:  # no manifest announces the topology's rules: the nodes take them
        rule_files = {**_topology_rule_files(topo), **rule_files}
    spec = topo.shadow  # docs/shadow.md: the [shadow] table applies to these nodes too
    candidate_pool = None
    if spec is not None and spec.candidate == "origin":
        if origin is not None:
            raise NetworkError('a [shadow] candidate = "origin" needs edgesim\'s origin (origin=None)')
        candidate_pool = await _start_candidate_origin(nursery, topo, mode, now, workdir, o)
        if o.candidate_process is not None:
            processes.append(o.candidate_process)

    # The edge nodes.
    lives = net._lives = _Lives(nursery, mode, now, origin_pool, rule_files, manifests, spec, candidate_pool)
    for r in topo.regions:
        policy = balancer or r.edge.balancer
        if policy not in BALANCERS:
            raise NetworkError(f"balancer {policy!r}: expected one of {', '.join(BALANCERS)}")
        net._policies[r.name] = policy
        members = net._members[r.name] = []
        for k in range(r.edge.nodes):
            m = _Member(f"{r.name}-{k}", r.name, r.edge.memory_cache)
            await lives.start(m)
            m.client = lives.client(m)
            members.append(m)
    return net


@dataclass(eq=False)
class _Lives:
    """Starts the lives of a network's edge nodes: the first, and each restart."""

    nursery: trio.Nursery
    mode: str
    now: Callable[[], float]
    origin_pool: Callable[[], OriginPool]
    rule_files: dict[str, list[str]]
    manifests: bool
    spec: ShadowSpec | None
    candidate_pool: Callable[[], OriginPool] | None

    async def start(self, m: _Member) -> None:
        """Start a life of ``m`` and return once it serves (live: listens on its port)."""
        await self.nursery.start(self._live, m)

    async def _live(self, m: _Member, *, task_status: trio.TaskStatus[None]) -> None:
        import trio

        from edgesim._server import HttpServer
        from edgesim.serve import EdgeService, build_node

        node = build_node(name=m.name, memory_bytes=m.memory, rules=self.rule_files, manifests=self.manifests)
        pool = self.origin_pool()
        upstream: Any = pool
        spec = self.spec
        if spec is not None and (not spec.regions or m.region in spec.regions):
            upstream = _shadow_node(m, node, pool, spec, self.candidate_pool)
        service = EdgeService(node, upstream, clock=self.now)
        server = HttpServer(service.handle, server_name=m.name)
        ended = trio.Event()
        try:
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as inner:
                    await inner.start(service.run)  # closes ``pool`` when it ends
                    if self.mode == "live":
                        m.port = await inner.start(server.serve_tcp, "127.0.0.1", m.port or 0)
                    m.node, m.server, m.scope, m.ended, m.conns = node, server, scope, ended, inner
                    m.up = True
                    task_status.started()
        finally:
            if m.ended is ended:
                m.conns = None
            ended.set()

    def client(self, m: _Member) -> OriginPool:
        """The test's connection pool to ``m``: loopback TCP to its port (live), else
        memory streams to its current life's server, refused while it is down."""
        import errno

        from edgesim._client import OriginPool

        if self.mode == "live":
            return OriginPool(f"http://127.0.0.1:{m.port}", read_timeout=CLIENT_READ_TIMEOUT)

        async def open_stream(host: str, port: int) -> trio.abc.Stream:
            inner, server = m.conns, m.server
            if not m.up or inner is None or server is None:
                raise ConnectionRefusedError(errno.ECONNREFUSED, f"{m.name} is down")
            return await _memory_opener(inner, server)(host, port)  # the current life's

        url = f"http://{m.name}.edge.invalid:80"
        return OriginPool(url, read_timeout=CLIENT_READ_TIMEOUT, open_stream=open_stream)


async def _start_candidate_origin(
    nursery: trio.Nursery, topo: Topology, mode: str, now: Callable[[], float], workdir: Path, o: _Origin
) -> Callable[[], OriginPool]:
    """The [shadow] candidate origin: the topology's sites with the ``[shadow.origin]``
    cache settings, in memory (trio) or as a second origin process (live)."""
    from dataclasses import replace

    from edgesim._client import OriginPool
    from edgesim._server import HttpServer

    assert topo.shadow is not None
    overrides = dict(topo.shadow.origin)
    sites = tuple(replace(s, cache=overrides[s.name]) if s.name in overrides else s for s in topo.sites)
    cand = replace(topo, sites=sites)
    if mode == "trio":
        server = HttpServer(_core_handler(build_origin_core(cand, now=now()), now), server_name="candidate")
        opener = _memory_opener(nursery, server)
        return lambda: OriginPool(
            "http://candidate.invalid:80", read_timeout=READ_TIMEOUT, open_stream=opener
        )
    proc, url = await _start_origin_process(
        write_sites(cand, workdir / "candidate-sites"), workdir / "cand.log"
    )
    o.candidate_process = proc
    return lambda: OriginPool(url, read_timeout=READ_TIMEOUT)


def _shadow_node(
    m: _Member,
    node: EdgeNode,
    pool: OriginPool,
    spec: ShadowSpec,
    candidate_pool: Callable[[], OriginPool] | None,
) -> Any:
    """Give ``node``, a life of ``m``, the member's [shadow] (made on its first life and
    kept across crashes, its counters and samples with it); returns the origin the node
    fetches from."""
    from edgesim._shadowlive import ShadowOrigin
    from edgesim.shadow import Shadow, config_from_spec

    if m.shadow is None:
        m.shadow = Shadow(config_from_spec(spec), timer=time.perf_counter)
    shadow = node.shadow = m.shadow
    return pool if candidate_pool is None else ShadowOrigin(pool, candidate_pool(), shadow)


RuleFiles = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]

# What the wrong use of open_network's result is told
_USE_ASYNC_WITH = (
    "edge_network(...) and open_network(...) return an async context manager: start the "
    "network with `async with edge_network(...) as net:` and use `net` inside the block"
)


class _NetworkContext(contextlib.AbstractAsyncContextManager["Network"]):
    """What :func:`open_network` returns: the network for an ``async with``, and a clear
    error for the other ways of using it (``await``, a plain ``with``, ``net.get`` on it)."""

    def __init__(self, cm: contextlib.AbstractAsyncContextManager[Network]) -> None:
        self._cm = cm

    async def __aenter__(self) -> Network:
        return await self._cm.__aenter__()

    async def __aexit__(self, *exc: Any) -> bool | None:
        return await self._cm.__aexit__(*exc)

    def __await__(self) -> Generator[Any, None, Network]:
        raise TypeError(_USE_ASYNC_WITH)

    def __enter__(self) -> Network:
        raise TypeError(_USE_ASYNC_WITH + " (async with, not with)")

    def __exit__(self, *exc: object) -> None:  # pragma: no cover - __enter__ raised
        pass

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("_") and (hasattr(Network, name) or name in Network.__dataclass_fields__):
            raise AttributeError(f"{name}: {_USE_ASYNC_WITH}")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def open_network(
    topology: str | os.PathLike[str] | Topology,
    *,
    mode: Mode = "trio",
    origin: str | Handler | None = None,
    rules: Mapping[str, RuleFiles] | None = None,
    clock: Callable[[], float] | None = None,
    balancer: str | None = None,
    workdir: str | os.PathLike[str] | None = None,
    seed: int | None = None,
    duration: float | None = None,
    faults: bool = False,
) -> contextlib.AbstractAsyncContextManager[Network]:
    """Start a topology's edge network for the body of an ``async with``.

    Args:
        topology: a topology file, a bundled topology's name (``"demo"``) or a
            :class:`~edgesim.topology.Topology`.
        mode: ``"trio"`` (in-process, memory streams, Trio's clock), ``"live"`` (real
            sockets, origin subprocess, wall clock) or ``"virtual"`` (capacity engine).
        origin: None for edgesim's origin serving the topology's sites; else any HTTP
            origin as ``"http://HOST:PORT"`` (it must accept a connection at the start;
            trio mode refuses a URL under autojump_clock), or an ``async (Request) ->
            Response`` handler the network serves itself. Edges fetch manifests only
            from edgesim's origin.
        rules: host -> rule file (``_redirects`` or ``netlify.toml``), or a list of
            both, given to every node; they win over the origin's manifest rules.
            Relative paths are relative to the current directory.
        clock: seconds for the nodes' and origin's ``now`` (default: trio mode a fixed
            epoch plus ``trio.current_time()``; live mode ``time.time``).
        balancer: ``round-robin``, ``random``, ``least-connections`` or
            ``consistent-hash`` for every region (default: each region's own).
        workdir: where live mode writes the origin's sites and log (default: a
            temporary directory, removed afterwards).
        seed, duration: virtual mode: the run's seed and where arrivals stop (seconds;
            default the topology's whole traffic duration).
        faults: trio and live modes: run the topology's ``[[faults.crashes]]`` on
            Trio's clock from the network's start, as the engines do (what happened is
            in ``net.fault_events``). Off by default: a test crashes nodes itself with
            :meth:`Network.crash`. Virtual mode always runs them.

    Yields:
        The running :class:`Network`.

    Resource handling:
        Every node, server, client pool and the origin subprocess belong to the
        network and are closed or stopped (SIGTERM, then kill) when the block exits,
        also on error or cancellation.

    Error handling:
        ``TopologyError`` for a bad topology file, ``RuleFileError`` for a ``rules=``
        file that cannot be read, :class:`NetworkError` when the origin cannot start
        (or a user's origin URL refuses the connection) or the mode cannot do what is
        asked. Rule lines the edges skip are :class:`RuleFileWarning` warnings and
        ``net.rule_problems``.
    """
    return _NetworkContext(
        _open_network(topology, mode, origin, rules, clock, balancer, workdir, seed, duration, faults)
    )


@contextlib.asynccontextmanager
async def _open_network(
    topology: str | os.PathLike[str] | Topology,
    mode: Mode,
    origin: str | Handler | None,
    rules: Mapping[str, RuleFiles] | None,
    clock: Callable[[], float] | None,
    balancer: str | None,
    workdir: str | os.PathLike[str] | None,
    seed: int | None,
    duration: float | None,
    faults: bool,
) -> AsyncIterator[Network]:
    import trio

    if mode not in MODES:
        raise NetworkError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
    topo = _load(topology)
    if mode != "virtual":
        _check_origin(origin)
        _check_live_clock(mode, origin)
    if mode == "virtual":
        from edgesim.engine import simulate

        if origin is not None or rules is not None:
            raise NetworkError("virtual mode models edgesim's origin and the topology's rules only")
        unused = [
            n for n, v in (("balancer", balancer), ("clock", clock), ("workdir", workdir)) if v is not None
        ]
        if unused:
            raise NetworkError(
                f"virtual mode takes no {'=, '.join(unused)}= (the capacity engine runs the topology's "
                "own balancers on simulated time, in memory)"
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise NetworkError(f"seed: expected a whole number >= 0, got {seed!r}")
        if duration is not None and (
            isinstance(duration, bool)
            or not isinstance(duration, int | float)
            or not 0 <= duration < math.inf
        ):
            raise NetworkError(f"duration: expected a number of seconds >= 0, got {duration!r}")
        warmup = topo.traffic.warmup
        if duration is not None and duration <= warmup:
            raise NetworkError(
                f"duration {duration:g}: the run would end inside the topology's warm-up ({warmup:g} s) "
                f"and have no steady-state figure; give more than {warmup:g}"
            )
        problems = _rule_problems(topo, {})
        try:
            result = await trio.to_thread.run_sync(lambda: simulate(topo, seed=seed, stop_at=duration))
        except ValueError as exc:  # the engine refused the topology's load
            raise NetworkError(f"{topo.path or topo.name}: {exc}") from None
        host = topo.sites[0].name.lower() if topo.sites else ""
        yield Network(topo, mode, host, report=result, rule_problems=problems)
        return

    rule_files = _rule_files(rules)
    problems = _rule_problems(topo, rule_files)
    async with contextlib.AsyncExitStack() as stack:
        if workdir is None:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="edgesim-net-"))
        work = Path(workdir)
        try:
            async with trio.open_nursery() as nursery:
                net: Network | None = None
                scheduled = trio.CancelScope()
                processes: list[trio.Process] = []  # the origin's (and candidate's), once started
                try:
                    net = await _start(
                        nursery, topo, mode, origin, rule_files, clock, balancer, work, processes
                    )
                    net.rule_problems = problems
                    if faults:
                        nursery.start_soon(_scheduled_faults, net, scheduled, trio.current_time())
                    yield net
                finally:
                    scheduled.cancel()  # no scheduled crash in the middle of the shutdown
                    with trio.CancelScope(shield=True):
                        if net is not None:
                            for ms in net._members.values():
                                for m in ms:
                                    if m.client is not None:
                                        await m.client.aclose()
                                    if m.shadow is not None:
                                        m.shadow.close()
                            if net._origin is not None and net._origin.client is not None:
                                await net._origin.client.aclose()
                        for proc in processes:  # also when the start failed half-way
                            await _stop_process(proc)
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # Trio groups what its nursery raises: a test's own error, or this start's,
            # comes out as itself (pytest.raises(NetworkError) works)
            single = single_exception(group)
            if isinstance(single, BaseExceptionGroup):
                raise
            raise single from None


# --------------------------------------------------------------------------
# pytest
# --------------------------------------------------------------------------


class NetworkFactory(Protocol):
    """The ``edge_network`` fixture: :func:`open_network` with a per-test workdir."""

    def __call__(
        self, topology: str | os.PathLike[str] | Topology, **kwargs: Any
    ) -> contextlib.AbstractAsyncContextManager[Network]: ...


@pytest.fixture
def edge_network(tmp_path_factory: pytest.TempPathFactory) -> NetworkFactory:
    """A factory of edge networks: ``async with edge_network("demo", mode="trio") as net``.

    Takes :func:`open_network`'s arguments; live mode's files go to a pytest temporary
    directory (kept for inspection, like ``tmp_path``).
    """

    def factory(
        topology: str | os.PathLike[str] | Topology, **kwargs: Any
    ) -> contextlib.AbstractAsyncContextManager[Network]:
        if kwargs.get("mode", "trio") == "live":
            kwargs.setdefault("workdir", tmp_path_factory.mktemp("edgesim-net"))
        return open_network(topology, **kwargs)

    return factory
