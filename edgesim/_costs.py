"""Cost files (``edgesim calibrate``): measured CPU time per request of an edge node by
outcome, and how the capacity engine picks a request's service time from them.

A cost file holds one model per hardware profile (docs/calibrate.md)::

    format = 1
    [profiles.default]
    machine = "..."                       # where it was measured (informative)
    rules_default = "3.1us"               # matching, for sites not measured
    [profiles.default.service_time]       # per request, rule matching left out
    hit_memory = "212.4us"
    hit_disk = "388.0us"
    miss = "690.2us"
    revalidate = "561.7us"
    redirect = "170.3us"
    [profiles.default.rules]              # matching each site's rules, per request
    "shop.example" = "3.3us"

The engine charges a calibrated node's requests in two parts on the same worker: the
cheapest outcome's time (``CostModel.base``: work every request does) before the node
decides, then the rest of its outcome's time, plus the site's rule matching, after.
This module never imports the engine; the engine calls :meth:`OutcomeTimes.decide`.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgesim._toml import load_toml
from edgesim.errors import TopologyError, TopologyProblem
from edgesim.topology import CostModel, Site

__all__ = ["CLASSES", "OutcomeTimes", "format_costs", "read_cost_file"]

# Outcome classes, in CostModel.outcome_times order.
CLASSES = ("hit_memory", "hit_disk", "miss", "revalidate", "redirect")
FORMAT = 1
_C_HIT_MEMORY, _C_HIT_DISK, _C_MISS, _C_REVALIDATE, _C_REDIRECT = range(5)
_PROFILE_INFO = ("measured", "machine", "python", "edgesim", "samples", "connections", "note")
_PROFILE_KEYS = (*_PROFILE_INFO, "service_time", "rules", "rules_default")


# Cost files are a few lines per profile: a larger file is not one (and is not read)
MAX_COST_FILE = 1 << 20


def read_cost_file(path: str | os.PathLike[str]) -> dict[str, CostModel]:
    """Every cost model in a cost file, by profile name (``path``: a str or a path, as
    :func:`edgesim.calibrate.write_cost_file` takes).

    Raises:
        TopologyError: the file cannot be read or has problems (each names the cost
            file, its line and the key path).
    """
    from edgesim._topoload import _join, _lines, _prefixes, _show, _syntax_problem
    from edgesim._units import parse_duration

    file = str(path)
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_COST_FILE:
            big = f"{size:,} bytes, more than a cost file's {MAX_COST_FILE:,}; not a cost file"
            raise TopologyError([TopologyProblem(file, 0, "", big)])
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        problem = TopologyProblem(file, 0, "", f"not UTF-8 text ({exc.reason}); not a cost file")
        raise TopologyError([problem]) from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise TopologyError([TopologyProblem(file, 0, "", f"cannot read: {reason}")]) from None
    try:
        data = load_toml(text)
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError([_syntax_problem(file, text, exc)]) from None
    lines = _lines(text.removeprefix("\ufeff"))  # as load_toml reads it
    problems: list[TopologyProblem] = []

    def bad(key_path: str, message: str) -> None:
        line = next((lines[p] for p in _prefixes(key_path) if p in lines), 0)
        problems.append(TopologyProblem(file, line, key_path, message))

    def seconds(t: dict[str, Any], key: str, where: str, zero: bool = False) -> float:
        v = t[key]
        try:
            x = parse_duration(v) if isinstance(v, str) else float(v)
        except (TypeError, ValueError, OverflowError):  # float(10**400): OverflowError
            x = -1.0
        if isinstance(v, bool) or not math.isfinite(x) or not (x >= 0 if zero else x > 0):
            what = ">= 0" if zero else "> 0"
            bad(_join(where, key), f"expected a duration {what} such as 212.4us, got {_show(v)}")
            return 0.0
        return x

    def known(t: Any, where: str, keys: Sequence[str]) -> dict[str, Any]:
        if not isinstance(t, dict):
            bad(where, f"expected a table, got {_show(t)}")
            return {}
        for k in t:
            if k not in keys:
                bad(_join(where, k), "unknown key (expected one of: " + ", ".join(keys) + ")")
        return t

    top = known(data, "", ("format", "profiles"))
    if top.get("format", FORMAT) != FORMAT:
        bad("format", f"expected {FORMAT} (a cost file of this edgesim), got {_show(top['format'])}")
    out: dict[str, CostModel] = {}
    profiles = top.get("profiles", {})
    if not isinstance(profiles, dict):
        bad("profiles", f"expected a table of [profiles.NAME] tables, got {_show(profiles)}")
        profiles = {}
    if not profiles:
        bad("profiles", "expected at least one [profiles.NAME] table (written by edgesim calibrate)")
    for name, raw in profiles.items():
        where = _join("profiles", name)
        t = known(raw, where, _PROFILE_KEYS)
        st_where = _join(where, "service_time")
        st = known(t.get("service_time", {}), st_where, CLASSES)
        times = {}
        for c in CLASSES:
            if c not in st:
                bad(_join(st_where, c), f"missing (CPU time per request of a {c.replace('_', ' ')})")
                times[c] = 0.0
            else:
                times[c] = seconds(st, c, st_where)
        r_where = _join(where, "rules")
        rules_t = t.get("rules", {})
        if not isinstance(rules_t, dict):
            bad(r_where, f"expected a table of site = duration, got {_show(rules_t)}")
            rules_t = {}
        rules = tuple((site, seconds(rules_t, site, r_where, zero=True)) for site in rules_t)
        default = seconds(t, "rules_default", where, zero=True) if "rules_default" in t else 0.0
        out[name] = CostModel(name, path, rules=rules, rules_default=default, **times)
    if problems:
        raise TopologyError(sorted(problems, key=lambda p: p.line))
    return out


def _duration(seconds: float) -> str:
    return f"{seconds * 1e6:.2f}us"


def _key(name: str) -> str:
    from edgesim._topoload import _join

    return _join("", name)


def format_costs(models: Sequence[CostModel], info: dict[str, dict[str, Any]]) -> str:
    """The text of a cost file holding ``models`` (``info``: profile -> the informative
    keys, such as ``machine`` and ``measured``)."""
    out = [
        "# edgesim cost model: CPU time per request of one edge node, by outcome,",
        "# measured by `edgesim calibrate` (docs/calibrate.md). Reference it from a topology:",
        '# [profiles.NAME] calibration = "this-file.toml"',
        f"format = {FORMAT}",
    ]
    for m in models:
        p = _key(m.profile)
        out.append("")
        out.append(f"[profiles.{p}]")
        for k, v in info.get(m.profile, {}).items():
            if k in _PROFILE_INFO:
                out.append(f"{k} = {_toml_value(v)}")
        out.append(f'rules_default = "{_duration(m.rules_default)}"')
        out.append("")
        out.append(f"[profiles.{p}.service_time]  # per request, rule matching left out")
        for c, v in zip(CLASSES, m.outcome_times(), strict=True):
            out.append(f'{c} = "{_duration(v)}"')
        out.append("")
        out.append(f"[profiles.{p}.rules]  # matching the site's rules, per request")
        for site, v in m.rules:
            out.append(f'{_toml_string(site)} = "{_duration(v)}"')
    return "\n".join(out) + "\n"


def _toml_string(s: str) -> str:
    import json

    return json.dumps(s, ensure_ascii=False)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return _toml_string(str(v))


def site_has_rules(site: Site) -> bool:
    """Whether the edge matches rules for ``site`` (rule files, or a folder with them)."""
    if site.rules_files:
        return True
    d = site.directory
    return d is not None and any((d / n).is_file() for n in ("_redirects", "netlify.toml"))


def rules_time(model: CostModel, site: Site) -> float:
    """Seconds of rule matching per request of ``site`` under ``model``."""
    if not site_has_rules(site):
        return 0.0
    return next((t for name, t in model.rules if name == site.name), model.rules_default)


class OutcomeTimes:
    """A calibrated node's service time by outcome (the engine's one use of a model).

    ``extra[site][class]``: what a request costs after the node has decided, on top of
    the ``base`` drawn when it started.
    """

    __slots__ = ("extra", "plain")

    def __init__(self, model: CostModel, sites: Sequence[Site]) -> None:
        base = model.base()
        times = model.outcome_times()
        self.extra = [[t - base + rules_time(model, s) for t in times] for s in sites]
        self.plain = [t - base for t in times]  # a site the topology does not list (traces)

    def decide(self, core: Any, req: Any, site: int, now: float) -> tuple[Any, float]:
        """``core.handle(req, now)`` and the rest of its CPU time, by the step's outcome:
        a memory or disk hit (the cache's disk-hit count tells which), a redirect, a
        miss (fill, pass, manifest), a revalidation (also a stale answer, which
        revalidates in the background); a joined request costs a memory hit."""
        cache = core.cache
        disk = cache.disk_hits
        step = core.handle(req, now)
        kind = type(step).__name__
        if kind == "Reply":
            outcome = step.outcome
            if outcome == "HIT":
                c = _C_HIT_DISK if cache.disk_hits != disk else _C_HIT_MEMORY
            elif outcome == "REDIRECT":
                c = _C_REDIRECT
            elif outcome == "STALE":
                c = _C_REVALIDATE
            else:
                c = _C_HIT_MEMORY
        elif kind == "Fetch":
            c = _C_REVALIDATE if step.kind == "revalidate" else _C_MISS
        else:
            c = _C_HIT_MEMORY
        row = self.extra[site] if 0 <= site < len(self.extra) else self.plain
        return step, row[c]
