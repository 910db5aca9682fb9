"""Calibration (``edgesim calibrate``): measure an edge node's CPU time per request on
this machine and write it as a cost model that topologies reference.

Theory of operation
-------------------
*Live part.* A real origin process serves one small site on loopback. Two real edge
nodes (Trio + h11 shells around the sans-IO core, as ``edgesim edge serve`` runs them)
serve in one thread of this process: one with a memory tier only, one whose memory
tier admits nothing so that every hit comes from its diskcache tier. A client in its
own process sends N sequential requests per outcome class on one keep-alive
connection, and the edge thread's CPU clock (``pthread_getcpuclockid``) is read before
and after: CPU seconds / N is the class's cost, with HTTP parsing, the shell, the
origin connection pool and the cache included, and neither the client's nor the
origin's CPU. The classes: a memory hit, a disk hit, a miss (a new URL each time), a
304 revalidation (a ``no-cache`` object), and a redirect answered by a rule. Every
response's X-Cache (and the disk tier's hit count) is checked, so a class measures
only its outcome. Each class runs ``rounds`` times and the median is kept.

*Rule matching.* For each site of the topology that has rules, the native matcher's
CPU time per request is measured in this thread on the requests the engine would send
that site (its URL popularity, redirect share and visitor headers). The calibration
site's own small rule set is measured the same way and taken off the live figures, so
the classes exclude matching and each site adds its own.
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from edgesim import __version__
from edgesim._atomic import write_atomic
from edgesim._costs import CLASSES, format_costs, read_cost_file, site_has_rules
from edgesim.errors import EdgesimError
from edgesim.topology import CostModel, Topology

__all__ = ["CalibrationError", "calibrate", "write_cost_file"]

HOST = "calibrate.test"
# The calibration site's rules: one redirect (the redirect class) that other paths miss.
_RULES = "/old/*  /new/:splat  301\n"
# Object size of the hit, miss and revalidation classes: a small page, so that the
# figures are per-request work rather than copying bytes.
OBJECT_BYTES = 1024
# Client connections sending at once: under load an edge process serves many requests
# per event-loop wake-up, so its CPU per request is lower than one request at a time.
DEFAULT_CONNECTIONS = 8
MAX_CONNECTIONS = 64
# Phases and the X-Cache every response must carry.
_PHASES = (
    ("hit_memory", "/small.bin", "HIT"),
    ("redirect", "/old/page-{i}", "REDIRECT"),
    ("miss", "/small.bin?r={r}&n={i}", "MISS"),
    ("revalidate", "/reval-{c}.bin", "REVALIDATED"),
    ("hit_disk", "/small.bin", "HIT"),
)


class CalibrationError(EdgesimError, RuntimeError):
    """The measurement could not be made (a process did not start, or a response had
    an outcome other than the one measured)."""


def _make_site(root: Path) -> None:
    site = root / HOST
    site.mkdir(parents=True)
    (site / "small.bin").write_bytes(b"x" * OBJECT_BYTES)
    for c in range(MAX_CONNECTIONS):  # one per connection: concurrent revalidations never collapse
        (site / f"reval-{c}.bin").write_bytes(b"r" * OBJECT_BYTES)
    (site / "_redirects").write_text(_RULES)
    (site / "_edgesim.toml").write_text(
        '[cache]\ndefault = "public, max-age=86400"\n\n[cache.paths]\n"/reval-*" = "public, no-cache"\n'
    )


class _Edges:
    """Edge nodes served by one Trio loop in a thread of this process, whose CPU
    clock is the measurement."""

    def __init__(self, nodes: list[Any], origin_url: str) -> None:
        self.nodes = nodes
        self.origin_url = origin_url
        self.ports: list[int] = []
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._token: Any = None
        self._scope: Any = None
        self._thread = threading.Thread(target=self._main, name="calibrate-edges", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30) or self.error is not None:
            raise CalibrationError(f"the edge nodes did not start: {self.error or 'timeout'}")
        assert self._thread.ident is not None
        self._clock = time.pthread_getcpuclockid(self._thread.ident)

    def cpu(self) -> float:
        return time.clock_gettime(self._clock)

    def _main(self) -> None:
        import trio

        try:
            trio.run(self._serve)
        except BaseException as exc:  # reported to the caller through start()
            self.error = exc
            self._ready.set()

    async def _serve(self) -> None:
        import trio

        from edgesim.serve import make_origin, serve_edge

        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            self._scope = nursery.cancel_scope
            for node in self.nodes:
                port = await nursery.start(partial(serve_edge, node, make_origin(self.origin_url), port=0))
                self.ports.append(int(port))
            self._ready.set()

    def stop(self) -> None:
        import trio

        if self._token is not None and self._thread.is_alive():
            trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
        self._thread.join(10)


def _client(port: int, path: str, n: int, connections: int = 1) -> dict[str, dict[str, int]]:
    cmd = [
        sys.executable,
        "-P",
        "-m",
        "edgesim._calibclient",
        str(port),
        HOST,
        path,
        str(n),
        str(connections),
    ]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60 + n * 0.1, check=True)
    except subprocess.CalledProcessError as exc:
        raise CalibrationError(f"the calibration client failed: {exc.stderr.strip()[-300:]}") from None
    except subprocess.TimeoutExpired:
        raise CalibrationError("the calibration client timed out") from None
    result: dict[str, dict[str, int]] = json.loads(out.stdout)
    return result


def _live(samples: int, rounds: int, connections: int, progress: Callable[[str], None]) -> dict[str, float]:
    """Seconds of edge CPU per request of each class (rule matching of the
    calibration site included)."""
    from edgesim._cachestore import DiskStore, MemoryStore
    from edgesim.cache import HttpCache
    from edgesim.edgebench import _free_port, _stop, _wait_port
    from edgesim.node import EdgeConfig, EdgeNode

    with tempfile.TemporaryDirectory(prefix="edgesim-calibrate-") as tmp, ExitStack() as stack:
        root = Path(tmp) / "sites"
        _make_site(root)
        port = _free_port()
        log_path = Path(tmp) / "origin.log"
        log = stack.enter_context(log_path.open("wb"))
        origin = subprocess.Popen(
            [sys.executable, "-P", "-m", "origin", "--sites", str(root), "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        stack.callback(_stop, origin)
        try:
            _wait_port(port, origin)
        except RuntimeError as exc:
            why = log_path.read_text(errors="replace").strip()
            last = why.splitlines()[-1] if why else ""
            raise CalibrationError(f"the origin did not start: {exc}{': ' + last if last else ''}") from None
        disk = DiskStore(str(Path(tmp) / "disk"), 2**30)
        stack.callback(disk.close)
        memory_node = EdgeNode(HttpCache(MemoryStore(2**30)), EdgeConfig(name="calibrate-memory"))
        # a memory tier that admits nothing: every hit is a disk-tier hit
        disk_node = EdgeNode(
            HttpCache(MemoryStore(2**20, max_object_bytes=1), disk), EdgeConfig(name="calibrate-disk")
        )
        edges = _Edges([memory_node, disk_node], f"http://127.0.0.1:{port}")
        stack.callback(edges.stop)
        edges.start()
        mem_port, disk_port = edges.ports
        # warm up: manifests, fills, the revalidated object, the disk tier
        for p, path in ((mem_port, "/small.bin"), (disk_port, "/small.bin")):
            _client(p, path, 2)
        _client(mem_port, "/reval-{c}.bin", 2 * connections, connections)
        _client(mem_port, "/small.bin?warm={i}", 20)
        _client(mem_port, "/old/warm-{i}", 20)
        figures: dict[str, list[float]] = {c: [] for c in CLASSES}
        for r in range(rounds):
            for name, path, expect in _PHASES:
                progress(f"round {r + 1}/{rounds}: {name.replace('_', ' ')} x {samples}")
                target_port = disk_port if name == "hit_disk" else mem_port
                disk_hits = disk_node.cache.disk_hits
                c0 = edges.cpu()
                got = _client(target_port, path.replace("{r}", str(r)), samples, connections)
                cpu = edges.cpu() - c0
                if got["x_cache"] != {expect: samples}:
                    raise CalibrationError(
                        f"{name}: expected {samples} responses with X-Cache {expect}, got {got['x_cache']} "
                        f"(status {got['status']})"
                    )
                if name == "hit_disk" and disk_node.cache.disk_hits - disk_hits != samples:
                    raise CalibrationError("hit_disk: the disk tier did not answer every request")
                figures[name].append(cpu / samples)
    return {c: statistics.median(v) for c, v in figures.items()}


def _match_time(rules: Any, requests: list[tuple[str, Any, str | None]], rounds: int) -> float:
    """CPU seconds per ``rules.match`` over ``requests`` (least disturbed of ``rounds``),
    called as the edge node calls it."""
    now = time.time()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.thread_time()
        for url, headers, country in requests:
            # a bare try, not contextlib.suppress: its cost would be measured too
            try:  # noqa: SIM105
                rules.match(url, headers=headers, country=country, now=now)
            except ValueError:
                pass  # the node treats an unmatchable URL as no match
        best = min(best, (time.thread_time() - t0) / max(1, len(requests)))
    return best


def _site_requests(topo: Topology, samples: int) -> dict[str, tuple[Any, list[tuple[str, Any, str | None]]]]:
    """Per site with rules: its compiled rules and ``samples`` requests as the engine
    draws them (popularity, redirect share, visitor headers of every region)."""
    import numpy as np

    from edgesim.engine import _Engine
    from edgesim.http import get_header

    eng = _Engine(topo, topo.seed, 0.0)
    gen = np.random.default_rng(topo.seed)
    out: dict[str, tuple[Any, list[tuple[str, Any, str | None]]]] = {}
    for i, site in enumerate(topo.sites):
        host = site.name.lower()
        deploy = eng.origin.sites[host].deploy
        if not site_has_rules(site) or deploy.rules is None:
            continue
        m = eng.sites[i]
        visitors = [h for per_region in eng.headers[i] for h in per_region]
        reqs = []
        for k in range(samples):
            if m.redirects and gen.random() < m.redirect_share:
                target = m.redirects[int(gen.integers(len(m.redirects)))]
            else:
                target = m.url()
            headers = visitors[k % len(visitors)]
            url = "https://" + host + target if target.startswith("/") else target
            reqs.append((url, headers, get_header(headers, "x-country")))
        out[site.name] = (deploy.rules, reqs)
    return out


def calibrate(
    topology: Topology | None,
    *,
    profile: str = "default",
    samples: int = 1000,
    rounds: int = 3,
    connections: int = DEFAULT_CONNECTIONS,
    progress: Callable[[str], None] | None = None,
) -> tuple[CostModel, dict[str, Any], dict[str, Any]]:
    """Measure this machine's edge CPU costs.

    Args:
        topology: whose sites' rule matching to measure (None: no sites).
        profile: the hardware profile's name the model gets.
        samples: requests per class and round (and per site for matching).
        rounds: passes per class; the median is kept.
        connections: client connections sending at once (1 to MAX_CONNECTIONS).
        progress: called with a line per step.

    Returns:
        (the model, the informative keys of its file, details: the raw live figures
        and the matching time taken off them).

    Raises:
        CalibrationError: a process did not start or an outcome was not the expected one.
    """
    say = progress or (lambda _m: None)
    say("live edge nodes in front of a real origin on loopback")
    if not 1 <= connections <= MAX_CONNECTIONS:
        raise ValueError(f"connections must be from 1 to {MAX_CONNECTIONS}, not {connections}")
    live = _live(samples, rounds, connections, say)
    from edgesim.http import Request
    from edgesim.redirects import RuleSet

    say("rule matching")
    calib_rules = RuleSet.parse(_RULES)
    headers = Request("GET", "/", [("host", HOST)]).headers
    own = _match_time(
        calib_rules,
        [(f"https://{HOST}/small.bin", headers, None), (f"https://{HOST}/old/page-1", headers, None)]
        * max(1, samples // 2),
        rounds,
    )
    times = {c: max(live[c] - own, 1e-9) for c in CLASSES}
    rules: list[tuple[str, float]] = []
    if topology is not None:
        for name, (compiled, reqs) in _site_requests(topology, samples).items():
            say(f"rule matching: {name} ({len(compiled)} rules)")
            rules.append((name, _match_time(compiled, reqs, rounds)))
    model = CostModel(
        profile,
        None,
        rules=tuple(rules),
        rules_default=max((t for _, t in rules), default=own),
        **times,
    )
    info = {
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": _machine(),
        "python": platform.python_version(),
        "edgesim": __version__,
        "samples": samples,
        "connections": connections,
        "note": f"per class: median of {rounds} rounds; object {OBJECT_BYTES} bytes; loopback",
    }
    details = {
        "live_seconds": live,
        "calibration_rules_seconds": own,
        "topology": topology.name if topology is not None else None,
    }
    return model, info, details


def _machine() -> str:
    from edgesim.rulebench import machine

    return machine()


def write_cost_file(path: str | Path, model: CostModel, info: dict[str, Any]) -> None:
    """Write ``model`` into the cost file at ``path`` (atomically), keeping the other
    profiles a file already there holds.

    Raises:
        TopologyError: an existing file that is not a valid cost file (it is left alone).
        OSError: the file cannot be written.
    """
    p = Path(path)
    models: dict[str, CostModel] = {}
    infos: dict[str, dict[str, Any]] = {}
    if p.exists():
        import tomllib

        models = read_cost_file(p)
        raw = tomllib.loads(p.read_text(encoding="utf-8")).get("profiles", {})
        infos = {k: {i: v for i, v in t.items() if not isinstance(v, dict)} for k, t in raw.items()}
    models[model.profile] = replace(model, file=p)
    infos[model.profile] = info
    write_atomic(p, format_costs(list(models.values()), infos))
