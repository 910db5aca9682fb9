"""Shadow comparison and rollout in the sans-IO core: a node with a candidate beside
its rules, driven step by step (no loop, no sockets)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from edgesim.cache import HttpCache, MemoryStore
from edgesim.http import Request, Response, get_header
from edgesim.node import EdgeConfig, EdgeNode, Fetch, Reply, Step
from edgesim.redirects import Match, RuleSet
from edgesim.shadow import (
    ANSWERED_BY,
    MAX_STUCK,
    Decision,
    Guard,
    Shadow,
    ShadowConfig,
    response_decision,
    rollout_bucket,
)

T0 = 1_800_000_000.0
HOST = "site.test"
V1 = "/old /about 301\n/docs/* /about 302\n/spa/* /index.html 200\n"
# v2 differs on known paths: /old moves elsewhere, /new is added, /docs/* unchanged.
V2 = "/old /about-us 301\n/docs/* /about 302\n/spa/* /index.html 200\n/new /about 301\n"


def _origin(req: Request) -> Response:
    body = f"page {req.path}".encode()
    return Response(200, [("cache-control", "public, max-age=60"), ("content-length", str(len(body)))], body)


def _cfg(candidate: str, **kw: Any) -> ShadowConfig:
    """A config whose timeout no loaded CI machine reaches (unless a test sets one)."""
    kw.setdefault("timeout", 5.0)
    return ShadowConfig(candidate, **kw)


def _node(candidate: ShadowConfig | None, rules: str = V1) -> EdgeNode:
    node = EdgeNode(
        HttpCache(MemoryStore(2**20)),
        EdgeConfig(name="e", manifests=False, rules={HOST: RuleSet.parse(rules)}),
    )
    if candidate is not None:
        node.shadow = Shadow(candidate)
    return node


def _serve(node: EdgeNode, path: str, now: float = T0) -> Response:
    """One request through the node, with an in-memory origin; the shell's header too."""
    req = Request("GET", path, [("host", HOST)])
    shadow = node.shadow
    if shadow is not None:
        shadow.begin()
    step: Step = node.handle(req, now)
    while not isinstance(step, Reply):
        assert isinstance(step, Fetch)
        step = node.complete(step, _origin(step.request), None, now)
    return step.response if shadow is None else shadow.finish(step.response)


def _v2() -> dict[str, Any]:
    return {HOST: RuleSet.parse(V2)}


def test_shadow_mode_detects_mismatches_and_serves_the_primary() -> None:
    node = _node(_cfg("rules", rules=_v2(), samples=5))
    moved = _serve(node, "/old")
    assert moved.status == 301 and get_header(moved.headers, "location") == "/about"  # v1's answer
    assert get_header(moved.headers, ANSWERED_BY) == "primary"
    assert _serve(node, "/docs/a").status == 302  # both agree
    new = _serve(node, "/new")
    assert new.status == 200 and get_header(new.headers, "x-cache") == "MISS"  # v1 has no /new rule
    st = node.shadow.stats if node.shadow else None
    assert st is not None
    assert (st.compared, st.agreed, st.mismatches, st.errors) == (3, 1, 2, 0)
    assert st.selected == 0 and st.answered_candidate == 0  # shadow mode: nobody hands over
    samples = list(node.shadow.samples) if node.shadow else []
    assert [s["request"]["url"] for s in samples] == ["https://site.test/old", "https://site.test/new"]
    assert samples[0]["primary"] == {"status": 301, "target": "/about", "cache": "redirect"}
    assert samples[0]["candidate"] == {"status": 301, "target": "/about-us", "cache": "redirect"}
    assert samples[1]["primary"] == {"status": 0, "target": "", "cache": "lookup"}
    assert samples[1]["candidate"]["target"] == "/about"


def test_samples_are_bounded_and_sites_without_candidate_rules_are_skipped() -> None:
    node = _node(_cfg("rules", rules=_v2(), samples=3))
    for i in range(10):
        _serve(node, f"/old?i={i}")
    assert node.shadow is not None
    assert node.shadow.stats.mismatches == 10
    assert [s["request"]["url"][-4:] for s in node.shadow.samples] == ["?i=7", "?i=8", "?i=9"]
    other = _node(_cfg("rules", rules={"elsewhere.test": RuleSet.parse(V2)}))
    _serve(other, "/old")
    assert other.shadow is not None
    assert other.shadow.stats.skipped == 1 and other.shadow.stats.compared == 0


