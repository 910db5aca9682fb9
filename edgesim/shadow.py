"""Shadow comparison and rollout: a *candidate* evaluated beside the *primary*.

Theory of operation
-------------------
An edge node may carry a :class:`Shadow` (``EdgeNode.shadow``). It compares, for each
request, the decision of the primary with that of a candidate:

* ``reference``: the pure-Python reference matcher on the same rules as the native one;
* ``rules``: a second rule set per site (v2 against the v1 the node uses);
* ``origin``: a second origin (the live shell wraps the origin, see
  ``edgesim._shadowlive.ShadowOrigin``; the comparison lives here).

A decision is ``(status, target, cache)`` (:class:`Decision`): for rules, the rule's
status, the URL it sends the visitor to or serves, and the way the request then goes
(``redirect``: answered at the edge, never cached; ``rewrite``: served through the cache
under the rule's target; ``origin``: a proxy rule, passed to the origin; ``lookup``: no
rule applies, served through the cache under the request's own URL). An unforced rule
shadowed by a file of the deploy counts as ``lookup``, exactly as the node treats it.
For origins: the response status, its ``Location`` and its ``Cache-Control``.

Modes. **Shadow** (``rollout`` is None): every request runs the candidate, the primary's
answer is served. **Rollout** (``rollout = f``): the requests whose stable hash (site and
URL, so one URL always goes the same way) falls below ``f`` go to the candidate; the
primary still runs and the candidate's answer is served only when both agree. Requests
outside the fraction never run the candidate.

Safety. The candidate runs under :class:`Guard`: an exception becomes an ``error``
event, a value of the wrong shape a ``garbage`` event, and a call that has not returned
after ``timeout`` seconds a ``timeout`` event. In each case the primary's answer is
served and the event is counted and sampled. A call that times out leaves its worker
thread behind (Python cannot stop a thread); after :data:`MAX_STUCK` of them the
candidate is switched off (``disabled``) rather than leak threads.

Time: the node gives ``now`` as always; the latency cost (the seconds spent in the
candidate, which is what shadowing adds to a request) is measured only when the driver
passes a ``timer`` (the live shell and the engine pass ``time.perf_counter``). Nothing
here reads a clock by itself, and with no timer a run is deterministic.

Cost when not configured: the node tests ``self.shadow is None`` once per rule
evaluation, nothing else.
"""

from __future__ import annotations

import _thread
import contextvars
import queue
import re
import threading
import zlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgesim._reqfields import request_path, resolve_file
from edgesim.http import Request, Response, get_header
from edgesim.redirects import Match

if TYPE_CHECKING:
    from edgesim.topology import ShadowSpec, Topology

__all__ = [
    "ANSWERED_BY",
    "CANDIDATES",
    "DEFAULT_SAMPLES",
    "DEFAULT_TIMEOUT",
    "MAX_STUCK",
    "Decision",
    "Guard",
    "Shadow",
    "ShadowConfig",
    "rollout_bucket",
]

# Response header naming who answered: "primary" or "candidate".
ANSWERED_BY = "x-edgesim-answered-by"
CANDIDATES = ("reference", "rules", "origin")
# 50 ms: a native match costs microseconds and a reference match well under a
# millisecond on real rule sets, so a candidate still busy after 50 ms is broken, and a
# request that waits for it is still within a typical edge latency budget.
DEFAULT_TIMEOUT = 0.05
# Samples kept per node: enough to see the pattern of a mismatch, small enough for the
# stats endpoint and the report.
DEFAULT_SAMPLES = 20
# Worker threads abandoned by timed-out calls before the candidate is switched off.
MAX_STUCK = 4

PRIMARY = "primary"
CANDIDATE = "candidate"

# The answer of the request being handled, for the live shell's header (a contextvar:
# one Trio task per request, and the node runs inside it).
_answered: contextvars.ContextVar[str] = contextvars.ContextVar("edgesim_answered_by", default=PRIMARY)


