"""Sweeps: a grid of topology parameters x seeds, one capacity-engine run per cell.

Theory of operation
-------------------
A sweep spec (TOML, docs/sweep.md) names a topology, a ``[grid]`` of parameters (dotted
key paths into the topology, each with a list of values), optional ``[set]`` values
applied to every run, and the seeds. :func:`load_spec` reads it and reports every
problem with its file, line and key path; :func:`plan` expands it into :class:`Run`
objects (grid order, then seeds) and checks each cell's topology once, so that a bad
value fails before anything runs.

:func:`run_sweep` hands the runs to an executor: a pool of local processes (one
single-process pool per worker slot, so that a worker that dies is charged to the one
run it was running) or Dask distributed (``dask-local`` starts a cluster on loopback;
``tcp://host:port`` connects to a scheduler). A worker gets only the topology text, the
values to set and the seed, parses the topology itself and returns the run's row of key
metrics. A run that raises, or whose worker dies, is run once more; if that fails too its
row says ``failed`` with the error. Nothing is dropped.

Runs are deterministic per (topology text, values, seed, the contents of the files
the cell's topology names, edgesim version), which is what the row's ``run_id`` hashes:
rows already ``ok`` in the output files are kept and skipped, so a sweep that was
stopped resumes where it was, and a run whose rule file or trace was edited since is
run again. The output files are rewritten atomically after every finished run, rows in
plan order, so a kill loses no finished row.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import difflib
import hashlib
import importlib
import io
import json
import logging
import math
import os
import time
import tomllib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_futures
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgesim import __version__
from edgesim._atomic import is_special, write_atomic
from edgesim._toml import load_toml
from edgesim._topoload import (
    _index,
    _join,
    _lines,
    _prefixes,
    _show,
    _syntax_problem,
    exists,
    parse_topology,
    resolve_topology_arg,
)
from edgesim.errors import EdgesimError, TopologyError, TopologyProblem
from edgesim.pricing import run_cost
from edgesim.topology import Topology

__all__ = [
    "Cell",
    "Run",
    "SweepError",
    "SweepResult",
    "SweepSpec",
    "load_spec",
    "plan",
    "run_sweep",
]

log = logging.getLogger("edgesim.sweep")

SPEC_KEYS = ("topology", "seeds", "grid", "set")
# Each run is tried this many times in all: once, then once more if it failed or its
# worker died (a deterministic failure fails twice; a lost worker rarely does).
ATTEMPTS = 2
# A sweep of more cells than this is almost surely a typo in a grid (and would take days).
MAX_RUNS = 100_000
# Key metrics of a row, in column order (region columns follow, then wall_seconds).
METRIC_COLUMNS = (
    "requests",
    "p50_ms",
    "p99_ms",
    "object_hit_ratio",
    "byte_hit_ratio",
    "origin_rps",
    "origin_peak_rps",
    "origin_utilisation",
    "edge_utilisation_max",
    "edge_utilisation_mean",
    "errors",
    "cost",
)
ID_COLUMNS = ("run_id", "status", "attempts", "error", "seed")


class SweepError(EdgesimError, ValueError):
    """A sweep cannot start: a bad spec, a cell whose topology is invalid, or output
    files that are not a sweep's. ``problems`` holds one line each (file, line, key
    path, what was expected)."""

    def __init__(self, problems: Sequence[TopologyProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True, slots=True)
class Parameter:
    """One key path of the spec with its values (one value for ``[set]``).

    Attributes:
        name: the key path as written (``regions.eu-west.edge.nodes``), the column name.
        parts: its keys; a part after an array of tables selects an element by
            ``name`` (``eu-west``) or by index (``0``).
        values: the values to try.
        line: the spec line it is on.
    """

    name: str
    parts: tuple[str, ...]
    values: tuple[Any, ...]
    line: int


@dataclass(frozen=True, slots=True)
class SweepSpec:
    """A validated sweep spec (see docs/sweep.md)."""

    path: Path
    topology: Path
    topology_text: str
    grid: tuple[Parameter, ...]
    fixed: tuple[Parameter, ...]
    seeds: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Cell:
    """What a worker needs for one run (small and picklable).

    ``patches`` are (key parts, value) pairs set in the topology's TOML data before it
    is validated.
    """

    topology_text: str
    topology_path: str
    patches: tuple[tuple[tuple[str, ...], Any], ...]
    seed: int


@dataclass(frozen=True, slots=True)
class Run:
    """One run of the plan: a grid cell and a seed."""

    index: int
    run_id: str
    params: tuple[tuple[str, Any], ...]
    seed: int
    cell: Cell


@dataclass(slots=True)
class SweepResult:
    """What :func:`run_sweep` did: every row (plan order, then rows of other sweeps
    found in the output files), and how many runs were done now, kept or failed."""

    rows: list[dict[str, Any]]
    ran: int = 0
    kept: int = 0
    failed: int = 0
    foreign: int = 0
    params: tuple[str, ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------
# The spec
# --------------------------------------------------------------------------


def load_spec(path: str | Path) -> SweepSpec:
    """Read and check a sweep spec.

    Raises:
        SweepError: every problem, each with the file, line and key path.
    """
    p = Path(path)
    file = str(path)
    if is_special(p):
        raise SweepError([TopologyProblem(file, 0, "", "not a regular file (a FIFO or device)")])
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SweepError([TopologyProblem(file, 0, "", f"cannot read: {reason}")]) from None
    try:
        data = load_toml(text)
    except tomllib.TOMLDecodeError as exc:
        raise SweepError([_syntax_problem(file, text, exc)]) from None
    lines = _lines(text)
    problems: list[TopologyProblem] = []

    def bad(key_path: str, message: str) -> None:
        problems.append(TopologyProblem(file, lines.get(key_path, 0), key_path, message))

    for key in data:
        if key not in SPEC_KEYS:
            close = difflib.get_close_matches(key, SPEC_KEYS, n=1, cutoff=0.6)
            hint = f'did you mean "{close[0]}"?' if close else "expected one of: " + ", ".join(SPEC_KEYS)
            bad(_join("", key), f"unknown key ({hint})")
    topo_path = Path()
    topo_text = ""
    raw_topo = data.get("topology")
    if not isinstance(raw_topo, str) or not raw_topo.strip():
        bad("topology", f"expected a topology file or bundled name, got {_show(raw_topo)}")
    elif "\x00" in raw_topo:
        bad("topology", "expected a topology file or bundled name, got a string with a NUL character")
    else:
        base = p.parent
        candidate = base / raw_topo
        topo_path = candidate if exists(candidate) else resolve_topology_arg(raw_topo)
        if is_special(topo_path):
            bad("topology", f"{raw_topo}: not a regular file (a FIFO or device), expected a topology")
        else:
            try:
                topo_text = topo_path.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                bad("topology", f"{raw_topo}: not UTF-8 text ({exc.reason}), expected a topology")
            except OSError:
                bad("topology", f"{raw_topo} is neither a file (relative to {base}) nor a bundled topology")
    seeds = _seeds(data.get("seeds", [1]), bad)
    grid = _params(data.get("grid", {}), "grid", lines, bad, single=False)
    fixed = _params(data.get("set", {}), "set", lines, bad, single=True)
    if "grid" not in data and not problems:
        bad("grid", "missing (a [grid] table of key paths, each with a list of values)")
    names = [q.name for q in grid]
    for q in fixed:
        if q.name in names:
            bad(f"set.{q.name}", "expected a key path not also in [grid]")
    count = len(seeds) * math.prod(len(q.values) for q in grid)
    if count > MAX_RUNS:
        bad("grid", f"expected at most {MAX_RUNS:,} runs in all, got {count:,}")
    if problems:
        raise SweepError(sorted(problems, key=lambda q: q.line))
    return SweepSpec(p, topo_path, topo_text, tuple(grid), tuple(fixed), tuple(seeds))


def _seeds(v: Any, bad: Callable[[str, str], None]) -> list[int]:
    what = "a whole number N >= 1 (seeds 1 to N) or an array of distinct whole numbers >= 0"
    if isinstance(v, int) and not isinstance(v, bool):
        if v < 1 or v > MAX_RUNS:
            bad("seeds", f"expected {what}, got {v}")
            return [1]
        return list(range(1, v + 1))
    if (
        not isinstance(v, list)
        or not v
        or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v)
        or len(set(v)) != len(v)
    ):
        bad("seeds", f"expected {what}, got {_show(v)}")
        return [1]
    return list(v)


def _params(
    table: Any,
    section: str,
    lines: Mapping[str, int],
    bad: Callable[[str, str], None],
    *,
    single: bool,
) -> list[Parameter]:
    """The leaves of ``[grid]`` (arrays of values) or ``[set]`` (single values).

    Nested tables continue a key path (``regions.eu-west.edge.nodes = [2, 3]`` is the
    table ``regions`` > ``eu-west`` > ``edge``). In ``[grid]`` an array ends a path and
    its items, inline tables included, are the values to try; in ``[set]`` any value
    that is not a table ends it.
    """
    if not isinstance(table, dict):
        bad(section, f"expected a table of key paths, got {_show(table)}")
        return []
    out: list[Parameter] = []

    def walk(t: dict[str, Any], parts: tuple[str, ...], spec_path: str) -> None:
        for key, v in t.items():
            here = (*parts, key)
            sp = _join(spec_path, key)
            name = ".".join(_join("", k) for k in here)
            if isinstance(v, dict):
                walk(v, here, sp)
            elif single:
                out.append(Parameter(name, here, (v,), lines.get(sp, 0)))
            elif not isinstance(v, list) or not v:
                bad(sp, f"expected a non-empty array of values to try, got {_show(v)}")
            elif repeated := _repeated(v):
                bad(sp, f"expected an array of distinct values to try, got {repeated} more than once")
            else:
                out.append(Parameter(name, here, tuple(v), lines.get(sp, 0)))

    walk(table, (), section)
    if not table and not single:
        bad(section, "expected at least one key path with values")
    return out


def _shown(v: Any) -> str:
    """A spec value in a message: as ``_show`` does, and a short inline table as JSON."""
    if isinstance(v, dict):
        text = json.dumps(v, ensure_ascii=False, sort_keys=True, default=str)
        return text if len(text) <= 60 else "a table"
    return _show(v)


def _repeated(values: Sequence[Any]) -> str:
    """The values of a grid array that are there more than once ("" when none are),
    as the first of each was written: two equal runs would have one ``run_id``."""
    first: dict[Any, Any] = {}
    shown: list[str] = []
    for v in values:
        key = _same(v)
        if key not in first:
            first[key] = v
        elif (text := _shown(first[key])) not in shown:
            shown.append(text)
    return f"each of {', '.join(shown)}" if len(shown) > 1 else "".join(shown)


def _same(v: Any) -> Any:
    """A key equal for equal TOML values: numbers by value (``2`` is ``2.0``, ``nan`` is
    ``nan``), tables whatever their key order; a string is its text (``"1MB"`` is not
    ``"1000KB"``: values are not read as sizes or durations here), a boolean not a number."""
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, float) and math.isnan(v):
        return ("nan",)
    if isinstance(v, int | float):
        return ("number", int(v) if isinstance(v, float) and v.is_integer() else v)
    if isinstance(v, dict):
        return ("table", tuple(sorted((k, _same(x)) for k, x in v.items())))
    if isinstance(v, list):
        return ("array", tuple(_same(x) for x in v))
    return (type(v).__name__, v)  # strings, dates and times


# --------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------


def _set(data: dict[str, Any], parts: Sequence[str], value: Any) -> tuple[str, str]:
    """Set ``parts`` to ``value`` in the topology's TOML data; return the key path as
    the topology's problems name it (``regions[0].edge.nodes``), or that of the first
    table the setting made, when it made any (``regions[0].edge.cache`` for
    ``regions.eu-west.edge.cache.size``: a problem there is the spec's doing too), and
    the key path set (``regions[0].edge.cache.size``).

    Raises:
        KeyError: with a message, when a part names no array element or goes through a
            value that is not a table.
    """
    cur: Any = data
    where = ""
    made = ""  # the first table made on the way, if any
    for i, key in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(cur, list):
            j = _element(cur, key)
            if j is None:
                names = [str(e.get("name")) for e in cur if isinstance(e, dict) and "name" in e]
                known = f" (names: {', '.join(names)})" if names else ""
                raise KeyError(
                    f"{where} has no element named {_show(key)}{known}; use a name or an index from 0"
                )
            where = _index(where, j)
            if last:
                raise KeyError(f"expected a key inside {where}, not the whole element")
            cur = cur[j]
            continue
        if not isinstance(cur, dict):
            raise KeyError(f"{where} is {_show(cur)}, not a table")
        where = _join(where, key)
        if last:
            cur[key] = copy.deepcopy(value)
        else:
            if key not in cur and not made:
                made = where
            cur = cur.setdefault(key, {})
    return made or where, where


def _element(items: list[Any], key: str) -> int | None:
    for j, e in enumerate(items):
        if isinstance(e, dict) and e.get("name") == key:
            return j
    if key.isdigit() and int(key) < len(items):
        return int(key)
    return None


def _patcher(patches: Sequence[tuple[Sequence[str], Any]]) -> Callable[[dict[str, Any]], None]:
    def patch(data: dict[str, Any]) -> None:
        for parts, value in patches:
            _set(data, parts, value)

    return patch


def _cell_topology(cell: Cell) -> Topology:
    return parse_topology(cell.topology_text, path=cell.topology_path, patch=_patcher(cell.patches))


def plan(spec: SweepSpec) -> list[Run]:
    """Every run of ``spec``, in grid order (the last parameter varies fastest), each
    cell's seeds together.

    Raises:
        SweepError: a key path that names nothing, or a cell whose topology is invalid;
            problems caused by a sweep value name the spec's line and key path.
    """
    from itertools import product

    problems: list[TopologyProblem] = []
    digest = hashlib.sha256(spec.topology_text.encode()).hexdigest()
    fixed = [(q.parts, q.values[0]) for q in spec.fixed]
    runs: list[Run] = []
    seen: set[str] = set()
    check = _CellChecker(spec)
    contents = _Contents(spec)

    def add(problem: TopologyProblem) -> None:
        if str(problem) not in seen:
            seen.add(str(problem))
            problems.append(problem)

    for combo in product(*(range(len(q.values)) for q in spec.grid)):
        values = [(q, q.values[i]) for q, i in zip(spec.grid, combo, strict=True)]
        patches = tuple((q.parts, v) for q, v in [*((q, q.values[0]) for q in spec.fixed), *values])
        cell = Cell(spec.topology_text, str(spec.topology), patches, 0)
        found, files = check(cell, values)
        for problem in found:
            add(problem)
        # what the cell's runs read besides the text: their contents (and the version
        # that runs them) are part of each run_id, so an edited rule file or trace, or
        # another edgesim, is a new run, not a row kept from before
        read = [contents(key_path, p) for key_path, p in files]
        for problem in contents.problems:
            add(problem)
        params = tuple((q.name, v) for q, v in values)
        for seed in spec.seeds:
            ident = json.dumps(
                [digest, fixed, [list(p) for p in params], seed, read, __version__],
                default=str,
                sort_keys=True,
            )
            run_id = hashlib.sha256(ident.encode()).hexdigest()[:16]
            runs.append(
                Run(
                    len(runs),
                    run_id,
                    params,
                    seed,
                    Cell(cell.topology_text, cell.topology_path, patches, seed),
                )
            )
    if problems:
        raise SweepError(sorted(_each_value_alike(problems, check.alone), key=lambda q: q.line)[:50])
    return runs


def _each_value_alike(
    problems: Sequence[TopologyProblem], alone: Mapping[str, tuple[Parameter, Any, str]]
) -> list[TopologyProblem]:
    """``problems`` with those that every value of one parameter causes alike (a typo in
    its key path: ``unknown key``) told once, without a value, instead of once a value."""
    values: dict[tuple[int, str], set[Any]] = {}
    for p in problems:
        if (got := alone.get(str(p))) is not None:
            values.setdefault((id(got[0]), got[2]), set()).add(got[1])
    out: list[TopologyProblem] = []
    told: set[tuple[int, str]] = set()
    for p in problems:
        got = alone.get(str(p))
        if got is not None and len(got[0].values) > 1:
            key = (id(got[0]), got[2])
            if len(values[key]) == len(got[0].values):
                if key not in told:
                    told.add(key)
                    out.append(TopologyProblem(p.file, p.line, p.key_path, got[2]))
                continue
        out.append(p)
    return out


def _under(key_path: str, prefix: str) -> bool:
    """Whether ``key_path`` is ``prefix`` or lies inside it."""
    return key_path == prefix or key_path.startswith((prefix + ".", prefix + "["))


@dataclass(frozen=True, slots=True)
class _Source:
    """A value a cell sets: from ``[set]`` or ``[grid]`` (``section``), the spec's
    parameter, the value, and the topology key path it is blamed for (``under``: the key
    set, or the first table the setting made)."""

    section: str
    param: Parameter
    value: Any
    under: str

    def patch(self) -> tuple[tuple[str, ...], Any]:
        return self.param.parts, self.value

    def told(self) -> str:
        return f"{self.section}.{self.param.name} = {_shown(self.value)} (line {self.param.line})"


class _CellChecker:
    """Checks the topology of each cell of a spec.

    A problem the topology has on its own (without any value of the spec) is told as it
    is. Any other problem was caused by the cell's values: it is told at the spec's line
    of the value that caused it, with its key path and the value, then the topology's
    problem (its file, line and key path). A problem under a key path the cell set is
    that value's; one elsewhere (``interval`` longer than a ``traffic.duration`` the
    grid shortened) is blamed on the values without which it goes away, found by
    checking the topology without each value in turn.
    """

    def __init__(self, spec: SweepSpec) -> None:
        self.spec = spec
        self.file = str(spec.path)
        self._found: dict[str, frozenset[tuple[str, str]] | None] = {}
        # problems caused by one value alone: its parameter, the value (as _same keys
        # it) and the problem told without the value
        self.alone: dict[str, tuple[Parameter, Any, str]] = {}
        self.own = self._problems(())

    def _problems(self, patches: Sequence[tuple[tuple[str, ...], Any]]) -> frozenset[tuple[str, str]] | None:
        """The (key path, message) of each problem of the topology with ``patches`` set
        (remembered), or None when the patches cannot all be set without the others."""
        key = json.dumps([[list(p), v] for p, v in patches], sort_keys=True, default=str)
        if key not in self._found:
            cell = Cell(self.spec.topology_text, str(self.spec.topology), tuple(patches), 0)
            found: frozenset[tuple[str, str]] | None = frozenset()
            try:
                _cell_topology(cell)
            except TopologyError as exc:
                found = frozenset((tp.key_path, tp.message) for tp in exc.problems)
            except KeyError:  # a key path into an array that another value set
                found = None
            self._found[key] = found
        return self._found[key]

    def __call__(
        self, cell: Cell, values: Sequence[tuple[Parameter, Any]]
    ) -> tuple[list[TopologyProblem], tuple[tuple[str, Path], ...]]:
        """The cell's problems, and the files and folders its topology names (key path,
        resolved path; none when it has problems)."""
        file = self.file
        spec = self.spec
        data_probe: dict[str, Any] = {}
        with contextlib.suppress(tomllib.TOMLDecodeError):  # parse_topology reports it below
            data_probe = load_toml(spec.topology_text)
        section = [(q, "set", q.values[0]) for q in spec.fixed] + [(q, "grid", v) for q, v in values]
        problems: list[TopologyProblem] = []
        sources: list[_Source] = []
        set_by: dict[str, tuple[str, Parameter]] = {}  # key path set -> who set it
        for q, sec, v in section:
            try:
                tl_path, key_path = _set(data_probe, q.parts, v)
            except KeyError as exc:
                problems.append(TopologyProblem(file, q.line, f"{sec}.{q.name}", str(exc.args[0])))
                continue
            if key_path in set_by:  # regions.eu-west.x and regions.0.x: one key, two values
                other_sec, other = set_by[key_path]
                also = f"{other_sec}.{other.name} (line {other.line})"
                message = f"sets {key_path}, as {also} does: name each key once"
                problems.append(TopologyProblem(file, q.line, f"{sec}.{q.name}", message))
                continue
            set_by[key_path] = (sec, q)
            sources.append(_Source(sec, q, v, tl_path))
        if problems:
            return problems, ()
        try:
            return problems, _cell_topology(cell).files
        except TopologyError as exc:
            for tp in exc.problems:
                src = next((s for s in sources if _under(tp.key_path, s.under)), None)
                if src is None and self.own is not None and (tp.key_path, tp.message) in self.own:
                    problems.append(tp)  # the topology's own problem
                else:
                    problems.append(self._blame(tp, sources, src))
        return problems, ()

    def _blame(self, tp: TopologyProblem, sources: Sequence[_Source], src: _Source | None) -> TopologyProblem:
        """``tp``, which the topology alone does not have, told at the spec's line of the
        value set at its key path (``src``) and of every other value without which it goes
        away; when ``src`` is None and no value is needed, those that cause it on their
        own; else all of the cell's values."""
        key = (tp.key_path, tp.message)
        patches = [s.patch() for s in sources]
        needed = []
        for i, s in enumerate(sources):
            if s is src:
                continue
            without = self._problems(patches[:i] + patches[i + 1 :])
            if without is None or key not in without:
                needed.append(s)
        needed.sort(key=lambda s: s.param.line)
        if src is not None:
            # the value at the problem's key path: the key path is the topology's own, but
            # the line is the spec's (the topology's line holds a value that is not used)
            first, others, where = src, needed, f"{tp.key_path}: {tp.message}"
        else:
            if not needed:
                needed = [s for s in sources if key in (self._problems([s.patch()]) or ())]
            first, *others = needed or sorted(sources, key=lambda s: s.param.line)
            where = str(tp)
        also = f", with {' and '.join(s.told() for s in others)}" if others else ""
        problem = TopologyProblem(
            file=self.file,
            line=first.param.line,
            key_path=f"{first.section}.{first.param.name}",
            message=f"value {_shown(first.value)}{also}: {where}",
        )
        if not others:
            self.alone[str(problem)] = (first.param, _same(first.value), where)
        return problem