def test_reference_candidate_agrees_with_the_native_matcher() -> None:
    node = _node(_cfg("reference"))
    for path in ("/old", "/docs/x/y", "/spa/deep/link", "/nothing", "/old?q=1"):
        _serve(node, path)
    st = node.shadow.stats if node.shadow else None
    assert st is not None and st.compared == 5 and st.agreed == 5, node.shadow and list(node.shadow.samples)


def test_rollout_fraction_is_within_tolerance_and_stable() -> None:
    n = 4000
    paths = [f"/docs/p{i}" for i in range(n)]
    node = _node(_cfg("rules", rollout=0.6, rules={HOST: RuleSet.parse(V1)}))
    answered = [get_header(_serve(node, p).headers, ANSWERED_BY) for p in paths]
    st = node.shadow.stats if node.shadow else None
    assert st is not None
    assert abs(st.selected / n - 0.6) <= 0.03
    assert st.answered_candidate == st.selected == answered.count("candidate")
    assert st.compared == st.selected  # requests outside the fraction never ran the candidate
    # stable: the same URL goes the same way again, and the bucket decides it
    again = [get_header(_serve(node, p).headers, ANSWERED_BY) for p in paths[:200]]
    assert again == answered[:200]
    assert all(
        (rollout_bucket(HOST, p) < 0.6) == (a == "candidate") for p, a in zip(paths, answered, strict=True)
    )


def test_rollout_falls_back_to_the_primary_on_disagreement() -> None:
    node = _node(_cfg("rules", rollout=1.0, rules=_v2()))
    moved = _serve(node, "/old")
    assert get_header(moved.headers, "location") == "/about"
    assert get_header(moved.headers, ANSWERED_BY) == "primary"
    agreed = _serve(node, "/docs/a")
    assert get_header(agreed.headers, ANSWERED_BY) == "candidate"
    st = node.shadow.stats if node.shadow else None
    assert st is not None and (st.selected, st.answered_candidate, st.fallbacks) == (2, 1, 1)


class _Raises:
    def match(self, url: str, **kw: Any) -> Any:
        raise RuntimeError("candidate blew up")


class _Garbage:
    def __init__(self, value: Any) -> None:
        self.value = value

    def match(self, url: str, **kw: Any) -> Any:
        return self.value


class _Hangs:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = 0

    def match(self, url: str, **kw: Any) -> Any:
        self.entered += 1
        self.release.wait(30)
        return None


@pytest.fixture
def hanging() -> Iterator[_Hangs]:
    h = _Hangs()
    yield h
    h.release.set()  # lets the abandoned worker threads end


PATHS = ("/old", "/docs/a", "/spa/x", "/new", "/plain.html", "/old?x=1")


def _plain_answers() -> list[tuple[int, list[tuple[str, str]], bytes | None]]:
    node = _node(None)
    return [(r.status, r.headers, r.body) for r in (_serve(node, p) for p in PATHS)]


def _answers(node: EdgeNode) -> list[tuple[int, list[tuple[str, str]], bytes | None]]:
    out = []
    for p in PATHS:
        r = _serve(node, p)
        out.append((r.status, [h for h in r.headers if h[0] != ANSWERED_BY], r.body))
    return out


@pytest.mark.parametrize("rollout", [None, 1.0])
@pytest.mark.parametrize(
    "bad",
    [
        _Raises(),
        _Garbage("not a match"),
        _Garbage(Match(0, "/x", False, None)),  # type: ignore[arg-type]
        _Garbage(Match(301, 42, False, None)),  # type: ignore[arg-type]
    ],
    ids=["raises", "garbage-str", "garbage-status", "garbage-target"],
)
def test_a_failing_candidate_never_changes_the_answer(bad: Any, rollout: float | None) -> None:
    node = _node(_cfg("rules", rollout=rollout, rules={HOST: bad}))
    assert _answers(node) == _plain_answers()
    st = node.shadow.stats if node.shadow else None
    assert st is not None and st.compared == len(PATHS) and st.agreed == 0 and st.answered_candidate == 0
    assert st.errors + st.garbage == len(PATHS)
    assert (st.errors if isinstance(bad, _Raises) else st.garbage) == len(PATHS)
    sample = node.shadow.samples[0] if node.shadow else {}
    assert sample["event"] in ("error", "garbage") and sample["candidate"]["error"]


