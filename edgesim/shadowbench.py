"""``edgesim bench shadow``: what shadowing costs, as a ratio against no shadowing.

Two parts, each with its baseline measured in the same process and interleaved with
the variants (rounds of A, B, C, ... repeated) so that a noisy shared machine affects
them alike:

* **core**: the node core's cost per request (``EdgeNode.handle`` on a warm cache, with
  a rule set of ``rules`` rules; half the requests hit a redirect rule, half a cached
  page) with no shadow, and with each candidate: the same rules as a second native set
  (inline and behind the guard's worker thread), the reference matcher, and a 60%
  rollout.
* **engine**: wall time of a small virtual-engine run without and with a ``[shadow]``.

The figures are wall clock; the ratio is the number to read.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # the CLI imports this module: the cores load when a bench runs
    from edgesim.http import Request
    from edgesim.node import EdgeNode
    from edgesim.redirects import RuleSet
    from edgesim.shadow import ShadowConfig

HOST = "bench.test"


def _rules_text(n: int) -> str:
    lines = [f"/old/{i} /new/{i} 301" for i in range(n - n // 10)]
    lines += [f"/blog/{i}/* /posts/{i}/:splat 302" for i in range(n // 10)]
    return "\n".join(lines) + "\n"


def _node(rules: RuleSet, shadow: ShadowConfig | None) -> EdgeNode:
    from edgesim.cache import HttpCache, MemoryStore
    from edgesim.node import EdgeConfig, EdgeNode
    from edgesim.shadow import Shadow

    node = EdgeNode(
        HttpCache(MemoryStore(2**30)), EdgeConfig(name="bench", manifests=False, rules={HOST: rules})
    )
    if shadow is not None:
        node.shadow = Shadow(shadow, timer=time.perf_counter)
    return node


def _drive(node: EdgeNode, reqs: list[Request], now: float) -> None:
    from edgesim.http import Response
    from edgesim.node import Fetch, Reply

    body = b"x" * 2048
    headers = [
        ("cache-control", "public, max-age=86400"),
        ("date", formatdate(now, usegmt=True)),
        ("content-length", str(len(body))),
    ]
    for req in reqs:
        step = node.handle(req, now)
        while not isinstance(step, Reply):
            assert isinstance(step, Fetch)
            step = node.complete(step, Response(200, list(headers), body), None, now)


def core_costs(rules_count: int = 1000, requests: int = 4000, rounds: int = 5) -> dict[str, Any]:
    """Microseconds per request of the node core without and with each candidate."""
    from edgesim.http import Request
    from edgesim.redirects import RuleSet
    from edgesim.shadow import ShadowConfig

    rules = RuleSet.parse(_rules_text(rules_count))
    twin = RuleSet.parse(_rules_text(rules_count))
    n_old = rules_count - rules_count // 10
    reqs = []
    for i in range(requests):
        target = f"/old/{(i * 7919) % n_old}" if i % 2 else f"/page/{i % 500}.html"
        reqs.append(Request("GET", target, [("host", HOST)]))
    variants: dict[str, ShadowConfig | None] = {
        "baseline": None,
        "rules_inline": ShadowConfig("rules", rules={HOST: twin}, timeout=0.0),
        "rules_guarded": ShadowConfig("rules", rules={HOST: twin}),
        "reference_guarded": ShadowConfig("reference", timeout=1.0),
        "rollout_0.6_rules_guarded": ShadowConfig("rules", rollout=0.6, rules={HOST: twin}),
    }
    now = time.time()
    nodes = {name: _node(rules, cfg) for name, cfg in variants.items()}
    for node in nodes.values():
        _drive(node, reqs, now)  # warm: fills, reference compile, worker thread
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, node in nodes.items():
            t0 = time.perf_counter()
            _drive(node, reqs, now)
            samples[name].append((time.perf_counter() - t0) / len(reqs) * 1e6)
    base = statistics.median(samples["baseline"])
    out: dict[str, Any] = {"rules": rules_count, "requests_per_round": requests, "rounds": rounds}
    for name, vals in samples.items():
        med = statistics.median(vals)
        entry: dict[str, Any] = {"us_per_request": round(med, 2), "ratio": round(med / base, 2)}
        shadow = nodes[name].shadow
        if shadow is not None:
            st = shadow.statistics()
            entry["mismatches"] = st["mismatches"]
            entry["compared"] = st["compared"]
            entry["candidate_us_per_compared"] = round(st["candidate_us_per_request"] or 0.0, 2)
        out[name] = entry
    return out


def engine_costs(rounds: int = 3) -> dict[str, Any]:
    """Wall seconds of a small virtual run without and with ``[shadow]``."""
    import tempfile
    from pathlib import Path

    from edgesim._topoload import parse_topology
    from edgesim.engine import simulate

    base = """name = "bench"\nseed = 1\n[[regions]]\nname = "r"\n[regions.edge]\nnodes = 2\n