class _Contents:
    """SHA-256 of the files and folders that a plan's cells read, each read once per
    plan (a trace that every cell replays is hashed once, in chunks): a file's bytes; a
    folder's files, by their path inside it and their bytes (links followed). Names and
    contents only: touching a file (its mtime) changes nothing.

    A file that cannot be read now (removed, or its permission taken since the cell was
    checked) is a problem of the plan, in ``problems``: a run could not read it either.
    """

    def __init__(self, spec: SweepSpec) -> None:
        self.file = str(spec.topology)
        self.lines = _lines(spec.topology_text.removeprefix("\ufeff"))
        self.seen: dict[Path, str] = {}
        self.problems: list[TopologyProblem] = []

    def __call__(self, key_path: str, path: Path) -> str:
        if path not in self.seen:
            try:
                self.seen[path] = _folder_sha256(path) if path.is_dir() else _file_sha256(path)
            except OSError as exc:
                line = next((self.lines[p] for p in _prefixes(key_path) if p in self.lines), 0)
                where = exc.filename if isinstance(exc.filename, str) else path
                reason = f"cannot read {where}: {exc.strerror or exc}"
                self.problems.append(TopologyProblem(self.file, line, key_path, reason))
                self.seen[path] = ""
        return self.seen[path]


def _file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _folder_sha256(root: Path) -> str:
    """Every regular file under ``root`` (links followed; a link back to a folder above
    is not entered again), sorted by its path inside it; other entries (a FIFO, a
    dangling link) by name only, never opened."""
    found: list[tuple[str, Path | None]] = []
    top = root.stat()
    stack: list[tuple[Path, str, frozenset[tuple[int, int]]]] = [
        (root, "", frozenset([(top.st_dev, top.st_ino)]))
    ]
    while stack:
        folder, prefix, above = stack.pop()
        with os.scandir(folder) as entries:
            for ent in entries:
                rel = f"{prefix}/{ent.name}"
                if ent.is_dir():
                    st = ent.stat()
                    if (st.st_dev, st.st_ino) not in above:
                        stack.append((Path(ent.path), rel, above | {(st.st_dev, st.st_ino)}))
                else:
                    found.append((rel, Path(ent.path) if ent.is_file() else None))
    h = hashlib.sha256()
    for rel, p in sorted(found, key=lambda x: x[0]):
        h.update(f"{rel}\0{_file_sha256(p) if p is not None else '-'}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


# --------------------------------------------------------------------------
# One run (in a worker)
# --------------------------------------------------------------------------


def run_cell(cell: Cell) -> dict[str, Any]:
    """Simulate one cell and return its key metrics (a worker's task).

    Raises whatever the run raises; the sweep records it.
    """
    from edgesim.engine import simulate

    t0 = time.perf_counter()
    topo = _cell_topology(cell)
    result = simulate(topo, seed=cell.seed)
    row = metrics(result.to_dict(deterministic=True), topo)
    row["wall_seconds"] = round(time.perf_counter() - t0, 3)
    return row


def _ms(v: Any) -> float | None:
    return None if v is None else round(float(v) * 1000, 3)


def metrics(report: Mapping[str, Any], topo: Topology) -> dict[str, Any]:
    """The key metrics of a run report, flat: latency (ms), hit ratios, origin load,
    edge utilisation, errors, cost (None when the topology gives no costs), and per
    region ``REGION.p99_ms``, ``REGION.utilisation_max``, ``REGION.object_hit_ratio``."""
    totals = report["totals"]
    origin = report["origin"]
    edge_util = [n["utilisation"] for n in report["nodes"].values() if n["tier"] == "edge"]
    row: dict[str, Any] = {
        "requests": totals["requests"],
        "p50_ms": _ms(totals["latency"]["p50"]),
        "p99_ms": _ms(totals["latency"]["p99"]),
        "object_hit_ratio": totals["object_hit_ratio"],
        "byte_hit_ratio": totals["byte_hit_ratio"],
        "origin_rps": origin["requests_per_second"],
        "origin_peak_rps": origin["peak_requests_per_second"],
        "origin_utilisation": origin["utilisation"],
        "edge_utilisation_max": max(edge_util) if edge_util else None,
        "edge_utilisation_mean": round(sum(edge_util) / len(edge_util), 6) if edge_util else None,
        "errors": totals["errors"] + totals["failed"],
        "cost": run_cost(report, topo),
    }
    for name, reg in report["regions"].items():
        util = [
            n["utilisation"] for n in report["nodes"].values() if n["tier"] == "edge" and n["region"] == name
        ]
        row[f"{name}.p99_ms"] = _ms(reg["latency"]["p99"])
        row[f"{name}.utilisation_max"] = max(util) if util else None
        row[f"{name}.object_hit_ratio"] = reg["object_hit_ratio"]
    return row


# --------------------------------------------------------------------------
# Executors
# --------------------------------------------------------------------------


class _Failure:
    """A run that raised, or whose worker died: the error as one line."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class _LocalExecutor:
    """``workers`` single-process pools: a dead worker breaks only its own pool, so the
    death is charged to the one run it had; the pool is then replaced."""

    def __init__(self, workers: int) -> None:
        import multiprocessing

        # spawn: workers start clean (no copy of a parent's threads or locks)
        self._ctx = multiprocessing.get_context("spawn")
        self._free: list[ProcessPoolExecutor] = [self._pool() for _ in range(workers)]
        self._busy: dict[Future[Any], ProcessPoolExecutor] = {}
        self.workers = workers

    def _pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=1, mp_context=self._ctx)

    def capacity(self) -> int:
        return len(self._free)

    def submit(self, fn: Callable[[Cell], dict[str, Any]], cell: Cell) -> Any:
        pool = self._free.pop()
        fut = pool.submit(fn, cell)
        self._busy[fut] = pool
        return fut

    def wait(self, handles: Iterable[Any]) -> list[tuple[Any, dict[str, Any] | _Failure]]:
        done, _ = wait_futures(list(handles), return_when=FIRST_COMPLETED)
        out: list[tuple[Any, dict[str, Any] | _Failure]] = []
        for fut in done:
            pool = self._busy.pop(fut)
            try:
                out.append((fut, fut.result()))
                self._free.append(pool)
            except BrokenProcessPool:
                pool.shutdown(wait=False, cancel_futures=True)
                self._free.append(self._pool())
                out.append((fut, _Failure("worker process died")))
            except Exception as exc:
                out.append((fut, _Failure(_one_line(exc))))
                self._free.append(pool)
        return out

    def close(self, *, abort: bool = False) -> None:
        """Shut the pools down; with ``abort`` (an interrupted sweep) end the runs still
        going instead of waiting for them (their rows were never written)."""
        for pool in self._busy.values():
            if abort:
                # ProcessPoolExecutor has no public way to end a running call (3.14 adds
                # terminate_workers); its process table is the only handle
                for proc in list(getattr(pool, "_processes", {}).values()):
                    proc.terminate()
        for pool in [*self._free, *self._busy.values()]:
            pool.shutdown(wait=True, cancel_futures=True)
        self._free.clear()
        self._busy.clear()


class _DaskExecutor:
    """Dask distributed: a LocalCluster on loopback, or a scheduler's address.

    At most one run per worker thread is handed to Dask at a time, and a local cluster
    sends a worker no more tasks than it has threads (``worker-saturation`` 1.0), so a
    worker that dies had only its own run. The scheduler of a local cluster retries no
    task itself (``allowed-failures`` 0): the death reaches the sweep at once as
    ``KilledWorker`` and counts as that run's attempt, like any other failure. A remote
    scheduler applies its own settings first.
    """

    def __init__(self, address: str, workers: int) -> None:
        # typed as Any: distributed has no complete annotations
        dask: Any = importlib.import_module("dask")
        dist: Any = importlib.import_module("distributed")

        self._cluster: Any = None
        if address == "dask-local":
            settings = {
                "distributed.scheduler.allowed-failures": 0,
                "distributed.scheduler.worker-saturation": 1.0,
            }
            with dask.config.set(settings):
                self._cluster = dist.LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
                self._client = dist.Client(self._cluster)
            self.slots = workers
        else:
            self._client = dist.Client(address, timeout="20s")
            self.slots = max(1, sum(self._client.nthreads().values()))
        self._inflight = 0

    def capacity(self) -> int:
        return self.slots - self._inflight

    def submit(self, fn: Callable[[Cell], dict[str, Any]], cell: Cell) -> Any:
        self._inflight += 1
        return self._client.submit(fn, cell, pure=False)

    def wait(self, handles: Iterable[Any]) -> list[tuple[Any, dict[str, Any] | _Failure]]:
        dist: Any = importlib.import_module("distributed")
        done, _ = dist.wait(list(handles), return_when="FIRST_COMPLETED")
        out: list[tuple[Any, dict[str, Any] | _Failure]] = []
        for fut in done:
            self._inflight -= 1
            try:
                if fut.status == "finished":
                    out.append((fut, fut.result()))  # fetched now: a later death cannot lose it
                    fut.release()
                    continue
                exc = fut.exception()
            except Exception as lost:  # the result was lost with its worker, or cancelled
                exc = lost
            name = type(exc).__name__
            message = "worker process died" if name == "KilledWorker" else _one_line(exc)
            out.append((fut, _Failure(message)))
            fut.release()
        return out

    def close(self, *, abort: bool = False) -> None:
        self._client.close()  # cancels whatever is still queued or running
        if self._cluster is not None:
            self._cluster.close()


def check_executor(spec: str) -> str:
    """``local``, ``dask-local`` or ``tcp://HOST:PORT``; raises ValueError otherwise."""
    if spec in ("local", "dask-local"):
        return spec
    if spec.startswith(("tcp://", "tls://")):
        host, _, port = spec.split("://", 1)[1].rpartition(":")
        if host and port.isdigit() and 0 < int(port) < 65536:
            return spec
    raise ValueError(f"expected local, dask-local or tcp://HOST:PORT, got {spec!r}")


def _executor(kind: str, workers: int) -> Any:
    if kind == "local":
        return _LocalExecutor(workers)
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise RuntimeError(f"--executor {kind} needs Dask distributed: pip install 'edgesim[dask]'") from None
    return _DaskExecutor(kind, workers)


# --------------------------------------------------------------------------
# Output files
# --------------------------------------------------------------------------


class Outputs:
    """The sweep's result files (CSV and/or JSON): read for resuming, rewritten
    atomically after every finished run.

    Raises:
        SweepError: an existing file that is not a sweep's result file.
    """

    def __init__(self, csv_path: str | Path | None = None, json_path: str | Path | None = None) -> None:
        self.csv = Path(csv_path) if csv_path is not None else None
        self.json = Path(json_path) if json_path is not None else None

    def existing(self) -> dict[str, dict[str, Any]]:
        """Rows already in the files, by run_id (JSON first: it keeps the types)."""
        rows: dict[str, dict[str, Any]] = {}
        for path in (self.json, self.csv):
            # reading a FIFO would never end; a folder or device is no result file either
            if path is not None and path.exists() and not path.is_file():
                problem = "is not a regular file (results are written as files); choose another output"
                raise SweepError([TopologyProblem(str(path), 0, "", problem)])
        if self.json is not None and _has_content(self.json):
            try:
                doc = json.loads(self.json.read_text(encoding="utf-8"))
                items = doc["rows"]
                assert isinstance(items, list)
                for r in items:
                    rows[str(r["run_id"])] = dict(r)
            except (ValueError, KeyError, TypeError, AssertionError, OSError):
                raise SweepError(
                    [
                        TopologyProblem(
                            str(self.json),
                            0,
                            "",
                            "exists and is not a sweep result file (JSON "
                            "with rows); choose another output or delete it",
                        )
                    ]
                ) from None
        if self.csv is not None and _has_content(self.csv):
            try:
                with self.csv.open(newline="", encoding="utf-8") as f:
                    reader = csv.DictReader(f)
                    if reader.fieldnames is None or "run_id" not in reader.fieldnames:
                        raise ValueError("no run_id column")
                    for r in reader:
                        rows.setdefault(r["run_id"], {k: _from_csv(v) for k, v in r.items()})
            except (ValueError, OSError, csv.Error):
                raise SweepError(
                    [
                        TopologyProblem(
                            str(self.csv),
                            0,
                            "",
                            "exists and is not a sweep result file (CSV "
                            "with a run_id column); choose another output or delete it",
                        )
                    ]
                ) from None
        return rows

    def write(self, rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> None:
        if self.json is not None:
            write_atomic(self.json, json.dumps({"sweep": meta, "rows": list(rows)}, indent=1) + "\n")
        if self.csv is not None:
            # a sweep's own columns first: a file of no rows yet still has its header (a
            # run_id column), so that a sweep stopped before its first row resumes
            columns: list[str] = [*ID_COLUMNS, *meta.get("parameters", ())]
            for r in rows:
                columns.extend(k for k in r if k not in columns)
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
            w.writeheader()
            for r in rows:
                w.writerow({k: _to_csv(v) for k, v in r.items()})
            write_atomic(self.csv, buf.getvalue())


def _has_content(path: Path) -> bool:
    """Whether ``path`` exists and is not empty: an empty file (``--csv "$(mktemp)"``)
    holds no rows, it is no other program's file."""
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def _to_csv(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict | list):
        return json.dumps(v, sort_keys=True, default=str)
    return str(v)


def _from_csv(v: str | None) -> Any:
    """A CSV cell back as a number where it reads as one (else the text; "" is None)."""
    if v is None or v == "":
        return None
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


# --------------------------------------------------------------------------
# The sweep
# --------------------------------------------------------------------------


def _param_value(v: Any) -> Any:
    """A parameter value as a row holds it: scalars as they are, tables and arrays
    as compact JSON text (one CSV cell)."""
    if isinstance(v, dict | list):
        return json.dumps(v, sort_keys=True, default=str)
    if isinstance(v, str | int | float | bool):
        return v
    return str(v)


def _row(run: Run, status: str, attempts: int, error: str | None, found: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "run_id": run.run_id,
        "status": status,
        "attempts": attempts,
        "error": error,
        "seed": run.seed,
    }
    for name, v in run.params:
        row[name] = _param_value(v)
    row.update(found)
    return row


def run_sweep(
    spec: SweepSpec,
    *,
    executor: str = "local",
    workers: int | None = None,
    outputs: Outputs | None = None,
    runner: Callable[[Cell], dict[str, Any]] = run_cell,
    on_row: Callable[[dict[str, Any], int, int], None] | None = None,
) -> SweepResult:
    """Run every run of ``spec`` not already ``ok`` in ``outputs``.

    Args:
        spec: the spec (:func:`load_spec`).
        executor: ``local`` (process pool), ``dask-local`` or ``tcp://HOST:PORT``.
        workers: processes (local, dask-local); default: the machine's CPU count.
        outputs: result files, read to resume and rewritten after every run.
        runner: the worker's function (default :func:`run_cell`); it must be importable
            by the workers.
        on_row: called as ``on_row(row, done, total)`` after each finished run.

    Returns:
        The :class:`SweepResult`; failed runs have ``status`` ``failed`` and ``error``.

    Error handling:
        Raises :class:`SweepError` for a bad cell or foreign output files before
        anything runs, ``RuntimeError`` for an executor that cannot start. SIGTERM and
        SIGHUP raise KeyboardInterrupt as Ctrl-C does (in the main thread); the runs
        still going are ended, and the files hold every row finished so far.
    """
    from edgesim._signals import interrupted_by_stop_signals

    with interrupted_by_stop_signals():
        return _run_sweep(spec, executor, workers, outputs, runner, on_row)


def _run_sweep(
    spec: SweepSpec,
    executor: str,
    workers: int | None,
    outputs: Outputs | None,
    runner: Callable[[Cell], dict[str, Any]],
    on_row: Callable[[dict[str, Any], int, int], None] | None,
) -> SweepResult:
    runs = plan(spec)
    outputs = outputs or Outputs()
    existing = outputs.existing()
    planned = {r.run_id for r in runs}
    rows: dict[int, dict[str, Any]] = {}
    todo: deque[Run] = deque()
    for r in runs:
        old = existing.get(r.run_id)
        if old is not None and old.get("status") == "ok":
            rows[r.index] = old
        else:
            todo.append(r)
    foreign = [row for rid, row in existing.items() if rid not in planned]
    result = SweepResult([], kept=len(rows), foreign=len(foreign), params=tuple(q.name for q in spec.grid))
    meta = {
        "spec": str(spec.path),
        "topology": str(spec.topology),
        "topology_sha256": hashlib.sha256(spec.topology_text.encode()).hexdigest(),
        "parameters": [q.name for q in spec.grid],
        "set": {q.name: _param_value(q.values[0]) for q in spec.fixed},
        "seeds": list(spec.seeds),
        "runs": len(runs),
        "edgesim_version": __version__,
    }

    def ordered() -> list[dict[str, Any]]:
        return [rows[i] for i in sorted(rows)] + foreign

    total = len(runs)
    # written before anything runs: the files describe this spec (its parameters, seeds
    # and run count), its rows come in its plan order even when none is left to run,
    # and a file that cannot be written fails now rather than after the first run
    outputs.write(ordered(), meta)
    if not todo:
        result.rows = ordered()
        return result
    n = workers or os.cpu_count() or 1
    ex = _executor(check_executor(executor), min(n, len(todo)))
    attempts: dict[int, int] = {}
    inflight: dict[Any, Run] = {}
    finished = False
    try:
        while todo or inflight:
            while todo and ex.capacity() > 0:
                r = todo.popleft()
                attempts[r.index] = attempts.get(r.index, 0) + 1
                inflight[ex.submit(runner, r.cell)] = r
            for handle, outcome in ex.wait(list(inflight)):
                r = inflight.pop(handle)
                tries = attempts[r.index]
                if isinstance(outcome, _Failure):
                    if tries < ATTEMPTS:
                        log.warning(
                            "run %s (seed %s) failed, retrying: %s", r.run_id, r.seed, outcome.message
                        )
                        todo.appendleft(r)
                        continue
                    row = _row(r, "failed", tries, outcome.message, {})
                    result.failed += 1
                else:
                    row = _row(r, "ok", tries, None, outcome)
                result.ran += 1
                rows[r.index] = row
                outputs.write(ordered(), meta)
                if on_row is not None:
                    on_row(row, len(rows), total)
        finished = True
    finally:
        ex.close(abort=not finished)
    result.rows = ordered()
    return result
