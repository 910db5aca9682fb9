"""Conformance of the native matcher with Netlify's engine on the seed-1 corpus.

``tests/data/redirects/corpus-seed1.jsonl`` holds 3,068 cases (rules + request);
``expected-seed1.jsonl`` holds what ``netlify-redirector`` 0.5.0 answered for each. Each
request is rebuilt the way the oracle harness built it:

* the URL as given, with the ``scheme`` / ``host`` / ``path`` overrides applied (a
  request without a host is matched in origin form; an empty path is ``/``);
* ``country`` / ``language`` (the oracle passed them as ``X-Country`` / ``X-Language``
  headers, so those headers count too; absent means empty, and no cookie overrides);
* cookies from ``cookies`` and the ``Cookie`` header, plus an ``nf_jwt`` cookie minted
  (HS256) for ``jwt_roles`` with secret ``edgesim-oracle-secret`` (or ``jwt_secret``)
  at ``app_metadata.authorization.roles``, ``exp`` = ``jwt_exp`` (``null``: no ``exp``
  claim; absent: one hour after the virtual :data:`NOW`);
* the rule set's role claim from ``options.jwtRoleClaim``.

One deliberate difference: for ``decode_path`` cases the oracle was given the
percent-decoded path (as netlify-cli does); we give the raw URL, because edgesim
compares canonical encoded paths (spec R2.3, §6 Q1).

Outcomes compared: oracle ``match: null`` ↔ no match; oracle ``force404`` ↔
``Match.denied``; otherwise ``status``, ``force`` and ``to``.

Where the spec records an edgesim choice that differs from Netlify, the case is listed in
``known-differences.json`` (case id → ``{"rule", "why"}``). Every other case must agree,
and every listed case must really differ, so the list cannot go stale.
The cases run against the native matcher and, as a cross-check, the reference matcher
(the ``engine`` fixture). ``native/bench/corpus_diff.py`` runs the same comparison and
prints a summary.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).resolve().parent.parent / "data" / "redirects"
CORPUS = DATA / "corpus-seed1.jsonl"
EXPECTED = DATA / "expected-seed1.jsonl"
KNOWN = DATA / "known-differences.json"

ORACLE_SECRET = "edgesim-oracle-secret"
ORACLE_CLAIM = "app_metadata.authorization.roles"
NOW = 1_750_000_000.0

Outcome = tuple[Any, ...]


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def load_corpus(path: Path = CORPUS) -> list[dict[str, Any]]:
    """The cases, with ``rules_ref`` resolved into ``rules``."""
    rulesets: dict[str, str] = {}
    cases = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            d = json.loads(line)
            if "ruleset" in d:
                rulesets[d["ruleset"]] = d["rules"]
                continue
            if "rules_ref" in d:
                d = {**d, "rules": rulesets[d["rules_ref"]]}
            cases.append(d)
    return cases


def load_expected(path: Path = EXPECTED) -> dict[str, dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return {d["id"]: d for d in map(json.loads, filter(str.strip, f))}


def load_known(path: Path = KNOWN) -> dict[str, dict[str, str]]:
    if not path.exists():
        return {}
    with open(path, encoding="utf-8") as f:
        known: dict[str, dict[str, str]] = json.load(f)
    return known


# --------------------------------------------------------------------------
# Building the request like the oracle harness
# --------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def mint_token(secret: str, roles: Any, exp: float | None, claim: str = ORACLE_CLAIM) -> str:
    """An HS256 ``nf_jwt``; ``exp=None`` leaves the claim out (mint_jwt always sets it)."""
    if exp is not None:
        from edgesim._visitor import mint_jwt

        return mint_jwt(secret, roles, exp=exp, claim=claim)
    body: dict[str, Any] = {}
    node = body
    steps = claim.split(".")
    for step in steps[:-1]:
        node = node.setdefault(step, {})
    node[steps[-1]] = roles
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    sig = hmac.new(secret.encode(), f"{head}.{payload}".encode(), hashlib.sha256).digest()
    return f"{head}.{payload}.{_b64(sig)}"


def split_url(url: str) -> tuple[str, str, str, str | None]:
    """(scheme, host, path, query or None) of an absolute or origin-form URL."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, host, rest = "", "", url
    else:
        cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
        host, rest = rest[:cut], rest[cut:]
    rest = rest.partition("#")[0]
    path, q, query = rest.partition("?")
    return scheme, host, path, (query if q else None)


def _header(headers: dict[str, str], name: str) -> str | None:
    for k, v in headers.items():
        if k.lower() == name.lower():
            return v
    return None