[[sites]]\nname = "shop.test"\nrules = "_redirects"\nredirect_share = 0.3\n[sites.catalog]\nobjects = 2000\n
[traffic]\nduration = "20s"\npeak_rps = 1000\ndiurnal = "flat"\n"""
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "_redirects").write_text(_rules_text(1000))
        topo_path = Path(d) / "t.toml"
        texts = {
            "baseline": base,
            "rules_shadow": base
            + '[shadow]\ncandidate = "rules"\n[shadow.rules]\n"shop.test" = "_redirects"\n',
            "rules_rollout_0.6": base + '[shadow]\ncandidate = "rules"\nrollout = 0.6\n'
            '[shadow.rules]\n"shop.test" = "_redirects"\n',
        }
        topos = {k: parse_topology(v, path=topo_path) for k, v in texts.items()}
        walls: dict[str, list[float]] = {k: [] for k in topos}
        requests = 0
        for _ in range(rounds):
            for k, topo in topos.items():
                r = simulate(topo)
                walls[k].append(r.timing["loop_seconds"])
                requests = r.report["meta"]["simulated_requests"]
    b = statistics.median(walls["baseline"])
    out: dict[str, Any] = {"simulated_requests": requests, "rounds": rounds}
    for k, v in walls.items():
        out[k] = {"loop_seconds": round(statistics.median(v), 3), "ratio": round(statistics.median(v) / b, 2)}
    return out


def live_costs(requests: int = 1500, rounds: int = 5) -> dict[str, Any]:
    """Mean latency of sequential keep-alive requests to a live edge on loopback (the
    origin embedded, the client in the same process), without and with a candidate."""
    import tempfile
    from functools import partial
    from pathlib import Path

    import trio

    from edgesim._client import OriginPool
    from edgesim._shadowlive import attach_shadow
    from edgesim.http import Request
    from edgesim.redirects import RuleSet
    from edgesim.serve import EmbeddedOrigin, build_node, serve_edge
    from edgesim.shadow import ShadowConfig

    with tempfile.TemporaryDirectory() as d:
        site = Path(d) / HOST
        site.mkdir()
        for i in range(50):
            (site / f"page-{i}.html").write_text(f"page {i}\n" * 100)
        (site / "_redirects").write_text(_rules_text(1000))
        n_old = 1000 - 100
        targets = [f"/old/{(i * 7919) % n_old}" if i % 2 else f"/page-{i % 50}.html" for i in range(requests)]
        v2 = {HOST: RuleSet.parse(_rules_text(1000))}
        variants: dict[str, ShadowConfig | None] = {
            "baseline": None,
            "rules_inline": ShadowConfig("rules", rules=v2, timeout=0.0),
            "rules_guarded": ShadowConfig("rules", rules=v2),
            "reference_guarded": ShadowConfig("reference", timeout=1.0),
        }

        async def one(cfg: ShadowConfig | None) -> float:
            node = build_node(name="bench", memory_bytes=64 * 2**20)
            origin: Any = EmbeddedOrigin(d)
            if cfg is not None:
                origin = attach_shadow(node, origin, cfg)
            async with trio.open_nursery() as nursery:
                port = await nursery.start(partial(serve_edge, node, origin, port=0))
                pool = OriginPool(f"http://127.0.0.1:{port}", read_timeout=30)
                for t in targets[:200]:  # warm: manifest, fills, reference compile
                    await pool.request(Request("GET", t, [("host", HOST)]))
                t0 = time.perf_counter()
                for t in targets:
                    await pool.request(Request("GET", t, [("host", HOST)]))
                elapsed = time.perf_counter() - t0
                await pool.aclose()
                if node.shadow is not None:
                    node.shadow.close()
                nursery.cancel_scope.cancel()
            return elapsed / len(targets) * 1e6

        samples: dict[str, list[float]] = {k: [] for k in variants}

        async def main() -> None:
            for _ in range(rounds):
                for k, cfg in variants.items():
                    samples[k].append(await one(cfg))

        trio.run(main)
    base = statistics.median(samples["baseline"])
    out: dict[str, Any] = {"requests_per_round": requests, "rounds": rounds}
    for k, v in samples.items():
        med = statistics.median(v)
        out[k] = {"us_per_request": round(med, 1), "ratio": round(med / base, 2)}
    return out


PARTS = ("core", "engine", "live")


def run(parts: str = "core,engine,live", emit: Callable[[str], None] = print) -> dict[str, Any]:
    import platform

    doc: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    if "core" in parts:
        doc["core"] = core_costs()
    if "engine" in parts:
        doc["engine"] = engine_costs()
    if "live" in parts:
        doc["live"] = live_costs()
    emit(json.dumps(doc, indent=1))
    return doc


def _command() -> Any:
    def check_parts(ctx: click.Context, param: click.Parameter, value: str) -> str:
        bad = [p for p in value.split(",") if p not in PARTS]
        if bad or not value:
            raise click.BadParameter(f"expected a comma-separated list of {', '.join(PARTS)}, got {value!r}")
        return value

    @click.command("shadow", short_help="Shadowing: cost per request vs no shadow (core, engine, live).")
    @click.option(
        "--parts",
        default="core,engine,live",
        show_default=True,
        callback=check_parts,
        help="Comma-separated: core, engine, live.",
    )
    def shadow_bench_command(parts: str) -> None:
        """Print JSON: the node core's, the engine's and a live edge's cost with each
        candidate, as a ratio against no shadowing measured in the same process."""
        run(parts, emit=click.echo)

    return shadow_bench_command


shadow_bench_command = _command()
