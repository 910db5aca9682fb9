"""Benchmarks of the rule matchers (``edgesim redirects bench``).

Every figure is measured in one process, native beside reference, so that ratios stay
meaningful on shared, noisy machines. Results are plain dicts ready for JSON.
"""

from __future__ import annotations

import os
import platform
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import edgesim
from edgesim.redirects import ReferenceRuleSet, RuleSet


def machine() -> str:
    """CPU model, core count and architecture, for benchmark records."""
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model or 'unknown CPU'}, {os.cpu_count()} cores, {platform.machine()}"


def sample_urls(rules: RuleSet, count: int = 5000, *, seed: int = 1, miss_share: float = 0.2) -> list[str]:
    """A URL mix generated from the rules: paths that hit each kind of rule, plus misses.

    Splats get a two-segment tail, placeholders a value, absolute rules keep their host;
    ``miss_share`` of the URLs are paths no static rule names.
    """
    rng = random.Random(seed)
    infos = rules.rules
    urls: list[str] = []
    for _ in range(count):
        if not infos or rng.random() < miss_share:
            urls.append(f"https://example.com/miss/{rng.randrange(10**6)}/page-{rng.randrange(100)}")
            continue
        frm = rng.choice(infos).from_
        host = "example.com"
        scheme = "https"
        if "://" in frm:
            scheme, rest = frm.split("://", 1)
            host, _, path = rest.partition("/")
            frm = "/" + path
        segs = []
        for seg in frm.split("/"):
            if seg.startswith(":") and len(seg) > 1:
                seg = f"v{rng.randrange(1000)}"
            segs.append(seg)
        path = "/".join(segs)
        if path.endswith("*"):
            path = path[:-1] + f"a{rng.randrange(100)}/b"
        urls.append(f"{scheme.lower()}://{host}{path or '/'}")
    return urls


def _rate(fn: Callable[[], int], seconds: float) -> dict[str, float]:
    """Operations per second of ``fn`` (which returns its operation count).

    ``fn`` runs repeatedly for about ``seconds``; each run gives one rate. The best run
    is the figure least disturbed by other load on a shared machine (as ``timeit``
    reports); the median shows the typical run.
    """
    fn()  # warm-up: caches, lazily built tables
    rates: list[float] = []
    start = time.perf_counter()
    while not rates or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        ops = fn()
        rates.append(ops / max(time.perf_counter() - t, 1e-9))
    rates.sort()
    return {"best": rates[-1], "median": rates[len(rates) // 2], "runs": len(rates)}


def _figures(name: str, rate: dict[str, float]) -> dict[str, float]:
    return {f"{name}_per_s": round(rate["median"]), f"{name}_best_per_s": round(rate["best"])}


def run(
    rules_path: str | Path,
    urls: Sequence[str] | None = None,
    *,
    seconds: float = 1.0,
    reference: bool = True,
    reference_seconds: float | None = None,
) -> dict[str, Any]:
    """Benchmark compile time and match throughput of both matchers.

    Args:
        rules_path: a `_redirects` file, netlify.toml, or site directory.
        urls: the URL mix (default: :func:`sample_urls`).
        seconds: measuring time per native figure.
        reference: also measure the reference matcher.
        reference_seconds: measuring time for the (slow) reference figures.
    """
    path = Path(rules_path)
    load: Callable[..., Any] = RuleSet.from_site if path.is_dir() else RuleSet.from_file
    ref_load: Callable[..., Any] = ReferenceRuleSet.from_site if path.is_dir() else ReferenceRuleSet.from_file

    def compile_ms(loader: Callable[..., Any], repeat: int) -> float:
        best = float("inf")
        for _ in range(repeat):
            t = time.perf_counter()
            rs = loader(path)
            best = min(best, time.perf_counter() - t)
            rs.close()
        return best * 1000

    native = load(path)
    url_list = list(urls) if urls is not None else sample_urls(native)
    matched = sum(1 for m in native.match_many(url_list) if m is not None)

    def many() -> int:
        native.match_many(url_list)
        return len(url_list)

    def single() -> int:
        m = native.match
        for u in url_list:
            m(u)
        return len(url_list)

    out: dict[str, Any] = {
        "benchmark": "redirects",
        "edgesim": edgesim.__version__,
        "machine": machine(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        "rules_file": str(rules_path),
        "rules": len(native),
        "urls": len(url_list),
        "matched_share": round(matched / max(1, len(url_list)), 4),
        "native": {
            "compile_ms": round(compile_ms(load, 5), 3),
            **_figures("match_many", _rate(many, seconds)),
            **_figures("match", _rate(single, seconds)),
            "memory_bytes": native.memory,
            "bytes_per_rule": round(native.memory / max(1, len(native)), 1),
        },
    }
    if reference:
        ref = ref_load(path)
        sub = url_list[: max(50, min(len(url_list), 2000))]
        pos = 0

        def ref_single() -> int:
            nonlocal pos
            batch = [sub[(pos + i) % len(sub)] for i in range(10)]
            pos += 10
            for u in batch:
                ref.match(u)
            return len(batch)

        rsec = reference_seconds if reference_seconds is not None else seconds
        ref_rate = _rate(ref_single, rsec)
        out["reference"] = {
            "compile_ms": round(compile_ms(ref_load, 1), 3),
            **_figures("match", ref_rate),
        }
        nat = out["native"]
        out["ratios"] = {
            "match_many_vs_reference": round(nat["match_many_per_s"] / ref_rate["median"], 1),
            "match_vs_reference": round(nat["match_per_s"] / ref_rate["median"], 1),
        }
    native.close()
    return out
