"""Generated rule sets and URL mixes shared by several test modules."""

from __future__ import annotations

import random

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


def mixed_rules(n: int, seed: int = 7) -> str:
    """A `_redirects` text of ``n`` rules, mixed like real sites: about 85% static,
    8% splats, 5% placeholders, 2% conditions or query pairs."""
    rng = random.Random(seed + 1)
    lines = []
    for kind, sec, i in _plan(n, seed):
        if kind == "static":
            status = rng.choice(["301", "302", "200", "301!", "404"])
            lines.append(f"/{sec}/page-{i} /new/{sec}/page-{i} {status}")
        elif kind == "splat":
            lines.append(f"/{sec}/tree-{i}/* /moved/{sec}/{i}/:splat 301")
        elif kind == "placeholder":
            lines.append(f"/{sec}/item-{i}/:a/:b /p/{sec}/{i}/:b/:a 302")
        elif kind == "geo":
            lines.append(f"/{sec}/geo-{i} /geo/{sec}/{i} 302 Country=de,fr Language=fr")
        else:
            lines.append(f"/{sec}/q-{i} id=:id /q/{sec}/{i}/:id 301")
    return "\n".join(lines) + "\n"


def mixed_urls(n_rules: int, count: int, seed: int = 11, rules_seed: int = 7) -> list[str]:
    """Request URLs for :func:`mixed_rules`: hits of every kind of rule, plus misses."""
    rng = random.Random(seed)
    plan = _plan(n_rules, rules_seed)
    urls = []
    for _ in range(count):
        kind, sec, i = rng.choice(plan)
        if rng.random() < 0.15:
            urls.append(f"https://example.com/{sec}/unknown-{i}")
        elif kind == "static":
            urls.append(f"https://example.com/{sec}/page-{i}{rng.choice(['', '/', '?ref=mail'])}")
        elif kind == "splat":
            urls.append(f"https://example.com/{sec}/tree-{i}/a/b{'/' if rng.random() < 0.3 else ''}")
        elif kind == "placeholder":
            urls.append(f"https://example.com/{sec}/item-{i}/x{i}/y")
        elif kind == "geo":
            urls.append(f"https://example.com/{sec}/geo-{i}")
        else:
            urls.append(f"/{sec}/q-{i}?id={rng.randrange(100)}&utm=z")
    return urls