def test_a_hanging_candidate_times_out_then_is_switched_off(hanging: _Hangs) -> None:
    node = _node(_cfg("rules", rollout=1.0, timeout=0.02, rules={HOST: hanging}))
    assert _answers(node) == _plain_answers()
    st = node.shadow.stats if node.shadow else None
    assert st is not None and node.shadow is not None
    assert st.timeouts == MAX_STUCK == hanging.entered  # then no more threads are spent on it
    assert node.shadow.guard.disabled and st.skipped == len(PATHS) - MAX_STUCK
    assert node.shadow.statistics()["disabled"] is True
    assert node.shadow.samples[0]["candidate"] == {"error": "no answer within 0.02s"}


def test_guard_recovers_after_one_stuck_call(hanging: _Hangs) -> None:
    g = Guard(0.02)
    assert g.call(lambda: 7) == ("ok", 7)
    assert g.call(hanging.match, "x") == ("timeout", None)
    assert g.call(lambda: 8) == ("ok", 8)  # a fresh worker took over
    assert g.call(lambda: 1 / 0)[0] == "error"
    assert (g.stuck, g.disabled) == (1, False)


def test_closing_a_guard_ends_its_worker_thread() -> None:
    before = set(threading.enumerate())
    g = Guard(5.0)
    assert g.call(lambda: 1) == ("ok", 1)
    (worker,) = set(threading.enumerate()) - before
    g.close()
    g.close()  # idempotent
    worker.join(timeout=5.0)
    assert not worker.is_alive()
    assert g.call(lambda: 2) == ("disabled", None)
    assert not g.disabled  # closed, not switched off by timeouts


def test_origin_decisions_compare_status_location_and_cache_control() -> None:
    a = Response(200, [("cache-control", "public, max-age=60"), ("x-edgesim-deploy", "d1")], b"one")
    b = Response(200, [("cache-control", "max-age=60,public"), ("x-edgesim-deploy", "d9")], b"two")
    c = Response(200, [("cache-control", "no-store")])
    assert response_decision(a) == response_decision(b) == Decision(200, "", "max-age=60, public")
    assert response_decision(a) != response_decision(c)
    shadow = Shadow(ShadowConfig("origin", rollout=1.0, origin="http://127.0.0.1:1"))
    req = Request("GET", "/x", [("host", HOST)])
    served = shadow.compare_responses(req, a, ("ok", b), T0)  # agree: the candidate answers,
    assert served.body == b"two" and served.headers == [  # under the primary's deploy id
        ("cache-control", "max-age=60,public"),
        ("x-edgesim-deploy", "d1"),
    ]
    assert shadow.compare_responses(req, a, ("ok", c), T0) is a
    assert shadow.compare_responses(req, a, ("ok", "junk"), T0) is a
    assert shadow.compare_responses(req, a, ("ok", Response(200, [("x", 1)])), T0) is a  # type: ignore[list-item]
    assert shadow.compare_responses(req, a, ("timeout", None), T0) is a
    bad_body = Response(200, [("cache-control", "public, max-age=60")], b"x")
    try:
        bad_body.body = "not bytes"  # type: ignore[assignment]
    except TypeError:  # the compiled Response checks its fields' types itself
        bad_body = "junk too"  # type: ignore[assignment]
    assert shadow.compare_responses(req, a, ("ok", bad_body), T0) is a
    assert shadow.compare_responses(req, a, ("ok", Response(200, [], b"abc", 7)), T0) is a  # size lies
    st = shadow.stats
    assert (st.agreed, st.mismatches, st.garbage, st.timeouts, st.fallbacks) == (1, 1, 4, 1, 6)


def test_stats_endpoint_exposes_the_counters() -> None:
    import json

    node = _node(_cfg("rules", rules=_v2()))
    _serve(node, "/old")
    doc = json.loads(_serve(node, "/.edgesim/edge/shadow").body or b"")
    assert doc["mismatches"] == 1 and doc["samples"][0]["candidate"]["target"] == "/about-us"
    stats = json.loads(_serve(node, "/.edgesim/edge/stats").body or b"")
    assert stats["shadow"]["mode"] == "shadow" and stats["shadow"]["compared"] == 1
    plain = _node(None)
    assert "shadow" not in json.loads(_serve(plain, "/.edgesim/edge/stats").body or b"")
    assert _serve(plain, "/.edgesim/edge/shadow").status == 404


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"candidate": "nope"}, "shadow candidate must be one of"),
        ({"candidate": "reference", "rollout": 1.5}, "rollout must be between 0 and 1"),
        ({"candidate": "reference", "timeout": -1.0}, "timeout must be >= 0"),
        ({"candidate": "origin"}, "needs the candidate origin"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ShadowConfig(**kwargs)