@dataclass(frozen=True, slots=True)
class ShadowConfig:
    """What a node compares, and how.

    Attributes:
        candidate: ``reference``, ``rules`` or ``origin``.
        rollout: None for shadow mode, else the fraction (0-1) of requests handed to
            the candidate.
        timeout: seconds a candidate call may take; 0 runs it inline with no bound
            (only for a trusted candidate, e.g. v2 rules on the native matcher).
        samples: mismatches and failures kept (the most recent).
        rules: host -> candidate rule set (``candidate = "rules"``); sites without one
            are not compared.
        origin: the candidate origin (``candidate = "origin"``), for the live shell.
    """

    candidate: str
    rollout: float | None = None
    timeout: float = DEFAULT_TIMEOUT
    samples: int = DEFAULT_SAMPLES
    rules: Mapping[str, Any] = field(default_factory=dict)
    origin: str = ""

    def __post_init__(self) -> None:
        if self.candidate not in CANDIDATES:
            raise ValueError(
                f"shadow candidate must be one of {', '.join(CANDIDATES)}, not {self.candidate!r}"
            )
        if self.rollout is not None and not 0.0 <= self.rollout <= 1.0:
            raise ValueError(f"rollout must be between 0 and 1, not {self.rollout!r}")
        if not self.timeout >= 0.0:
            raise ValueError(f"shadow timeout must be >= 0 seconds, not {self.timeout!r}")
        if self.samples < 0:
            raise ValueError(f"shadow samples must be >= 0, not {self.samples!r}")
        if self.candidate == "origin" and not self.origin:
            raise ValueError("an origin candidate needs the candidate origin's URL")


@dataclass(frozen=True, slots=True)
class Decision:
    """What an answer decides: status, target, and the way it goes through the cache."""

    status: int
    target: str
    cache: str

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "target": self.target, "cache": self.cache}


_LOOKUP = Decision(0, "", "lookup")


def rule_decision(m: Match | None, target: str, exists: Callable[[str], bool] | None) -> Decision:
    """The decision a node takes on match ``m`` for request target ``target``."""
    if m is None:
        return _LOOKUP
    if m.denied:
        return Decision(404, "/404.html", "rewrite")
    if not m.force and exists is not None and resolve_file(request_path(target), exists):
        return _LOOKUP  # the deploy's file wins (spec R2.20)
    if m.is_redirect:
        return Decision(m.status, m.location, "redirect")
    if m.is_rewrite:
        return Decision(m.status, m.location, "rewrite")
    return Decision(m.status, m.location, "origin")


def response_decision(resp: Response) -> Decision:
    """An origin response's decision: status, Location, normalised Cache-Control."""
    cc = get_header(resp.headers, "cache-control") or ""
    directives = sorted({d.strip().lower() for d in cc.split(",") if d.strip()})
    return Decision(resp.status, get_header(resp.headers, "location") or "", ", ".join(directives))


def rollout_bucket(host: str, target: str) -> float:
    """The request's stable position in [0, 1): CRC-32 of site and URL.

    CRC-32 rather than a seeded hash: the same URL goes the same way on every node and
    in every run (a visitor who got the candidate's answer keeps getting it)."""
    return zlib.crc32(f"{host}\x00{target}".encode("utf-8", "surrogatepass")) / 4294967296.0


class _Garbage(Exception):
    """The candidate returned a value of the wrong shape."""


class _Job:
    __slots__ = ("args", "done", "error", "fn", "value")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.done = _thread.allocate_lock()
        self.done.acquire()
        self.value: Any = None
        self.error: BaseException | None = None


class Guard:
    """Runs candidate calls with a deadline on a worker thread.

    Resource handling: the worker is a daemon thread, started on first use, fed through
    a ``queue.SimpleQueue`` and answering through a raw lock per call (both in C: the
    hand-over is two thread wake-ups, the whole cost of the guard). A call that overruns
    its deadline keeps its thread (it cannot be stopped); a new worker with a new queue
    takes over, and the stuck one exits when (if) its call returns. After ``max_stuck``
    such threads :attr:`disabled` is set and calls return ``("disabled", None)`` at once.

    Error handling: :meth:`call` never raises for the candidate's failures; it returns
    ``(kind, value)`` with kind ``ok``, ``error`` (value: the exception's text),
    ``timeout`` or ``disabled``.
    """

    def __init__(self, timeout: float, *, max_stuck: int = MAX_STUCK) -> None:
        self.timeout = timeout
        self.max_stuck = max_stuck
        self.stuck = 0
        self.disabled = False  # switched off after max_stuck timeouts
        self.closed = False
        self._queue: queue.SimpleQueue[_Job | None] | None = None

    def call(self, fn: Callable[..., Any], *args: Any) -> tuple[str, Any]:
        if self.disabled or self.closed:
            return "disabled", None
        if self.timeout <= 0:
            try:
                return "ok", fn(*args)
            except Exception as exc:
                return "error", _describe(exc)
        q = self._queue
        if q is None:
            q = self._queue = queue.SimpleQueue()
            threading.Thread(target=self._work, args=(q,), name="edgesim-shadow", daemon=True).start()
        job = _Job(fn, args)
        q.put(job)
        if not job.done.acquire(timeout=self.timeout):
            # The worker is stuck in this job (or the queue behind it): a new worker
            # takes the next calls; this one exits when its call returns.
            self._queue = None
            self.stuck += 1
            if self.stuck >= self.max_stuck:
                self.disabled = True
            return "timeout", None
        if job.error is not None:
            return "error", _describe(job.error)
        return "ok", job.value

    def close(self) -> None:
        """Let the worker thread end; later calls return ``("disabled", None)``.
        Idempotent."""
        self.closed = True
        q, self._queue = self._queue, None
        if q is not None:
            q.put(None)

    def _work(self, q: queue.SimpleQueue[_Job | None]) -> None:
        while True:
            job = q.get()
            if job is None:
                return  # closed
            try:
                job.value = job.fn(*job.args)
            except BaseException as exc:  # the candidate's failure, reported to the caller
                job.error = exc
            job.done.release()
            if q is not self._queue:
                return  # replaced after a timeout


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