def build_request(case: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The URL and :meth:`RuleSet.match` keyword arguments for one corpus case."""
    req = case["request"]
    url = req.get("url")
    if url is None or any(k in req for k in ("scheme", "host", "path")):
        scheme, host, path, query = split_url(url or "")
        scheme = req.get("scheme", scheme or "https")
        host = req.get("host", host)
        path = req.get("path", path)
        tail = f"?{query}" if query is not None else ""
        url = f"{scheme}://{host}{path}{tail}" if host else f"{path or '/'}{tail}"
    headers: dict[str, str] = req.get("headers") or {}
    country = req.get("country", _header(headers, "X-Country") or "")
    language = req.get("language", _header(headers, "X-Language") or "")
    cookies: dict[str, str] = {}
    raw_cookie = _header(headers, "Cookie")
    if raw_cookie:
        from edgesim._visitor import parse_cookie_header

        cookies.update(parse_cookie_header(raw_cookie))
    cookies.update(req.get("cookies") or {})
    if "jwt_roles" in req:
        exp = req["jwt_exp"] if "jwt_exp" in req else NOW + 3600
        cookies["nf_jwt"] = mint_token(req.get("jwt_secret", ORACLE_SECRET), req["jwt_roles"], exp)
    return url, {"country": country, "language": language, "cookies": cookies, "now": NOW}


def role_claim(case: dict[str, Any]) -> str:
    opts = case.get("options") or {}
    claim = opts.get("jwtRoleClaim", ORACLE_CLAIM)
    return str(claim)


# --------------------------------------------------------------------------
# Outcomes
# --------------------------------------------------------------------------


def expected_outcome(exp: dict[str, Any]) -> Outcome:
    m = exp["match"]
    if m is None:
        return ("none",)
    if m.get("force404"):
        return ("denied",)
    return ("match", m["status"], bool(m["force"]), m["to"])


def our_outcome(m: Any) -> Outcome:
    if m is None:
        return ("none",)
    if m.denied:
        return ("denied",)
    return ("match", m.status, m.force, m.to)


class Runner:
    """Matches corpus cases with one engine class, caching compiled rule sets."""

    def __init__(self, engine: type) -> None:
        self.engine = engine
        self._sets: dict[tuple[str, str], Any] = {}

    def ruleset(self, case: dict[str, Any]) -> Any:
        key = (case["rules"], role_claim(case))
        rs = self._sets.get(key)
        if rs is None:
            rs = self._sets[key] = self.engine.parse(
                case["rules"], jwt_secret=ORACLE_SECRET, jwt_role_claim=key[1]
            )
        return rs

    def outcome(self, case: dict[str, Any]) -> Outcome:
        url, kw = build_request(case)
        return our_outcome(self.ruleset(case).match(url, **kw))


def compare(
    engine: type,
    cases: list[dict[str, Any]],
    expected: dict[str, dict[str, Any]],
) -> Iterator[tuple[dict[str, Any], Outcome, Outcome]]:
    """(case, ours, theirs) for every case."""
    run = Runner(engine)
    for case in cases:
        yield case, run.outcome(case), expected_outcome(expected[case["id"]])


def summarize(
    engine: type,
    cases: list[dict[str, Any]],
    expected: dict[str, dict[str, Any]],
    known: dict[str, dict[str, str]],
) -> dict[str, Any]:
    """Agree/differ counts per category and every difference (for docs and triage)."""
    cats: dict[str, dict[str, int]] = {}
    diffs = []
    by_rule: dict[str, int] = {}
    stale = []
    for case, ours, theirs in compare(engine, cases, expected):
        c = cats.setdefault(case["category"], {"agree": 0, "differ": 0})
        k = known.get(case["id"])
        if ours == theirs:
            c["agree"] += 1
            if k is not None:
                stale.append(case["id"])
            continue
        c["differ"] += 1
        if k is not None:
            by_rule[k["rule"]] = by_rule.get(k["rule"], 0) + 1
        diffs.append(
            {
                "id": case["id"],
                "category": case["category"],
                "rules": case["rules"] if len(case["rules"]) <= 400 else f"<{case.get('rules_ref')}>",
                "request": case["request"],
                "url": build_request(case)[0],
                "netlify": list(theirs),
                "edgesim": list(ours),
                "known": k,
            }
        )
    return {
        "total": len(cases),
        "agree": sum(c["agree"] for c in cats.values()),
        "differ": len(diffs),
        "explained": sum(1 for d in diffs if d["known"]),
        "unexplained": [d["id"] for d in diffs if not d["known"]],
        "stale_known": stale,
        "by_rule": dict(sorted(by_rule.items())),
        "by_category": dict(sorted(cats.items())),
        "differences": diffs,
    }


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------

_CASES = load_corpus()
_EXPECTED = load_expected()
_KNOWN = load_known()
_RUNNERS: dict[type, Runner] = {}


def test_corpus_and_expectations_line_up() -> None:
    assert len(_CASES) == 3068
    assert {c["id"] for c in _CASES} == set(_EXPECTED)
    assert len({c["id"] for c in _CASES}) == len(_CASES)


def test_known_differences_are_well_formed() -> None:
    ids = {c["id"] for c in _CASES}
    for cid, entry in _KNOWN.items():
        assert cid in ids, f"{cid}: not a corpus case"
        assert set(entry) == {"rule", "why"}, cid
        assert entry["rule"].strip() and entry["why"].strip(), cid


@pytest.mark.parametrize("case", _CASES, ids=[c["id"] for c in _CASES])
def test_corpus_case(engine: type, case: dict[str, Any]) -> None:
    """Runs against the native matcher and, as a cross-check, the reference matcher."""
    run = _RUNNERS.get(engine)
    if run is None:
        run = _RUNNERS[engine] = Runner(engine)
    ours = run.outcome(case)
    theirs = expected_outcome(_EXPECTED[case["id"]])
    known = _KNOWN.get(case["id"])
    url = build_request(case)[0]
    if known is None:
        assert ours == theirs, f"{url!r}: edgesim {ours} != netlify {theirs}; rules:\n{case['rules'][:600]}"
    else:
        assert ours != theirs, (
            f"listed in known-differences.json ({known['rule']}) but edgesim now agrees "
            f"with netlify ({ours}): remove the entry"
        )
