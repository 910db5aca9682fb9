"""Whole-list lint of a rule set: rules that can never match, and duplicates.

Per-rule problems are found while compiling (both engines report them). What needs the
whole list lives here, computed on demand from the reference engine's rule model:

* ``DUPLICATE_RULE``: a rule identical to an earlier one (same pattern, host, query,
  conditions, target, status, force).
* ``UNREACHABLE``: an earlier rule without query pairs or conditions (so it always
  answers when its path matches) already matches every path this rule can match.
* ``UNUSED_PLACEHOLDER``: a named path placeholder that ``to`` never uses (often a typo
  in ``to``; a splat or a query capture may be left unused on purpose, so they are not
  reported).

Coverers are indexed (exact paths, literal splat prefixes, placeholder rules bucketed by
their length and first literal segment), so linting a 10,000-rule file stays well under
a second.
"""

from __future__ import annotations

import re

from edgesim._reference import ReferenceEngine, RefPattern, RefRule
from edgesim._rulefiles import Diagnostic, SourceFile

_Key = tuple[bytes | None, bytes | None, tuple[bytes, ...]]
_TOKEN = re.compile(rb":([A-Za-z0-9_]+)")
_NAME = re.compile(rb"[A-Za-z0-9_]+")


def cross_rule_warnings(files: list[SourceFile]) -> list[Diagnostic]:
    """``UNREACHABLE`` and ``DUPLICATE_RULE`` warnings for the rules of ``files``."""
    eng = ReferenceEngine()
    for src_id, src in enumerate(files):
        if src.kind == "redirects":
            eng.add_text(src_id, src.data)
        else:
            for index, record in src.records:
                eng.add_fields(src_id, index, record)
    eng.compile()

    out: list[Diagnostic] = []
    identities: dict[tuple[object, ...], RefRule] = {}
    exact: dict[_Key, RefRule] = {}
    splats: dict[_Key, RefRule] = {}
    placeholder_rules: dict[_Bucket, list[RefRule]] = {}

    lines: dict[int, list[bytes]] = {}

    def column(rule: RefRule) -> int:
        """Column of the rule's first token (its ``from``); 1 for TOML tables."""
        src = files[rule.source]
        if src.kind != "redirects":
            return 1
        text = lines.get(rule.source)
        if text is None:  # split once per file (a setdefault split it for every warning)
            text = lines[rule.source] = src.data.split(b"\n")
        line = text[rule.line - 1] if 0 < rule.line <= len(text) else b""
        if rule.line == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        return len(line) - len(line.lstrip(b" \t\r\v\f")) + 1

    def warn(rule: RefRule, code: str, message: str) -> None:
        src = files[rule.source]
        out.append(src.diagnostic(1, code, rule.line, column(rule), message))

    for rule in eng.rules:
        ident = (
            rule.scheme_bytes,
            rule.host_bytes,
            rule.pattern.path,
            rule.query,
            rule.conditions,
            rule.to_bytes,
            rule.status,
            rule.force,
            tuple(rule.headers),
            rule.signed,
        )
        first = identities.get(ident)
        if first is not None:
            warn(rule, "DUPLICATE_RULE", f"duplicate of the rule at {_loc(files, first)}; it never matches")
            continue
        identities[ident] = rule
        used = set(_TOKEN.findall(rule.to_bytes))
        for name in dict.fromkeys(n for n in rule.pattern.names if n is not None):
            if name not in used and _NAME.fullmatch(name) and name != b"splat":
                warn(
                    rule,
                    "UNUSED_PLACEHOLDER",
                    f'placeholder ":{name.decode()}" is never used in the target',
                )
        cover = _find_cover(rule, exact, splats, placeholder_rules)
        if cover is not None:
            warn(
                rule,
                "UNREACHABLE",
                f'never matches: the rule at {_loc(files, cover)} ("{cover.from_text}") '
                "answers every request it could match",
            )
        if rule.query or rule.conditions:
            continue
        p = rule.pattern
        hosts = (rule.scheme_bytes, rule.host_bytes)
        if not p.splat and all(n is None for n in p.names):
            exact.setdefault((*hosts, p.segments), rule)
        elif p.splat and p.prefix is None and all(n is None for n in p.names):
            splats.setdefault((*hosts, p.segments), rule)
        elif p.prefix is None:
            placeholder_rules.setdefault(_bucket(p), []).append(rule)
    return out


def _loc(files: list[SourceFile], rule: RefRule) -> str:
    src = files[rule.source]
    if src.kind == "toml":
        return f"{src.name} redirects[{rule.line - 1}]"
    return f"{src.name}:{rule.line}"


# A placeholder rule's bucket: splat or not, its segment count (0 for a splat: it covers
# paths of any length from its own), and its first literal segment's index and text
# (-1, b"" with none). A rule it covers has the same literal there, so a rule looks up
# only the buckets of its own literal segments (it was every rule starting with a
# placeholder, a pairwise test: 4,000 such rules took 8 s).
_Bucket = tuple[bool, int, int, bytes]


def _bucket(p: RefPattern) -> _Bucket:
    # (segment 0 is the empty text before the leading "/": every pattern has it)
    n = len(p.segments)
    first = next((i for i in range(1, n) if p.names[i] is None), -1)
    return (p.splat, 0 if p.splat else n, first, p.segments[first] if first >= 0 else b"")


def _candidate_buckets(p: RefPattern) -> list[_Bucket]:
    """The buckets whose rules may cover a rule of pattern ``p``."""
    n = len(p.segments)
    literal = [(i, p.segments[i]) for i in range(1, n) if p.names[i] is None]
    out: list[_Bucket] = [(True, 0, i, text) for i, text in literal] + [(True, 0, -1, b"")]
    if not p.splat:
        out += [(False, n, i, text) for i, text in literal] + [(False, n, -1, b"")]
    return out


def _find_cover(
    rule: RefRule,
    exact: dict[_Key, RefRule],
    splats: dict[_Key, RefRule],
    placeholder_rules: dict[_Bucket, list[RefRule]],
) -> RefRule | None:
    p = rule.pattern
    host_keys: list[tuple[bytes | None, bytes | None]] = [(None, None)]
    if rule.host_bytes is not None:
        host_keys.append((rule.scheme_bytes, rule.host_bytes))
    found: list[RefRule] = []
    for hk in host_keys:
        if not p.splat and all(n is None for n in p.names):
            c = exact.get((*hk, p.segments))
            if c is not None:
                found.append(c)
        for k in range(1, len(p.segments) + 1):
            if p.names[k - 1] is not None:
                break
            c = splats.get((*hk, p.segments[:k]))
            if c is not None:
                found.append(c)
    for bucket in _candidate_buckets(p):
        for c in placeholder_rules.get(bucket, ()):
            if c.host_bytes is not None and (c.host_bytes, c.scheme_bytes) != (
                rule.host_bytes,
                rule.scheme_bytes,
            ):
                continue
            if _covers(c, rule):
                found.append(c)
                break
    return min(found, key=lambda r: (r.source, r.line)) if found else None


def _covers(c: RefRule, r: RefRule) -> bool:
    """Whether placeholder rule ``c`` matches every path that ``r`` matches."""
    cp, rp = c.pattern, r.pattern
    n = len(cp.segments)
    if cp.splat:
        if len(rp.segments) < n:
            return False
    elif rp.splat or len(rp.segments) != n:
        return False
    for i in range(n):
        cname, rname = cp.names[i], rp.names[i]
        if cname is None:
            if rname is not None or cp.segments[i] != rp.segments[i]:
                return False
        elif rname is None and not rp.segments[i]:
            return False
    return True
