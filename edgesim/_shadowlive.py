"""The live shell's side of shadowing: a second origin beside the first, and the
``edgesim edge serve --shadow ...`` options.

The comparison itself is :class:`edgesim.shadow.Shadow` (sans-IO); rule candidates run
inside the node. Here only I/O: :class:`ShadowOrigin` sends a comparable origin request
to both origins at once, waits for the candidate at most ``timeout`` seconds, and lets
the shadow decide which response the node gets.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import trio

from edgesim._client import InterimCallback
from edgesim.errors import EdgesimError
from edgesim.http import Request, Response
from edgesim.node import EdgeNode
from edgesim.shadow import (
    DEFAULT_SAMPLES,
    DEFAULT_TIMEOUT,
    Shadow,
    ShadowConfig,
    comparable_origin_request,
    compile_rule_files,
    site_rule_files,
)
from edgesim.topology import Topology

__all__ = ["ShadowOptionError", "ShadowOrigin", "attach_shadow", "parse_shadow_options", "shadow_args"]


class ShadowOrigin:
    """An origin that asks a candidate origin too (the ``Origin`` protocol of
    ``edgesim.serve``).

    Args:
        primary: the origin whose answers are served.
        candidate: the origin compared with it.
        shadow: the node's shadow (counters, samples, rollout).

    Resource handling: :meth:`aclose` closes both origins.

    Error handling: the primary's errors propagate unchanged; the candidate's
    exceptions, timeouts and malformed responses are recorded and never reach the
    caller.
    """

    def __init__(self, primary: Any, candidate: Any, shadow: Shadow) -> None:
        self.primary = primary
        self.candidate = candidate
        self.shadow = shadow

    async def request(self, req: Request, *, on_interim: InterimCallback | None = None) -> Response:
        shadow = self.shadow
        host = next((v for k, v in req.headers if k == "host"), "")
        if not comparable_origin_request(req):
            return await self._primary(req, on_interim)
        shadow.stats.seen += 1
        if not shadow.selected(host, req.target):
            return await self._primary(req, on_interim)
        timeout = shadow.config.timeout or float("inf")
        outcome: list[tuple[str, Any]] = [("timeout", None)]
        done_at = [0.0]

        async def run_candidate() -> None:
            with trio.move_on_after(timeout):
                try:
                    copy = Request(req.method, req.target, list(req.headers), req.body, req.http_version)
                    outcome[0] = ("ok", await self.candidate.request(copy))
                except Exception as exc:
                    outcome[0] = ("error", f"{type(exc).__name__}: {str(exc)[:200]}")
            done_at[0] = time.perf_counter()

        failure: Exception | None = None
        resp: Response | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_candidate)
            try:
                resp = await self._primary(req, on_interim)
            except Exception as exc:  # re-raised bare below, not as an ExceptionGroup
                failure = exc
                nursery.cancel_scope.cancel()
            primary_at = time.perf_counter()
        if failure is not None:
            raise failure
        assert resp is not None
        extra = max(0.0, done_at[0] - primary_at)
        return shadow.compare_responses(req, resp, outcome[0], time.time(), extra)

    async def _primary(self, req: Request, on_interim: InterimCallback | None) -> Response:
        if on_interim is None:
            return await self.primary.request(req)  # type: ignore[no-any-return]
        return await self.primary.request(req, on_interim=on_interim)  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        try:
            await self.candidate.aclose()
        finally:
            await self.primary.aclose()


def parse_shadow_options(
    specs: Sequence[str], rollout: float | None, timeout: float | None, samples: int | None
) -> ShadowConfig | None:
    """``--shadow`` values (``reference``, ``rules:HOST=FILE`` (repeatable; a host twice
    gives its _redirects and its netlify.toml) or
    ``origin:URL``) plus ``--rollout``/``--shadow-timeout``/``--shadow-samples``.

    Raises:
        ValueError: with a one-line message naming the option.
    """
    if not specs:
        for name, v in (("--rollout", rollout), ("--shadow-timeout", timeout), ("--shadow-samples", samples)):
            if v is not None:
                raise ValueError(f"{name} needs --shadow")
        return None
    kinds = {s.partition(":")[0] for s in specs}
    if len(kinds) > 1:
        raise ValueError(f"--shadow: one kind of candidate per node, got {', '.join(sorted(kinds))}")
    kind = kinds.pop()
    rules: dict[str, Any] = {}
    origin = ""
    if kind == "reference":
        if any(s != "reference" for s in specs) or len(specs) > 1:
            raise ValueError("--shadow reference takes no value and is given once")
    elif kind == "rules":
        try:
            files = site_rule_files([s.partition(":")[2] for s in specs])
        except ValueError as exc:
            raise ValueError(f"--shadow rules:HOST=FILE: {exc}") from None
        for host, paths in files.items():
            rules[host] = compile_rule_files(paths)
    elif kind == "origin":
        if len(specs) > 1:
            raise ValueError("--shadow origin:URL is given once")
        origin = specs[0].partition(":")[2]
        if not origin.startswith(("http://", "embedded:")):
            raise ValueError(
                f"--shadow: expected origin:http://HOST:PORT or origin:embedded:DIR, got {specs[0]!r}"
            )
    else:
        raise ValueError(f"--shadow: expected reference, rules:HOST=FILE or origin:URL, got {specs[0]!r}")
    return ShadowConfig(
        kind,
        rollout=rollout,
        timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
        samples=DEFAULT_SAMPLES if samples is None else samples,
        rules=rules,
        origin=origin,
    )


class ShadowOptionError(EdgesimError, ValueError):
    """A topology's [shadow] table cannot be given to separate edge processes."""


def shadow_args(topology: Topology, region: str) -> tuple[str, ...]:
    """``edgesim edge serve`` options for an edge of ``region`` from the topology's
    ``[shadow]`` table (the crash drill starts its edges with them); () without one.

    Raises:
        ShadowOptionError: an origin candidate (the drill starts one origin only).
    """
    spec = topology.shadow
    if spec is None or (spec.regions and region not in spec.regions):
        return ()
    if spec.candidate == "origin":
        raise ShadowOptionError(
            '[shadow] candidate = "origin" runs in the engine and in edgesim.testing networks; '
            "separate edge processes take rule candidates only (or edge serve --shadow origin:URL)"
        )
    # (fixed-point: 5e-05s is no duration to parse_duration)
    args = ["--shadow-timeout", f"{spec.timeout:.9f}s", "--shadow-samples", str(spec.samples)]
    if spec.rollout is not None:
        args += ["--rollout", repr(spec.rollout)]
    if spec.candidate == "reference":
        return ("--shadow", "reference", *args)
    for host, paths in spec.rules:
        for path in paths:
            args += ["--shadow", f"rules:{host}={path}"]
    return tuple(args)


def attach_shadow(node: EdgeNode, origin: Any, config: ShadowConfig) -> Any:
    """Give ``node`` a shadow for ``config``; returns the origin to serve with (wrapped
    when the candidate is an origin)."""
    shadow = Shadow(config, timer=time.perf_counter)
    node.shadow = shadow
    if config.candidate == "origin":
        from edgesim.serve import make_origin

        return ShadowOrigin(origin, make_origin(config.origin), shadow)
    return origin