@dataclass(slots=True)
class ShadowStats:
    """Counters of one node's shadow (a live object; see :meth:`Shadow.statistics`).

    ``seen``: requests the shadow saw (rule evaluations; for an origin candidate,
    comparable origin requests). ``compared``: those whose candidate was evaluated; of them ``agreed`` and
    ``mismatches`` (both answered, differently), ``errors``, ``timeouts`` and
    ``garbage``. ``skipped``: requests with no candidate (no candidate rules for the
    site, or the candidate disabled). ``selected``: requests the rollout handed to the
    candidate; ``answered_candidate`` of them were answered by it, and
    ``fallbacks`` fell back to the primary (mismatch, error, timeout, garbage).
    ``candidate_seconds`` / ``primary_seconds``: time spent evaluating each (with a
    timer).
    """

    seen: int = 0
    compared: int = 0
    agreed: int = 0
    mismatches: int = 0
    errors: int = 0
    timeouts: int = 0
    garbage: int = 0
    skipped: int = 0
    selected: int = 0
    answered_candidate: int = 0
    fallbacks: int = 0
    candidate_seconds: float = 0.0
    primary_seconds: float = 0.0

    def snapshot(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


class Shadow:
    """The comparison state of one node (see the module docstring).

    Args:
        config: what to compare and how.
        timer: seconds (``time.perf_counter``) for measuring the cost; None: not measured.
    """

    def __init__(self, config: ShadowConfig, *, timer: Callable[[], float] | None = None) -> None:
        self.config = config
        self.stats = ShadowStats()
        self.samples: deque[dict[str, Any]] = deque(maxlen=config.samples)
        self.guard = Guard(config.timeout)
        self._timer = timer
        self._rollout = config.rollout
        # primary rule set (by identity) -> its reference twin, compiled once per deploy
        self._refs: dict[int, tuple[Any, Any]] = {}
        self._ref_lock = threading.Lock()

    def close(self) -> None:
        """End the guard's worker thread (the engine calls it at the end of a run, the
        test networks on exit). The shadow then skips every request."""
        self.guard.close()

    # ---- who answers ---------------------------------------------------------

    def selected(self, host: str, target: str) -> bool:
        """Does this request run the candidate (always in shadow mode)?"""
        r = self._rollout
        return r is None or rollout_bucket(host, target) < r

    @property
    def rollout(self) -> float | None:
        return self._rollout

    def begin(self) -> None:
        """The live shell, before handling a request: no answer recorded yet."""
        _answered.set(PRIMARY)

    def finish(self, resp: Response) -> Response:
        """The live shell, on the final response: add the answered-by header."""
        label = _answered.get()
        _answered.set(PRIMARY)
        resp.headers = [*resp.headers, (ANSWERED_BY, label)]
        return resp

    # ---- rules (the node's hook) ---------------------------------------------

    def match(
        self,
        rules: Any,
        req: Request,
        host: str,
        url: str,
        now: float,
        exists: Callable[[str], bool] | None,
    ) -> Match | None:
        """The node's rule evaluation with the candidate beside it; returns the match
        the node goes on with. A ``ValueError`` of the primary propagates as without
        shadowing; nothing the candidate does does."""
        country = get_header(req.headers, "x-country")
        if self.config.candidate == "origin":
            return rules.match(url, headers=req.headers, country=country, now=now)  # type: ignore[no-any-return]
        self.stats.seen += 1
        if not self.selected(host, req.target):
            return rules.match(url, headers=req.headers, country=country, now=now)  # type: ignore[no-any-return]
        timer = self._timer
        if timer is None:
            m = rules.match(url, headers=req.headers, country=country, now=now)
            return self._compare_rules(m, rules, req, host, url, country, now, exists)
        t0 = timer()
        m = rules.match(url, headers=req.headers, country=country, now=now)
        t1 = timer()
        out = self._compare_rules(m, rules, req, host, url, country, now, exists)
        # the candidate's cost: all that shadowing adds (candidate, decisions, records)
        self.stats.candidate_seconds += timer() - t1
        self.stats.primary_seconds += t1 - t0
        return out

    def _compare_rules(
        self,
        m: Match | None,
        rules: Any,
        req: Request,
        host: str,
        url: str,
        country: str | None,
        now: float,
        exists: Callable[[str], bool] | None,
    ) -> Match | None:
        cand = self._candidate_rules(rules, host)
        if cand is None:
            self.stats.skipped += 1
            return m
        kind, value = self.guard.call(self._candidate_match, cand, url, req.headers, country, now)
        if kind == "disabled":
            self.stats.skipped += 1
            return m
        primary = rule_decision(m, req.target, exists)
        if kind == "ok":
            try:
                value = _check_match(value)
            except _Garbage as exc:
                kind, value = "garbage", str(exc)
        request = {"method": req.method, "url": url, "country": country}
        if kind == "ok":
            if self._record(primary, rule_decision(value, req.target, exists), request, now):
                return value  # type: ignore[no-any-return]
            return m
        self._record_failure(kind, str(value or ""), primary, request, now)
        return m

    def _candidate_rules(self, rules: Any, host: str) -> Any:
        if self.config.candidate == "rules":
            return self.config.rules.get(host)
        # The reference twin: compiled here, once per deploy, like the native set the
        # node compiles from the manifest (a compile is linear in the rules; the guard's
        # deadline is for the per-request match).
        try:
            return self._reference(rules)
        except Exception:
            return None  # cannot be built (counted as skipped)

    @staticmethod
    def _candidate_match(cand: Any, url: str, headers: Any, country: str | None, now: float) -> Any:
        return cand.match(url, headers=headers, country=country, now=now)

    def _reference(self, rules: Any) -> Any:
        from edgesim.redirects import ReferenceRuleSet

        with self._ref_lock:
            hit = self._refs.get(id(rules))
            if hit is not None and hit[0] is rules:
                return hit[1]
        # The same sources, secret and role claim, compiled by the reference matcher.
        ref = ReferenceRuleSet._from_sources(rules._files, rules._secret, ".".join(rules._claim), False, 0, 0)
        with self._ref_lock:
            if len(self._refs) >= 64:  # old deploys' twins: drop them all, rebuilt on demand
                self._refs.clear()
            self._refs[id(rules)] = (rules, ref)
        return ref

    # ---- origins (the live shell's and the engine's hook) ------------------------

    def origin(
        self, req: Request, primary: Response, candidate: Callable[[Request], Any], now: float
    ) -> Response:
        """Sync drivers (the capacity engine): the primary origin answered ``req``; ask
        ``candidate(req)`` under the guard, compare, and return the response to use."""
        if not comparable_origin_request(req):
            return primary
        self.stats.seen += 1
        if not self.selected(get_header(req.headers, "host") or "", req.target):
            return primary
        timer = self._timer
        t0 = timer() if timer is not None else 0.0
        outcome = self.guard.call(candidate, req)
        seconds = timer() - t0 if timer is not None else 0.0
        if outcome[0] == "disabled":
            self.stats.skipped += 1
            return primary
        return self.compare_responses(req, primary, outcome, now, seconds)

    def compare_responses(
        self, req: Request, primary: Response, candidate: tuple[str, Any], now: float, seconds: float = 0.0
    ) -> Response:
        """Compare an origin answer with the candidate origin's (``(kind, value)`` as
        :meth:`Guard.call` returns it); returns the response to use."""
        self.stats.candidate_seconds += seconds
        kind, value = candidate
        if kind == "ok" and not _valid_response(value):
            kind, value = "garbage", f"not a response: {type(value).__name__}"
        p = response_decision(primary)
        request = {"method": req.method, "url": req.target, "host": get_header(req.headers, "host")}
        if kind == "ok":
            if self._record(p, response_decision(value), request, now):
                return _under_primary_deploy(value, primary)
            return primary
        self._record_failure(kind, str(value or ""), p, request, now)
        return primary

    # ---- bookkeeping -----------------------------------------------------------

    def _record(self, primary: Decision, other: Decision, request: dict[str, Any], now: float) -> bool:
        """Count one comparison; True when the candidate's answer is served."""
        st = self.stats
        st.compared += 1
        rollout = self._rollout is not None
        if rollout:
            st.selected += 1
        if primary == other:
            st.agreed += 1
            if rollout:
                st.answered_candidate += 1
                _answered.set(CANDIDATE)
                return True
            return False
        st.mismatches += 1
        if rollout:
            st.fallbacks += 1
        self.samples.append(
            {
                "event": "mismatch",
                "at": now,
                "request": request,
                "primary": primary.as_dict(),
                "candidate": other.as_dict(),
            }
        )
        return False

    def _record_failure(
        self, kind: str, detail: str, primary: Decision, request: dict[str, Any], now: float
    ) -> None:
        st = self.stats
        st.compared += 1
        if self._rollout is not None:
            st.selected += 1
            st.fallbacks += 1
        if kind == "timeout":
            st.timeouts += 1
            detail = f"no answer within {self.config.timeout:g}s"
        elif kind == "garbage":
            st.garbage += 1
        else:
            st.errors += 1
        self.samples.append(
            {
                "event": kind,
                "at": now,
                "request": request,
                "primary": primary.as_dict(),
                "candidate": {"error": detail},
            }
        )

    def statistics(self, *, timing: bool = True) -> dict[str, Any]:
        """Counters, samples and configuration (JSON-ready). ``timing=False`` leaves out
        the wall-clock figures (for deterministic reports)."""
        st = self.stats.snapshot()
        cost = {
            "candidate_seconds": st.pop("candidate_seconds"),
            "primary_seconds": st.pop("primary_seconds"),
        }
        out: dict[str, Any] = {
            "candidate": self.config.candidate,
            "mode": "shadow" if self._rollout is None else "rollout",
            "rollout": self._rollout,
            "timeout": self.config.timeout,
            **st,
            "disabled": self.guard.disabled,
            "stuck_threads": self.guard.stuck,
            "samples": list(self.samples),
        }
        if timing:
            out.update(cost)
            n = self.stats.compared
            out["candidate_us_per_request"] = cost["candidate_seconds"] / n * 1e6 if n else None
        return out


# A revalidation's answer depends on the validators the primary origin issued (a
# candidate would answer 200 where it said 304), and an unsafe method must reach one
# origin only: only these requests are compared.
_CONDITIONAL = ("if-none-match", "if-modified-since")
_DEPLOY_HEADER = "x-edgesim-deploy"  # edgesim.node.DEPLOY_HEADER (no import: no cycle)


def comparable_origin_request(req: Request) -> bool:
    """Is ``req`` an origin request whose answers may be compared (and replaced)?"""
    if req.method not in ("GET", "HEAD") or req.target.startswith("/.edgesim/"):
        return False
    return not any(k in _CONDITIONAL for k, _ in req.headers)


def _under_primary_deploy(candidate: Response, primary: Response) -> Response:
    """The candidate's response with the primary's deploy header: the node tracks the
    primary origin's deploys, and another id would look like a new deploy (a manifest
    refetch and a purge)."""
    deploy = get_header(primary.headers, _DEPLOY_HEADER)
    headers = [h for h in candidate.headers if h[0] != _DEPLOY_HEADER]
    if deploy is not None:
        headers.append((_DEPLOY_HEADER, deploy))
    return Response(candidate.status, headers, candidate.body, candidate.size)


def candidate_origin(
    topology: Topology,
    overrides: Mapping[str, tuple[tuple[str, str], ...]],
    now: float,
    *,
    bodies: bool = False,
    site_sizes: Sequence[tuple[int, ...]] = (),
) -> Any:
    """The capacity engine's candidate origin: an ``OriginCore`` serving the topology's
    sites like the engine's own, with the ``[shadow.origin]`` Cache-Control classes of
    each listed (synthetic) site in place of its own. ``bodies``: real bodies (the Trio
    engine serves the candidate's answers over HTTP), else sizes only. ``site_sizes``:
    per site, a replayed trace's object sizes (as the engine's own origin has them)."""
    from edgesim.engine import origin_core

    return origin_core(topology, now, bodies=bodies, site_sizes=site_sizes, cache=overrides)


def _check_match(value: Any) -> Match | None:
    if value is None:
        return None
    if not isinstance(value, Match):
        raise _Garbage(f"not a match: {type(value).__name__}")
    if (
        not isinstance(value.status, int)
        or not 100 <= value.status <= 999
        or not isinstance(value.to, str)
        or not isinstance(value.query, str)
    ):
        raise _Garbage(f"malformed match: status {value.status!r}, to {value.to!r}")
    return value


def _valid_response(value: Any) -> bool:
    if not isinstance(value, Response) or not isinstance(value.status, int):
        return False
    if not 100 <= value.status <= 999 or not isinstance(value.headers, list):
        return False
    body, size = value.body, value.size
    if not isinstance(size, int) or not (body is None or (isinstance(body, bytes) and len(body) == size)):
        return False
    return all(
        isinstance(h, tuple) and len(h) == 2 and isinstance(h[0], str) and isinstance(h[1], str)
        for h in value.headers
    )


# a host name as the edge looks sites up (lower case, no trailing dot)
_HOST_NAME = re.compile(r"(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*")


def site_rule_files(pairs: Sequence[str]) -> dict[str, list[str]]:
    """``HOST=FILE`` values (``edge serve --rules``, ``--shadow rules:``): each site's
    files by host as the edge looks it up (lower case, no trailing dot), at most one
    ``_redirects`` and one TOML file, the ``_redirects`` first (spec R1.1).

    Raises:
        ValueError: a value that is not HOST=FILE, a host that is not a host name, or
            a site given two files of one kind.
    """
    from edgesim._rulefiles import is_toml_name

    out: dict[str, list[str]] = {}
    for v in pairs:
        host, ok, path = v.partition("=")
        key = host.strip().rstrip(".").lower()
        if not ok or not path:
            raise ValueError(f"expected HOST=FILE, got {v!r}")
        if not _HOST_NAME.fullmatch(key):
            raise ValueError(f"{host!r}: expected a host name (letters, digits, '-', '_' and '.')")
        out.setdefault(key, []).append(path)
    for host, paths in out.items():
        tomls = [p for p in paths if is_toml_name(p)]
        if len(tomls) > 1 or len(paths) - len(tomls) > 1:
            raise ValueError(f"{host}: at most one _redirects and one .toml file, got {', '.join(paths)}")
        paths.sort(key=is_toml_name)
    return out


def compile_rule_files(paths: Sequence[str | Path]) -> Any:
    """One site's candidate rules from its files (``_redirects`` first, then a
    ``*.toml`` netlify file), on the native matcher.

    Raises:
        RuleFileError: a file cannot be read.
    """
    from edgesim.redirects import RuleSet

    if len(paths) == 1:
        return RuleSet.from_file(paths[0])
    from edgesim._rulefiles import is_toml_name, redirects_source, toml_source
    from edgesim.redirects import _read

    sources = []
    for p in paths:
        data = _read(Path(p))  # as from_file: a FIFO or device refused, one error line
        make = toml_source if is_toml_name(str(p)) else redirects_source
        sources.append(make(str(p), data))
    return RuleSet._from_sources(sources, None, "app_metadata.authorization.roles", False, 0, 0)


def config_from_spec(spec: ShadowSpec) -> ShadowConfig:
    """The :class:`ShadowConfig` of a topology's ``[shadow]`` table (rules compiled)."""
    rules = {host: compile_rule_files(files) for host, files in spec.rules}
    return ShadowConfig(
        spec.candidate,
        rollout=spec.rollout,
        timeout=spec.timeout,
        samples=spec.samples,
        rules=rules,
        origin="virtual" if spec.candidate == "origin" else "",
    )


def summarize(shadows: Mapping[str, Shadow], *, timing: bool) -> dict[str, Any]:
    """A report section: the totals over nodes, then each node's counters and samples."""
    nodes = {name: s.statistics(timing=timing) for name, s in shadows.items()}
    first = next(iter(shadows.values()))
    totals: dict[str, Any] = {
        k: sum(n[k] for n in nodes.values()) for k in ShadowStats.__slots__ if not k.endswith("_seconds")
    }
    if timing:
        for k in ("candidate_seconds", "primary_seconds"):
            totals[k] = sum(n[k] for n in nodes.values())
    totals["disabled_nodes"] = sum(1 for n in nodes.values() if n["disabled"])
    return {
        "candidate": first.config.candidate,
        "mode": "shadow" if first.rollout is None else "rollout",
        "rollout": first.rollout,
        "timeout": first.config.timeout,
        "totals": totals,
        "nodes": nodes,
    }
