"""Generated rule sets and URL mixes shared by several test modules."""

from __future__ import annotations

import random
from collections.abc import Callable

_SECTIONS = ["blog", "news", "docs", "shop", "api", "img", "fr", "de", "v1", "v2", "help"]


def _plan(n: int, seed: int) -> list[tuple[str, str, int]]:
    """(kind, section, number) of each generated rule."""
    rng = random.Random(seed)
    plan = []
    for i in range(n):
        sec = rng.choice(_SECTIONS)
        r = rng.random()
        kind = (
            "static"
            if r < 0.85
            else "splat"
            if r < 0.93
            else "placeholder"
            if r < 0.98
            else "geo"
            if r < 0.99
            else "query"
        )
        plan.append((kind, sec, i))
    return plan


# Each kind of rule, and a URL that it matches: (rule, url) of a rule's section and
# number. Either may draw from the generator it is given.
_Make = Callable[[str, int, random.Random], str]
_STATUSES = ["301", "302", "200", "301!", "404"]
_KINDS: dict[str, tuple[_Make, _Make]] = {
    "static": (
        lambda sec, i, rng: f"/{sec}/page-{i} /new/{sec}/page-{i} {rng.choice(_STATUSES)}",
        lambda sec, i, rng: f"https://example.com/{sec}/page-{i}{rng.choice(['', '/', '?ref=mail'])}",
    ),
    "splat": (
        lambda sec, i, rng: f"/{sec}/tree-{i}/* /moved/{sec}/{i}/:splat 301",
        lambda sec, i, rng: f"https://example.com/{sec}/tree-{i}/a/b{'/' if rng.random() < 0.3 else ''}",
    ),
    "placeholder": (
        lambda sec, i, rng: f"/{sec}/item-{i}/:a/:b /p/{sec}/{i}/:b/:a 302",
        lambda sec, i, rng: f"https://example.com/{sec}/item-{i}/x{i}/y",
    ),
    "geo": (
        lambda sec, i, rng: f"/{sec}/geo-{i} /geo/{sec}/{i} 302 Country=de,fr Language=fr",
        lambda sec, i, rng: f"https://example.com/{sec}/geo-{i}",
    ),
    "query": (
        lambda sec, i, rng: f"/{sec}/q-{i} id=:id /q/{sec}/{i}/:id 301",
        lambda sec, i, rng: f"/{sec}/q-{i}?id={rng.randrange(100)}&utm=z",
    ),
}


def mixed_rules(n: int, seed: int = 7) -> str:
    """A `_redirects` text of ``n`` rules, mixed like real sites: about 85% static,
    8% splats, 5% placeholders, 2% conditions or query pairs."""
    rng = random.Random(seed + 1)
    return "\n".join(_KINDS[kind][0](sec, i, rng) for kind, sec, i in _plan(n, seed)) + "\n"


def mixed_urls(n_rules: int, count: int, seed: int = 11, rules_seed: int = 7) -> list[str]:
    """Request URLs for :func:`mixed_rules`: hits of every kind of rule, plus misses."""
    rng = random.Random(seed)
    plan = _plan(n_rules, rules_seed)
    urls = []
    for _ in range(count):
        kind, sec, i = rng.choice(plan)
        if rng.random() < 0.15:
            urls.append(f"https://example.com/{sec}/unknown-{i}")
        else:
            urls.append(_KINDS[kind][1](sec, i, rng))
    return urls
