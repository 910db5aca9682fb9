"""Loading topology files: TOML text -> a validated, frozen :class:`Topology`.

Theory of operation: ``tomllib`` parses the text; a small scanner (``_lines``) walks the
same text to find the line of every key path, since tomllib keeps no positions. Then a
``_Checker`` reads the data table by table. Every problem is recorded with its key path
and line, and a default is put in place of the bad value so that the later checks still
run; references between tables (region and site names, node indexes) are checked once
every table is read. If anything was recorded, one :class:`TopologyError` carries all of
it; otherwise the typed objects are returned.

Rules of this module: it never raises anything but ``TopologyError`` for a bad file
(and ``OSError`` is turned into one too); it reads only the topology file and checks that
the files it names exist (rule files are compiled by the engine, not here). The schema is
documented in docs/topology.md; keep the two in step.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import math
import re
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from edgesim._atomic import is_special
from edgesim._toml import load_toml
from edgesim._units import MAX_SIZE, parse_duration, parse_rate, parse_size
from edgesim.errors import EdgesimError, TopologyError, TopologyProblem
from edgesim.topology import (
    Catalog,
    CostModel,
    Deploy,
    Distribution,
    EdgeGroup,
    Faults,
    FlashCrowd,
    HardwareProfile,
    Latency,
    LatencySpike,
    NodeCrash,
    Origin,
    OriginOutage,
    Region,
    ShadowSpec,
    Shield,
    Site,
    Topology,
    Traffic,
)
from edgesim.traces import format_by_name
from origin._config import MIN_PARETO_ALPHA

__all__ = ["DIURNAL_PROFILES", "bundled_dir", "load_topology", "parse_topology", "resolve_topology_arg"]

T = TypeVar("T")

# Shares (regions, sites, country and language mixes) must sum to 1 within this much:
# enough slack for decimal fractions such as 0.1 + 0.2 + 0.7, none for real mistakes.
SHARE_TOLERANCE = 1e-6
# Synthetic catalogs larger than this are typos (same bound as the origin's).
MAX_OBJECTS = 10_000_000
MAX_PEAK_RPS = 1e9  # beyond it a run would never end
MAX_WORKERS = 1_000_000  # concurrent requests of one node (utilisation divides by it)
MAX_BUCKETS = 1_000_000  # time-series buckets (traffic.duration / interval)
MAX_SECONDS = 1e9  # any duration (~32 years): more overflows the clocks and dates
MAX_MULTIPLIER = 1e6  # a flash crowd's: more is a run that never ends
# The least egress a node may have, in bytes/s (1 Mbps), other than 0 (unlimited): a
# real edge node has 100 Mbps or more; below 1 Mbps a value is a slip of the units
# ("bps" for "Gbps") whose transfer times run into hours.
MIN_EGRESS = 125_000.0
# Object kinds of synthetic catalogs (docs/origin.md, synthetic sites).
KINDS = ("html", "js", "css", "img", "font", "json")
# Names that mean something else on the right of a latency spike's ``A->B`` link.
RESERVED_REGION_NAMES = ("origin", "client", "shield")

# Diurnal curves by name: 24 hourly factors of local time, 1 = the peak. "web" is a
# typical consumer-web day: trough around 04:00, a plateau over working hours and the
# peak in the evening (20:00-21:00).
DIURNAL_PROFILES: dict[str, tuple[float, ...]] = {
    "flat": (1.0,) * 24,
    "web": (
        0.45, 0.35, 0.28, 0.24, 0.22, 0.25, 0.33, 0.45, 0.58, 0.68, 0.74, 0.78,
        0.80, 0.80, 0.79, 0.80, 0.83, 0.87, 0.92, 0.97, 1.00, 0.98, 0.85, 0.64,
    ),
}  # fmt: skip

TOP_KEYS = (
    "name",
    "seed",
    "interval",
    "profiles",
    "regions",
    "network",
    "origin",
    "shield",
    "sites",
    "traffic",
    "faults",
    "shadow",
)
REGION_KEYS = (
    "name",
    "utc_offset",
    "client_share",
    "countries",
    "languages",
    "client_latency",
    "origin_latency",
    "edge",
)
PROFILE_KEYS = (
    "workers",
    "memory_cache",
    "disk_cache",
    "eviction",
    "max_object",
    "egress",
    "service_time",
    "cost_per_hour",
    "calibration",
)
EDGE_KEYS = ("nodes", "profile", *PROFILE_KEYS, "balancer", "cost_per_gb_egress")
NETWORK_KEYS = ("region_latency",)
ORIGIN_KEYS = ("region", "workers", "max_queue", "service_time", "cost_per_request")
SHIELD_KEYS = (
    "region",
    "nodes",
    "workers",
    "memory_cache",
    "disk_cache",
    "service_time",
    "latency_to_origin",
    "cost_per_hour",
)
SITE_KEYS = ("name", "share", "directory", "rules", "catalog", "redirect_share", "cache")
CATALOG_KEYS = ("objects", "zipf", "size", "sizes", "types", "seed")
CACHE_CLASSES = ("hashed", "html", "default", "not_found", "redirect")
TRAFFIC_KEYS = (
    "duration",
    "peak_rps",
    "warmup",
    "start_hour_utc",
    "diurnal",
    "flash_crowds",
    "deploys",
    "trace",
    "trace_format",
)
FLASH_KEYS = ("site", "start", "duration", "multiplier", "region")
DEPLOY_KEYS = ("site", "at", "new_fraction", "propagation")
FAULT_KEYS = ("health_check_delay", "client_timeout", "crashes", "origin_outages", "latency_spikes")
CRASH_KEYS = ("region", "node", "at", "down_for")
OUTAGE_KEYS = ("at", "duration", "mode")
OUTAGE_MODES = ("stop", "stall")
SPIKE_KEYS = ("link", "at", "duration", "extra")
SHADOW_KEYS = ("candidate", "rollout", "timeout", "samples", "regions", "rules", "origin")

EVICTIONS = ("lru", "fifo")
BALANCERS = ("random", "least-connections", "consistent-hash")
TRACE_FORMATS = ("csv", "oracle-general")
# Distribution kinds and their parameters, as in _edgesim.toml (docs/origin.md).
DIST_PARAMS: dict[str, tuple[str, ...]] = {
    "fixed": ("value",),
    "lognormal": ("median", "sigma"),
    "exponential": ("mean",),
    "pareto": ("alpha", "min"),
    "uniform": ("min", "max"),
}

_REGION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_HOST = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?")
_COUNTRY = re.compile(r"[A-Za-z]{2}")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*")
_OFFSET = re.compile(r"(?:UTC)?([+-])(\d{1,2})(?::?([0-5]\d))?", re.ASCII)  # minutes 00-59
_DURATION_HINT = "a duration such as 200ms, 1.5s, 30m or 2h (a number is seconds)"


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


def load_topology(path: str | Path) -> Topology:
    """Read and validate a topology file, or a bundled topology by name (``"demo"``,
    when no file of that name exists; see :func:`resolve_topology_arg`).

    Relative paths inside it (rule files, site directories, traces) are relative to the
    file's folder.

    Raises:
        TopologyError: the file cannot be read or has problems; ``problems`` lists
            every one of them.
    """
    p = resolve_topology_arg(str(path))
    if is_special(p):
        raise TopologyError([TopologyProblem(str(path), 0, "", "not a regular file (a FIFO or device)")])
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TopologyError([TopologyProblem(str(path), 0, "", f"not UTF-8 text ({exc.reason})")]) from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if isinstance(exc, FileNotFoundError) and len(p.parts) == 1 and bundled_names():
            # a bare name: perhaps a mistyped bundled topology
            reason += f" (nor a bundled topology: {', '.join(bundled_names())})"
        raise TopologyError([TopologyProblem(str(path), 0, "", f"cannot read: {reason}")]) from None
    return parse_topology(text, path=p)


def parse_topology(
    text: str,
    *,
    path: str | Path | None = None,
    patch: Callable[[dict[str, Any]], None] | None = None,
) -> Topology:
    """Validate topology ``text``.

    Args:
        text: the TOML text.
        path: where it came from: names the file in problems, gives the default
            ``name`` and the folder relative paths start from (else the current one).
        patch: called with the parsed TOML data before it is checked, to change values
            in place (``edgesim sweep`` sets its grid parameters this way, so a bad
            value is reported with its key path like any other).

    Raises:
        TopologyError: with every problem found.
    """
    p = Path(path) if path is not None else None
    file = str(path) if path is not None else "<topology>"
    try:
        data = load_toml(text)
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError([_syntax_problem(file, text, exc)]) from None
    if patch is not None:
        patch(data)
    # (load_toml reads past a byte-order mark: so does the line scanner)
    checker = _Checker(file, _lines(text.removeprefix("\ufeff")), p.parent if p is not None else Path.cwd())
    topology = checker.topology(data, p, text)
    if checker.problems:
        # In file order, like a compiler's; problems without a line come first.
        raise TopologyError(sorted(_one_per_slip(checker.problems), key=lambda p: p.line))
    return topology


_SUGGESTION = re.compile(r'unknown key \(did you mean "(.+)"\?\)')


def _one_per_slip(problems: list[TopologyProblem]) -> list[TopologyProblem]:
    """Without the "missing" of a key that an unknown key's suggestion names: one
    misspelling (``[[region]]``, ``candidat``) is one line, not two."""
    named = set()
    for p in problems:
        m = _SUGGESTION.fullmatch(p.message)
        if m is not None:
            parent = p.key_path.rsplit(".", 1)[0] if "." in p.key_path else ""
            named.add(_join(parent, m.group(1)))
    return [p for p in problems if not (p.key_path in named and p.message.startswith("missing"))]


def bundled_dir() -> Path | None:
    """The folder of the bundled topologies, or None.

    An installed wheel carries them as ``edgesim/_topologies``; a source checkout (also
    an editable install) has them at the top of the repository, beside ``edgesim/``.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here / "_topologies", here.parent / "topologies"):
        if (candidate / "demo.toml").is_file():
            return candidate
    return None


def _listed(names: Sequence[str]) -> str:
    """``names`` for a message, without the missing or bad ones (reported on their own)."""
    return ", ".join(n for n in names if _REGION_NAME.fullmatch(n) and n not in RESERVED_REGION_NAMES)


def resolve_topology_arg(arg: str) -> Path:
    """The file meant by a command-line argument: an existing path, else a bundled
    topology by name (``demo`` or ``demo.toml``), else the argument as a path (whose
    loading then reports that it is missing)."""
    p = Path(arg)
    if exists(p) or "/" in arg or "\\" in arg:
        return p
    bundled = bundled_dir()
    if bundled is not None:
        name = arg if arg.endswith(".toml") else arg + ".toml"
        if exists(bundled / name) and (bundled / name).is_file():
            return bundled / name
    return p


def exists(p: Path) -> bool:
    """``p.exists()``, False for a name the system refuses (too long, say): reading
    the file then tells the user what is wrong with it."""
    try:
        return p.exists()
    except OSError:
        return False


def bundled_names() -> list[str]:
    """Names of the bundled topologies (``demo``, ...), sorted."""
    d = bundled_dir()
    return sorted(f.stem for f in d.glob("*.toml")) if d is not None else []


# --------------------------------------------------------------------------
# Key paths and their lines
# --------------------------------------------------------------------------

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_PATH_PART = re.compile(r'"(?:[^"\\]|\\.)*"|[A-Za-z0-9_-]+|\[\d+\]')


def _join(path: str, key: str) -> str:
    part = key if _BARE.fullmatch(key) else json.dumps(key, ensure_ascii=False)
    return f"{path}.{part}" if path else part


def _index(path: str, i: int) -> str:
    return f"{path}[{i}]"


def _prefixes(path: str) -> list[str]:
    """``a.b[1].c`` -> [``a.b[1].c``, ``a.b[1]``, ``a.b``, ``a``]."""
    parts = _PATH_PART.findall(path)
    out = []
    acc = ""
    for part in parts:
        acc = acc + part if part.startswith("[") else (f"{acc}.{part}" if acc else part)
        out.append(acc)
    return out[::-1]


def _syntax_problem(file: str, text: str, exc: tomllib.TOMLDecodeError) -> TopologyProblem:
    msg = str(exc)
    m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", msg)
    if m is not None:
        return TopologyProblem(
            file, int(m.group(1)), "", f"invalid TOML: {msg[: m.start()]}", int(m.group(2))
        )
    m = re.search(r"\s*\(at end of document\)$", msg)
    if m is not None:
        last = len(text.rstrip("\n").split("\n"))
        return TopologyProblem(file, last, "", f"invalid TOML: {msg[: m.start()]} at the end of the file")
    return TopologyProblem(file, 0, "", f"invalid TOML: {msg}")


def _lines(text: str) -> dict[str, int]:
    """Key path -> 1-based line where it is defined (table headers included).

    ``text`` must be valid TOML (tomllib accepted it); should the scanner still trip,
    the lines found so far are returned: line numbers are a help, key paths the rule.
    """
    scanner = _Scanner(text)
    with contextlib.suppress(IndexError, ValueError):  # tomllib accepted it: not expected
        scanner.document()
    return scanner.lines


class _Scanner:
    """Just enough of a TOML reader to know which line each key path is on."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.line = 1
        self.lines: dict[str, int] = {}
        self.arrays: dict[str, int] = {}  # array-of-tables path -> elements so far

    def _to(self, j: int) -> None:
        self.line += self.s.count("\n", self.i, j)
        self.i = j

    def _space(self, newlines: bool) -> None:
        s = self.s
        while self.i < len(s):
            c = s[self.i]
            if c in " \t\r" or (newlines and c == "\n"):
                self._to(self.i + 1)
            elif c == "#":
                j = s.find("\n", self.i)
                self._to(len(s) if j < 0 else j)
            else:
                break

    def document(self) -> None:
        table = ""
        while True:
            self._space(newlines=True)
            if self.i >= len(self.s):
                return
            line = self.line
            if self.s[self.i] == "[":
                many = self.s.startswith("[[", self.i)
                self._to(self.i + (2 if many else 1))
                keys = self._keys()
                self._space(newlines=False)
                self._to(self.i + (2 if many else 1))
                table = self._header(keys, many, line)
            else:
                self._pair(table, line)

    def _header(self, keys: list[str], many: bool, line: int) -> str:
        path = ""
        for n, key in enumerate(keys):
            path = _join(path, key)
            self.lines.setdefault(path, line)
            if many and n == len(keys) - 1:
                count = self.arrays.get(path, 0)
                self.arrays[path] = count + 1
                path = _index(path, count)
            elif path in self.arrays:
                path = _index(path, self.arrays[path] - 1)
            self.lines.setdefault(path, line)
        return path

    def _pair(self, table: str, line: int) -> None:
        keys = self._keys()
        self._space(newlines=False)
        self._to(self.i + 1)  # "="
        path = table
        for key in keys:
            path = _join(path, key)
            self.lines.setdefault(path, line)
        self._value(path)

    def _keys(self) -> list[str]:
        keys = []
        while True:
            self._space(newlines=False)
            s, i = self.s, self.i
            if s[i] in "\"'":
                j = self._string_end(i)
                raw = s[i:j]
                keys.append(tomllib.loads(f"k = {raw}")["k"])
                self._to(j)
            else:
                m = _BARE.match(s, i)
                if m is None:
                    raise ValueError("key expected")
                keys.append(m.group())
                self._to(m.end())
            self._space(newlines=False)
            if self.i < len(s) and s[self.i] == ".":
                self._to(self.i + 1)
                continue
            return keys

    def _string_end(self, i: int) -> int:
        """Index just past the string starting at ``i``."""
        s = self.s
        q = s[i]
        if s.startswith(q * 3, i):
            j = i + 3
            while True:
                if q == '"' and s[j] == "\\":
                    j += 2
                elif s.startswith(q * 3, j):
                    j += 3
                    while j < len(s) and s[j] == q:  # up to two quotes of content
                        j += 1
                    return j
                else:
                    j += 1
        j = i + 1
        while s[j] != q:
            j += 2 if q == '"' and s[j] == "\\" else 1
        return j + 1

    def _value(self, path: str) -> None:
        self._space(newlines=False)
        s = self.s
        c = s[self.i]
        if c in "\"'":
            self._to(self._string_end(self.i))
        elif c == "[":
            self._to(self.i + 1)
            n = 0
            while True:
                self._space(newlines=True)
                if s[self.i] == "]":
                    self._to(self.i + 1)
                    return
                if s[self.i] == ",":
                    self._to(self.i + 1)
                    continue
                self.lines.setdefault(_index(path, n), self.line)
                self._value(_index(path, n))
                n += 1
        elif c == "{":
            self._to(self.i + 1)
            while True:
                self._space(newlines=True)
                if s[self.i] == "}":
                    self._to(self.i + 1)
                    return
                if s[self.i] == ",":
                    self._to(self.i + 1)
                    continue
                self._pair(path, self.line)
        else:
            j = self.i
            while j < len(s) and s[j] not in ",]}\n#":
                j += 1
            self._to(j)


# --------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------


class _Expected(Exception):
    """A value is not what was expected: ``what`` completes "expected ..."."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def _show(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, int) and not -(10**40) < v < 10**40:  # not hundreds of digits on a line
        return f"a {'negative ' if v < 0 else ''}number of {len(str(abs(v)))} digits"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, dict):
        return "a table"
    if isinstance(v, list):
        shown = json.dumps(v, ensure_ascii=False, default=str)
        return shown if len(shown) <= 40 else f"an array of {len(v)} items"
    return str(v)


def _is_number(v: Any) -> bool:
    """A finite int or float that converts to a float (``math.isfinite`` and ``float``
    raise OverflowError for an int beyond the floats, such as ``1`` and 400 zeros)."""
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return -sys.float_info.max <= v <= sys.float_info.max
    return isinstance(v, float) and math.isfinite(v)


def _whole(lo: int, hi: int | None = None) -> Callable[[Any], int]:
    what = f"a whole number >= {lo}" if hi is None else f"a whole number from {lo} to {hi}"

    def conv(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
            raise _Expected(what)
        return v

    return conv


def _number(
    lo: float | None = None, hi: float | None = None, *, above: bool = False
) -> Callable[[Any], float]:
    if lo is not None and hi is not None:
        what = f"a number from {lo:g} to {hi:g}"
    elif lo is not None:
        what = f"a number {'>' if above else '>='} {lo:g}"
    else:
        what = "a number"

    def conv(v: Any) -> float:
        if not _is_number(v):
            raise _Expected(what)
        if lo is not None and (v <= lo if above else v < lo):
            raise _Expected(what)
        if hi is not None and v > hi:
            raise _Expected(what)
        return float(v)

    return conv


def _hour_of_day(v: Any) -> float:
    """An hour of the day: 0 <= h < 24."""
    if not _is_number(v) or not 0 <= v < 24:
        raise _Expected("a number from 0 up to (not including) 24")
    return float(v)


def _number_upto(lo: float, hi: float) -> Callable[[Any], float]:
    """A number > lo and <= hi."""

    def conv(v: Any) -> float:
        if not _is_number(v) or not v > lo:
            raise _Expected(f"a number > {lo:g}")
        if v > hi:
            raise _Expected(f"a number > {lo:g} and at most {hi:g}")
        return float(v)

    return conv


def _unit(
    parse: Callable[[str], float],
    cast: Callable[[float], Any],
    what: str,
    positive: bool,
    most: float = math.inf,
) -> Any:
    """A converter for a quantity written with units (a string) or as a plain number,
    at most ``most``."""

    def conv(v: Any) -> Any:
        if isinstance(v, str):
            try:
                x = cast(parse(v))
            except ValueError:
                raise _Expected(what) from None
        elif _is_number(v):
            if cast is int and not float(v).is_integer():  # 0.5 bytes was 0: no memory tier
                raise _Expected(f"{what}; a number of bytes is whole")
            x = cast(v)
        else:
            raise _Expected(what)
        if x < 0 or (positive and x == 0):
            raise _Expected(what)
        if x > most:
            raise _Expected(
                f"{what}, at most {most:g}s" if cast is float else f"{what}, at most {most:,} bytes"
            )
        return x

    return conv


def _duration(*, positive: bool = False) -> Callable[[Any], float]:
    what = f"a duration {'> 0' if positive else '>= 0'} such as 200ms, 1.5s, 30m or 2h (a number is seconds)"
    return _unit(parse_duration, float, what, positive, MAX_SECONDS)  # type: ignore[no-any-return]


def _size(*, positive: bool = False) -> Callable[[Any], int]:
    what = f"a size {'> 0' if positive else '>= 0'} such as 512MB or 1GiB (a number is bytes)"
    return _unit(parse_size, int, what, positive, MAX_SIZE)  # type: ignore[no-any-return]


def _rate(v: Any) -> float:
    what = "a rate >= 0 such as 1Gbps or 100MB/s (a number is bytes/s)"
    if isinstance(v, str):
        try:
            return parse_rate(v)
        except ValueError:
            raise _Expected(what) from None
    if not _is_number(v) or v < 0:
        raise _Expected(what)
    return float(v)


def _egress(v: Any) -> float:
    """A node's egress: 0 (unlimited) or at least :data:`MIN_EGRESS`."""
    x = _rate(v)
    if 0 < x < MIN_EGRESS:
        raise _Expected(
            f"0 (unlimited) or a rate of at least 1Mbps ({MIN_EGRESS:,.0f} bytes/s) such as 1Gbps or 100MB/s"
        )
    return x


def _choice(options: Sequence[str]) -> Callable[[Any], str]:
    def conv(v: Any) -> str:
        if v in options:
            return str(v)
        close: list[str] = []
        if isinstance(v, str):
            same = [o for o in options if o.lower() == v.lower()]  # "LRU": no close match
            close = same or difflib.get_close_matches(v, options, n=1)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        raise _Expected("one of " + ", ".join(f'"{o}"' for o in options) + hint)

    return conv


def _text(v: Any) -> str:
    if not isinstance(v, str) or not v.strip() or any(c in v for c in "\r\n\0"):
        raise _Expected("a non-empty one-line string")
    return v


def _utc_offset(v: Any) -> float:
    what = 'hours from UTC from -12 to 14, as a number or a string such as "+05:30"'
    if _is_number(v):
        x = float(v)
    elif isinstance(v, str) and (m := _OFFSET.fullmatch(v.strip())):
        x = int(m.group(2)) + int(m.group(3) or 0) / 60
        if m.group(1) == "-":
            x = -x
    else:
        raise _Expected(what)
    if not -12 <= x <= 14:
        raise _Expected(what)
    return x


# --------------------------------------------------------------------------
# The checker
# --------------------------------------------------------------------------


class _Checker:
    """Reads the parsed data into typed objects, recording every problem."""

    def __init__(self, file: str, lines: dict[str, int], base: Path) -> None:
        self.file = file
        self.lines = lines
        self.base = base
        self.problems: list[TopologyProblem] = []
        self.cost_files: dict[Path, dict[str, CostModel] | None] = {}
        self.cost_file_keys: dict[Path, str] = {}  # the key that read each cost file first
        self.empty_folders: list[tuple[str, Path]] = []  # site folders with nothing to serve
        self.files: list[tuple[str, Path]] = []  # (key path, path) of each file or folder named

    # -- reporting --------------------------------------------------------

    def bad(self, path: str, message: str) -> None:
        line = next((self.lines[p] for p in _prefixes(path) if p in self.lines), 0)
        self.problems.append(TopologyProblem(self.file, line, path, message))

    def table(self, value: Any, path: str, known: Sequence[str]) -> dict[str, Any]:
        """``value`` as a table whose keys are all in ``known`` (others are reported)."""
        if not isinstance(value, dict):
            self.bad(path, f"expected a table, got {_show(value)}")
            return {}
        for key in value:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                hint = f'did you mean "{close[0]}"?' if close else "expected one of: " + ", ".join(known)
                self.bad(_join(path, key), f"unknown key ({hint})")
        return value

    def tables(self, value: Any, path: str, known: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
        """An array of tables (``[[path]]``) as (element path, table) pairs."""
        if not isinstance(value, list):
            self.bad(path, f"expected an array of tables ([[{path}]]), got {_show(value)}")
            return []
        out = []
        for i, t in enumerate(value):
            if not isinstance(t, dict):  # reported; its keys would each be "missing" too
                self.bad(_index(path, i), f"expected a table, got {_show(t)}")
                continue
            out.append((_index(path, i), self.table(t, _index(path, i), known)))
        return out

    def get(
        self,
        tbl: Mapping[str, Any],
        key: str,
        where: str,
        default: T,
        conv: Callable[[Any], T],
        *,
        required: str = "",
    ) -> T:
        """``tbl[key]`` converted, or ``default`` when it is missing or bad (and then
        reported if bad, or missing while ``required`` says what it should be)."""
        path = _join(where, key)
        if key not in tbl:
            if required:
                self.bad(path, f"missing ({required})")
            return default
        try:
            return conv(tbl[key])
        except _Expected as exc:
            self.bad(path, f"expected {exc.what}, got {_show(tbl[key])}")
            return default

    def path(self, tbl: Mapping[str, Any], key: str, where: str, *, directory: bool) -> Path | None:
        """A file or folder named relative to the topology's folder, which must exist."""
        if key not in tbl:
            return None
        return self.path_value(tbl[key], _join(where, key), directory=directory)

    def path_value(self, v: Any, path: str, *, directory: bool) -> Path | None:
        kind = "a folder" if directory else "a file"
        if not isinstance(v, str) or not v.strip():
            self.bad(path, f"expected the path of {kind}, got {_show(v)}")
            return None
        if "\x00" in v:
            self.bad(path, f"expected the path of {kind}, got a string with a NUL character")
            return None
        try:
            p = (self.base / v).resolve()
            exists = p.exists()
            is_dir = p.is_dir()
            special = exists and not is_dir and not p.is_file()
        except (OSError, RuntimeError) as exc:  # a name too long, a loop of links
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.bad(path, f"expected the path of {kind}, got {_show(v)}: {reason}")
            return None
        if not exists:
            self.bad(path, f"{v} does not exist (paths are relative to {self.base})")
            return None
        if special:  # reading one may never end (a FIFO) or never stop (/dev/zero)
            self.bad(path, f"expected {kind}, but {v} is not a regular file (a FIFO or device)")
            return None
        if is_dir != directory:
            self.bad(path, f"expected {kind}, but {v} is {'a folder' if is_dir else 'a file'}")
            return None
        self.files.append((path, p))
        return p

    # -- shared shapes ----------------------------------------------------

    def dist(
        self, tbl: Mapping[str, Any], key: str, where: str, default: Distribution, unit: str
    ) -> Distribution:
        """A distribution: a plain value (fixed) or ``{distribution = KIND, params, max}``.

        ``unit`` is ``duration`` or ``size``: how value-like parameters are read.
        """
        if key not in tbl:
            return default
        path = _join(where, key)
        scalar: Callable[[Any], float]
        if unit == "duration":
            scalar = _duration()
        else:
            size = _size()

            def scalar(v: Any) -> float:
                return float(size(v))

        v = tbl[key]
        if not isinstance(v, dict):
            try:
                return Distribution("fixed", value=scalar(v))
            except _Expected as exc:
                self.bad(path, f"expected {exc.what}, or a distribution table, got {_show(v)}")
                return default
        before = len(self.problems)
        kind = self.get(v, "distribution", path, "fixed", _choice(tuple(DIST_PARAMS)))
        if len(self.problems) > before:  # an unknown kind: its parameters are not fixed's
            return default
        names = DIST_PARAMS[kind]
        self.table(v, path, ("distribution", *names, *(() if "max" in names else ("max",))))
        bad_before = len(self.problems)
        vals: dict[str, float] = {}
        for name in names:
            need = f"a {kind} distribution needs {', '.join(names)}"
            if name == "sigma":  # e^(20 x 8 standard deviations) is still a finite float
                vals[name] = self.get(v, name, path, 1.0, _number_upto(0.0, 20.0), required=need)
            elif name == "alpha":  # below MIN_PARETO_ALPHA a draw can overflow a float
                vals[name] = self.get(v, name, path, 1.0, _number(MIN_PARETO_ALPHA), required=need)
            else:
                vals[name] = self.get(v, name, path, 0.0, scalar, required=need)
                positive = name in ("median", "mean") or (kind == "pareto" and name == "min")
                if positive and name in v and vals[name] == 0 and len(self.problems) == bad_before:
                    self.bad(_join(path, name), f"expected a value > 0, got {_show(v[name])}")
        cap = self.get(v, "max", path, 0.0, scalar) if kind != "uniform" else 0.0
        if kind == "uniform" and vals["max"] < vals["min"] and len(self.problems) == bad_before:
            self.bad(_join(path, "max"), f"expected a value >= min, got {_show(v['max'])}")
        if len(self.problems) > bad_before:
            return default
        return Distribution(
            kind,
            value=vals.get("value", 0.0),
            median=vals.get("median", 0.0),
            sigma=vals.get("sigma", 0.0),
            mean=vals.get("mean", 0.0),
            alpha=vals.get("alpha", 0.0),
            minimum=vals.get("min", 0.0),
            maximum=vals.get("max", 0.0),
            cap=cap,
        )

    def latency(self, tbl: Mapping[str, Any], key: str, where: str, default: Latency) -> Latency:
        """A duration (no jitter) or ``{base = ..., jitter = ...}``."""
        if key not in tbl:
            return default
        path = _join(where, key)
        v = tbl[key]
        if not isinstance(v, dict):
            return Latency(self.get(tbl, key, where, default.base, _duration()), 0.0)
        t = self.table(v, path, ("base", "jitter"))
        base = self.get(t, "base", path, default.base, _duration(), required=_DURATION_HINT)
        jitter = self.get(t, "jitter", path, 0.0, _duration())
        if jitter > base:
            self.bad(
                _join(path, "jitter"), f"expected at most base ({base * 1000:g}ms), got {_show(t['jitter'])}"
            )
            jitter = 0.0
        return Latency(base, jitter)

    def mix(
        self,
        tbl: Mapping[str, Any],
        key: str,
        where: str,
        pattern: re.Pattern[str],
        what: str,
        *,
        share: bool,
    ) -> tuple[tuple[str, float], ...] | None:
        """A table of name -> weight; with ``share``, the weights must sum to 1."""
        if key not in tbl:
            return None
        path = _join(where, key)
        t = tbl[key]
        if not isinstance(t, dict):
            self.bad(path, f"expected a table of {what} -> {'share' if share else 'weight'}, got {_show(t)}")
            return None
        out = []
        for name in t:
            if not pattern.fullmatch(name):
                self.bad(_join(path, name), f"expected {what}, got {_show(name)}")
                continue
            out.append((name, self.get(t, name, path, 0.0, _number(0.0, 1.0 if share else None))))
        if share and out and len(out) == len(t):
            self.sums_to_one(path, [w for _, w in out], "the shares")
        return tuple(out)

    def sums_to_one(self, path: str, values: Sequence[float], what: str) -> None:
        total = math.fsum(values)
        if abs(total - 1.0) > SHARE_TOLERANCE:
            self.bad(path, f"expected {what} to sum to 1, got {total:.6g}")

    # -- the file ---------------------------------------------------------

    def topology(self, data: dict[str, Any], path: Path | None, text: str) -> Topology:
        self.table(data, "", TOP_KEYS)
        name = self.get(data, "name", "", path.stem if path is not None else "topology", _text)
        seed = self.get(data, "seed", "", 1, _whole(0))
        bad_before = len(self.problems)
        interval = self.get(data, "interval", "", 60.0, _duration(positive=True))
        interval_ok = len(self.problems) == bad_before
        profiles = self.profiles(data.get("profiles", {}))
        regions = self.regions(data, {p.name: p for p in profiles})
        names = [r.name for r in regions]
        region_latency = self.region_latency(data.get("network", {}), names)
        origin = self.origin(data.get("origin", {}), names)
        shield = self.shield(data["shield"], names) if "shield" in data else None
        sites = self.sites(data)
        traffic = self.traffic(data.get("traffic", {}), [s.name for s in sites], names)
        if traffic.trace is None:  # (a replayed trace requests its own keys)
            for where, folder in self.empty_folders:
                none = f"{folder} has none"
                self.bad(where, f"expected a folder with files to serve (the traffic requests them); {none}")
        faults = self.faults(data.get("faults", {}), regions, traffic.duration, shield is not None)
        shadow = self.shadow(data["shadow"], names, sites) if "shadow" in data else None
        if interval_ok and traffic.duration / interval > MAX_BUCKETS:
            shown = _show(data["interval"]) if "interval" in data else "60s (the default)"
            least = traffic.duration / MAX_BUCKETS
            self.bad(
                "interval", f"expected at least traffic.duration / {MAX_BUCKETS:,} ({least:g}s), got {shown}"
            )
            interval = traffic.duration / MAX_BUCKETS
        if interval > traffic.duration:
            if "interval" in data and interval_ok:
                shown = _show(data["interval"])
                self.bad(
                    "interval", f"expected at most traffic.duration ({traffic.duration:g}s), got {shown}"
                )
            interval = traffic.duration
        return Topology(
            name=name,
            path=path,
            seed=seed,
            interval=interval,
            regions=tuple(regions),
            region_latency=region_latency,
            origin=origin,
            shield=shield,
            sites=tuple(sites),
            traffic=traffic,
            faults=faults,
            source_text=text,
            profiles=tuple(profiles),
            shadow=shadow,
            files=tuple(self.files),
        )

    def profiles(self, value: Any) -> list[HardwareProfile]:
        out: list[HardwareProfile] = []
        if not isinstance(value, dict):
            self.bad("profiles", f"expected a table of [profiles.NAME] tables, got {_show(value)}")
            return out
        for name, t in value.items():
            where = _join("profiles", name)
            t = self.table(t, where, PROFILE_KEYS)
            d = HardwareProfile(name)
            service_time, costs = self.service(t, where, d.service_time, None, name)
            out.append(
                HardwareProfile(
                    name,
                    workers=self.get(t, "workers", where, d.workers, _whole(1, MAX_WORKERS)),
                    memory_cache=self.get(t, "memory_cache", where, d.memory_cache, _size()),
                    disk_cache=self.get(t, "disk_cache", where, d.disk_cache, _size()),
                    eviction=self.get(t, "eviction", where, d.eviction, _choice(EVICTIONS)),
                    max_object=self.get(t, "max_object", where, d.max_object, _size()),
                    egress=self.get(t, "egress", where, d.egress, _egress),
                    service_time=service_time,
                    cost_per_hour=self.get(t, "cost_per_hour", where, d.cost_per_hour, _number(0.0)),
                    costs=costs,
                )
            )
        return out

    def regions(self, data: Mapping[str, Any], profiles: dict[str, HardwareProfile]) -> list[Region]:
        if "regions" not in data:
            self.bad("regions", "missing (at least one [[regions]] table)")
            return []
        items = self.tables(data["regions"], "regions", REGION_KEYS)
        if not items and isinstance(data["regions"], list):
            self.bad("regions", "expected at least one [[regions]] table")
        out: list[Region] = []
        seen: set[str] = set()
        shares: list[tuple[str, Any]] = []
        for where, t in items:
            name = self.get(t, "name", where, "", _text, required="the region's name")
            if name and not _REGION_NAME.fullmatch(name):
                self.bad(_join(where, "name"), f"expected letters, digits, '-' and '_', got {_show(name)}")
            elif name in RESERVED_REGION_NAMES:
                self.bad(
                    _join(where, "name"), f"expected a name other than {', '.join(RESERVED_REGION_NAMES)}"
                )
            elif name in seen:
                self.bad(_join(where, "name"), f"expected a unique name, but {_show(name)} is used twice")
            seen.add(name)
            share = self.get(t, "client_share", where, None, _number(0.0, 1.0))
            shares.append((where, share if "client_share" in t else "missing"))
            d = Region(name)
            countries = self.mix(t, "countries", where, _COUNTRY, "a country code such as GB", share=True)
            countries = tuple((c.upper(), w) for c, w in countries or ())
            languages = self.mix(
                t, "languages", where, _LANGUAGE, "a language tag such as en or pt-BR", share=True
            )
            out.append(
                Region(
                    name,
                    utc_offset=self.get(t, "utc_offset", where, 0.0, _utc_offset),
                    client_share=share if share is not None else 0.0,
                    countries=countries or (),
                    languages=languages or (),
                    client_latency=self.latency(t, "client_latency", where, d.client_latency),
                    origin_latency=self.latency(t, "origin_latency", where, d.origin_latency),
                    edge=self.edge(t.get("edge", {}), _join(where, "edge"), profiles),
                )
            )
        filled = self.shares(shares, "regions", "client_share")
        if filled is not None:
            out = [replace(r, client_share=s) for r, s in zip(out, filled, strict=True)]
        return out

    def shares(self, shares: list[tuple[str, Any]], path: str, key: str) -> list[float] | None:
        """Shares of the elements of an array: all given (summing to 1) or none given
        (equal). Returns the shares to use, or None to keep what was read."""
        given = [s for _, s in shares if s != "missing"]
        if not shares:
            return None
        if not given:
            return [1.0 / len(shares)] * len(shares)
        if len(given) < len(shares):
            for where, s in shares:
                if s == "missing":
                    self.bad(_join(where, key), f"missing (give every element of {path} a {key}, or none)")
            return None
        if all(s is not None for s in given):
            self.sums_to_one(path, [float(s) for s in given], f"the {key} values")
        return None

    def edge(self, value: Any, where: str, profiles: dict[str, HardwareProfile]) -> EdgeGroup:
        t = self.table(value, where, EDGE_KEYS)
        pname = self.get(t, "profile", where, "", _text)
        if pname and pname not in profiles:
            known = ", ".join(profiles) or "none defined"
            self.bad(
                _join(where, "profile"), f"expected a profile from [profiles] ({known}), got {_show(pname)}"
            )
        profile = profiles.get(pname) or profiles.get("default") or HardwareProfile("")
        service_time, costs = self.service(
            t, where, profile.service_time, profile.costs, profile.name or "default"
        )
        return EdgeGroup(
            nodes=self.get(t, "nodes", where, 1, _whole(1, 10_000)),
            workers=self.get(t, "workers", where, profile.workers, _whole(1, MAX_WORKERS)),
            memory_cache=self.get(t, "memory_cache", where, profile.memory_cache, _size()),
            disk_cache=self.get(t, "disk_cache", where, profile.disk_cache, _size()),
            eviction=self.get(t, "eviction", where, profile.eviction, _choice(EVICTIONS)),
            max_object=self.get(t, "max_object", where, profile.max_object, _size()),
            egress=self.get(t, "egress", where, profile.egress, _egress),
            service_time=service_time,
            balancer=self.get(t, "balancer", where, "random", _choice(BALANCERS)),
            cost_per_hour=self.get(t, "cost_per_hour", where, profile.cost_per_hour, _number(0.0)),
            profile=profile.name,
            cost_per_gb_egress=self.get(t, "cost_per_gb_egress", where, 0.0, _number(0.0)),
            costs=costs,
        )

    def service(
        self,
        t: Mapping[str, Any],
        where: str,
        service_time: Distribution,
        costs: CostModel | None,
        profile: str,
    ) -> tuple[Distribution, CostModel | None]:
        """``service_time`` or ``calibration`` of a profile or edge group (the nearer
        table wins over the profile it starts from; one table may not give both).

        With a cost model the service time drawn at the start of a request is
        ``costs.base()``; the engine adds the rest by outcome (edgesim._costs)."""
        if "calibration" in t and "service_time" in t:
            self.bad(
                _join(where, "service_time"),
                "expected either service_time or calibration (measured service times), not both",
            )
        if "service_time" in t:
            return self.dist(t, "service_time", where, service_time, "duration"), None
        if "calibration" in t:
            model = self.calibration(t["calibration"], _join(where, "calibration"), profile)
            if model is not None:
                return Distribution("fixed", value=model.base()), model
        return service_time, costs

    def calibration(self, v: Any, where: str, profile: str) -> CostModel | None:
        """``calibration = "costs.toml"`` (the model named after the profile) or
        ``{ file = "costs.toml", profile = "NAME" }``."""
        from edgesim._costs import read_cost_file

        if isinstance(v, dict):
            t = self.table(v, where, ("file", "profile"))
            if "file" not in t:
                self.bad(_join(where, "file"), "missing (the cost file written by edgesim calibrate)")
                return None
            profile = self.get(t, "profile", where, profile, _text)
            key, file_v = _join(where, "file"), t["file"]
        else:
            key, file_v = where, v
        path = self.path_value(file_v, key, directory=False)
        if path is None:
            return None
        if path not in self.cost_files:
            self.cost_file_keys[path] = key
            try:
                self.cost_files[path] = read_cost_file(path)
            except TopologyError as exc:
                # each of the cost file's own problems (its file, line and key path),
                # under the topology key that names the file
                for problem in exc.problems:
                    self.bad(key, str(problem))
                self.cost_files[path] = None
                return None
        models = self.cost_files[path]
        if models is None:
            first = self.cost_file_keys[path]
            self.bad(key, f"expected a valid cost file ({path.name} has problems, listed under {first})")
            return None
        model = models.get(profile)
        if model is None:
            self.bad(
                where,
                f'expected a cost file with a model for profile "{profile}" '
                f"({path.name} has: {', '.join(models) or 'none'}; "
                'name another with { file = "...", profile = "NAME" })',
            )
        return model

    def region_latency(self, value: Any, regions: list[str]) -> tuple[tuple[str, str, float], ...]:
        network = self.table(value, "network", NETWORK_KEYS)
        matrix = network.get("region_latency", {})
        where = "network.region_latency"
        if not isinstance(matrix, dict):
            self.bad(where, f"expected a table of REGION = {{ REGION = latency, ... }}, got {_show(matrix)}")
            return ()
        out: dict[frozenset[str], tuple[str, str, float]] = {}
        for a, row in matrix.items():
            pa = _join(where, a)
            if a not in regions:
                self.bad(pa, f"expected a region name ({_listed(regions)}), got {_show(a)}")
                continue
            if not isinstance(row, dict):
                self.bad(pa, f"expected a table of REGION = latency, got {_show(row)}")
                continue
            for b in row:
                pb = _join(pa, b)
                if b not in regions:
                    self.bad(pb, f"expected a region name ({_listed(regions)}), got {_show(b)}")
                    continue
                if b == a:
                    self.bad(pb, "expected another region (a region's latency to itself is not set here)")
                    continue
                seconds = self.get(row, b, pa, -1.0, _duration(positive=True))
                if seconds < 0:
                    continue
                pair = frozenset((a, b))
                if pair in out and out[pair][2] != seconds:
                    self.bad(pb, f"expected the same latency as {b} -> {a} ({out[pair][2] * 1000:g}ms)")
                out.setdefault(pair, (a, b, seconds))
        return tuple(out.values())

    def origin(self, value: Any, regions: list[str]) -> Origin:
        t = self.table(value, "origin", ORIGIN_KEYS)
        d = Origin()
        region = self.get(t, "region", "origin", regions[0] if regions else "", _text)
        self.region_ref(t, "region", "origin", regions)
        return Origin(
            region=region,
            workers=self.get(t, "workers", "origin", d.workers, _whole(1, MAX_WORKERS)),
            max_queue=self.get(t, "max_queue", "origin", d.max_queue, _whole(0)),
            service_time=self.dist(t, "service_time", "origin", d.service_time, "duration"),
            cost_per_request=self.get(t, "cost_per_request", "origin", d.cost_per_request, _number(0.0)),
        )

    def region_ref(self, t: Mapping[str, Any], key: str, where: str, regions: list[str]) -> None:
        v = t.get(key)
        if isinstance(v, str) and v.strip() and v not in regions:
            close = difflib.get_close_matches(v, regions, n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            self.bad(_join(where, key), f"expected a region ({_listed(regions)}), got {_show(v)}{hint}")

    def site_ref(self, t: Mapping[str, Any], where: str, sites: list[str]) -> str:
        name = self.get(t, "site", where, "", _text, required="the name of a site")
        if name and name not in sites:
            close = difflib.get_close_matches(name, sites, n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            self.bad(_join(where, "site"), f"expected a site ({', '.join(sites)}), got {_show(name)}{hint}")
        return name

    def shield(self, value: Any, regions: list[str]) -> Shield:
        t = self.table(value, "shield", SHIELD_KEYS)
        region = self.get(t, "region", "shield", "", _text, required="the region the shield is in")
        self.region_ref(t, "region", "shield", regions)
        d = Shield(region)
        return Shield(
            region,
            nodes=self.get(t, "nodes", "shield", d.nodes, _whole(1, 10_000)),
            workers=self.get(t, "workers", "shield", d.workers, _whole(1, MAX_WORKERS)),
            memory_cache=self.get(t, "memory_cache", "shield", d.memory_cache, _size()),
            disk_cache=self.get(t, "disk_cache", "shield", d.disk_cache, _size()),
            service_time=self.dist(t, "service_time", "shield", d.service_time, "duration"),
            latency_to_origin=self.latency(t, "latency_to_origin", "shield", d.latency_to_origin),
            cost_per_hour=self.get(t, "cost_per_hour", "shield", d.cost_per_hour, _number(0.0)),
        )

    def shadow(self, value: Any, regions: list[str], sites: list[Site]) -> ShadowSpec:
        t = self.table(value, "shadow", SHADOW_KEYS)
        kinds = ("reference", "rules", "origin")
        candidate = self.get(t, "candidate", "shadow", "reference", _choice(kinds), required=", ".join(kinds))
        d = ShadowSpec(candidate)
        rollout = self.get(t, "rollout", "shadow", None, _number(0.0, 1.0))
        timeout = self.get(t, "timeout", "shadow", d.timeout, _duration())
        samples = self.get(t, "samples", "shadow", d.samples, _whole(0, 10_000))
        picked: list[str] = []
        rv = t.get("regions", [])
        if not isinstance(rv, list) or not all(isinstance(x, str) for x in rv):
            self.bad("shadow.regions", f"expected an array of region names, got {_show(rv)}")
        else:
            for i, name in enumerate(rv):
                if name not in regions:
                    close = difflib.get_close_matches(name, regions, n=1)
                    hint = f' (did you mean "{close[0]}"?)' if close else ""
                    self.bad(
                        _index("shadow.regions", i),
                        f"expected a region ({_listed(regions)}), got {_show(name)}{hint}",
                    )
                picked.append(name)
        rules: list[tuple[str, tuple[Path, ...]]] = []
        rt = t.get("rules", {})
        if not isinstance(rt, dict):
            self.bad("shadow.rules", f"expected a table of site = rule file(s), got {_show(rt)}")
            rt = {}
        site_names = [s.name for s in sites]
        for host, v in rt.items():
            where = _join("shadow.rules", host)
            if host not in site_names:
                close = difflib.get_close_matches(host, site_names, n=1)
                hint = f' (did you mean "{close[0]}"?)' if close else ""
                self.bad(where, f"expected a site ({', '.join(site_names)}){hint}")
            # at most one _redirects and one netlify.toml, in the spec's order (R1.1)
            rules.append((host, self.rule_files(where, v)))
        if candidate == "rules" and not rt:
            self.bad("shadow.rules", 'missing (candidate = "rules" needs [shadow.rules] SITE = FILE)')
        if candidate != "rules" and rt:
            self.bad(
                "shadow.rules", f'expected no rules for candidate = "{candidate}" (only "rules" takes them)'
            )
        origin: list[tuple[str, tuple[tuple[str, str], ...]]] = []
        ot = t.get("origin", {})
        if not isinstance(ot, dict):
            self.bad(
                "shadow.origin", f"expected a table of site = {{Cache-Control classes}}, got {_show(ot)}"
            )
            ot = {}
        if candidate != "origin" and ot:
            self.bad(
                "shadow.origin", f'expected no origin for candidate = "{candidate}" (only "origin" takes it)'
            )
        by_name = {s.name: s for s in sites}
        for host, v in ot.items():
            where = _join("shadow.origin", host)
            site = by_name.get(host)
            if site is None:
                close = difflib.get_close_matches(host, list(by_name), n=1)
                hint = f' (did you mean "{close[0]}"?)' if close else ""
                self.bad(where, f"expected a site ({', '.join(by_name)}){hint}")
            elif site.directory is not None:
                self.bad(where, "expected a synthetic site (a site directory brings its own _edgesim.toml)")
            origin.append((host, self.cache(v, where)))
        return ShadowSpec(candidate, rollout, timeout, samples, tuple(picked), tuple(rules), tuple(origin))

    def sites(self, data: Mapping[str, Any]) -> list[Site]:
        if "sites" not in data:
            self.bad("sites", "missing (at least one [[sites]] table)")
            return []
        items = self.tables(data["sites"], "sites", SITE_KEYS)
        if not items and isinstance(data["sites"], list):
            self.bad("sites", "expected at least one [[sites]] table")
        out: list[Site] = []
        seen: set[str] = set()
        shares: list[tuple[str, Any]] = []
        for where, t in items:
            name = self.get(t, "name", where, "", _text, required="the site's host name")
            if name and not _HOST.fullmatch(name):
                self.bad(
                    _join(where, "name"),
                    f"expected a host name (lower-case letters, digits, '.' and '-'), got {_show(name)}",
                )
            elif name in seen:
                self.bad(_join(where, "name"), f"expected a unique name, but {_show(name)} is used twice")
            seen.add(name)
            share = self.get(t, "share", where, None, _number(0.0, 1.0))
            shares.append((where, share if "share" in t else "missing"))
            directory = self.path(t, "directory", where, directory=True)
            if directory is not None:
                self.site_folder(directory, _join(where, "directory"))
            rules = self.rules(t, where)
            if "directory" in t and "rules" in t:
                self.bad(
                    _join(where, "rules"),
                    "expected either directory (which holds the rules) or rules, not both",
                )
            if "directory" in t and "catalog" in t:
                self.bad(_join(where, "catalog"), "expected either directory or catalog, not both")
            catalog = (
                None if "directory" in t else self.catalog(t.get("catalog", {}), _join(where, "catalog"))
            )
            redirect_share = self.get(t, "redirect_share", where, 0.0, _number(0.0, 1.0))
            if redirect_share > 0 and not self.has_rules(t, directory):
                self.bad(
                    _join(where, "redirect_share"),
                    "expected 0 for a site without rules (give rules or a directory with rules)",
                )
            cache = self.cache(t.get("cache", {}), _join(where, "cache"))
            out.append(
                Site(
                    name,
                    share=share if share is not None else 0.0,
                    directory=directory,
                    rules_files=rules,
                    catalog=catalog,
                    redirect_share=redirect_share,
                    cache=cache,
                )
            )
        filled = self.shares(shares, "sites", "share")
        if filled is not None:
            out = [replace(s, share=x) for s, x in zip(out, filled, strict=True)]
        return out

    def site_folder(self, folder: Path, where: str) -> None:
        """Load a site folder as the origin will (its files, ``_edgesim.toml`` and rule
        files): what stops it loading is a problem of ``where``, and a folder with nothing
        to request is noted (a problem unless the traffic is a trace). Its rules' own
        problems are listed with the other rule files."""
        from origin.core import OriginCore, SiteConfigError

        try:
            prepared = OriginCore(bodies=False).prepare_deploy("site", folder=folder)
        except SiteConfigError as exc:
            self.bad(where, str(exc))
            return
        except EdgesimError:  # a rule file's problem
            return
        if not prepared.files and prepared.catalog is None:
            self.empty_folders.append((where, folder))

    @staticmethod
    def has_rules(t: Mapping[str, Any], directory: Path | None) -> bool:
        """Whether the site has rules (or names them wrongly, which is reported already)."""
        if "rules" in t:
            return True
        if "directory" in t:
            return directory is None or any((directory / n).is_file() for n in ("_redirects", "netlify.toml"))
        return False

    def rules(self, t: Mapping[str, Any], where: str) -> tuple[Path, ...]:
        """``rules``: a file or an array of files: one ``_redirects`` and/or one netlify
        TOML file. They are kept in the spec's order: `_redirects` first (R1.1)."""
        if "rules" not in t:
            return ()
        return self.rule_files(_join(where, "rules"), t["rules"])

    def rule_files(self, path: str, v: Any) -> tuple[Path, ...]:
        """A site's rule files at key ``path`` (a file or an array of files), each
        problem reported: ``_redirects`` first, then its netlify TOML file."""
        items = (
            [(path, v)]
            if isinstance(v, str)
            else [(_index(path, i), x) for i, x in enumerate(v)]
            if isinstance(v, list)
            else None
        )
        if items is None or not items:
            self.bad(path, f"expected a rule file or an array of them, got {_show(v)}")
            return ()
        redirects: list[Path] = []
        tomls: list[Path] = []
        for p, x in items:
            f = self.path_value(x, p, directory=False)
            if f is None:
                continue
            group = tomls if f.suffix == ".toml" else redirects
            if group:
                kind = "netlify.toml" if group is tomls else "_redirects"
                self.bad(p, f"expected at most one {kind} file per site, got a second one")
                continue
            group.append(f)
        return (*redirects, *tomls)

    def catalog(self, value: Any, where: str) -> Catalog:
        t = self.table(value, where, CATALOG_KEYS)
        d = Catalog()
        sizes = []
        raw_sizes = t.get("sizes", {})
        if not isinstance(raw_sizes, dict):
            self.bad(
                _join(where, "sizes"),
                f"expected a table of kind -> size distribution, got {_show(raw_sizes)}",
            )
            raw_sizes = {}
        for kind in raw_sizes:
            if kind not in KINDS:
                self.bad(
                    _join(_join(where, "sizes"), kind),
                    f"expected a kind ({', '.join(KINDS)}), got {_show(kind)}",
                )
                continue
            sizes.append((kind, self.dist(raw_sizes, kind, _join(where, "sizes"), d.size, "size")))
        types = d.types
        raw_types = t.get("types")
        if raw_types is not None:
            tp = _join(where, "types")
            if not isinstance(raw_types, dict):
                self.bad(tp, f"expected a table of kind -> weight, got {_show(raw_types)}")
            else:
                mix = []
                for kind in raw_types:
                    if kind not in KINDS:
                        self.bad(_join(tp, kind), f"expected a kind ({', '.join(KINDS)}), got {_show(kind)}")
                        continue
                    mix.append((kind, self.get(raw_types, kind, tp, 0.0, _number(0.0))))
                if mix and not any(w > 0 for _, w in mix):
                    self.bad(tp, "expected at least one kind with a weight > 0")
                elif mix:
                    types = tuple(mix)
        return Catalog(
            objects=self.get(t, "objects", where, d.objects, _whole(1, MAX_OBJECTS)),
            zipf=self.get(t, "zipf", where, d.zipf, _number(0.0, 20.0)),  # past 20 rank 1 takes all
            size=self.dist(t, "size", where, d.size, "size"),
            sizes=tuple(sizes),
            types=types,
            seed=self.get(t, "seed", where, d.seed, _whole(0, 2**63 - 1)),
        )

    def cache(self, value: Any, where: str) -> tuple[tuple[str, str], ...]:
        """(class, Cache-Control) pairs, then ("/glob", Cache-Control) pairs."""
        t = self.table(value, where, (*CACHE_CLASSES, "paths"))
        classes = tuple((k, self.get(t, k, where, "", _text)) for k in CACHE_CLASSES if k in t)
        paths: list[tuple[str, str]] = []
        raw = t.get("paths", {})
        pw = _join(where, "paths")
        if not isinstance(raw, dict):
            self.bad(pw, f'expected a table of "/glob" = Cache-Control, got {_show(raw)}')
            raw = {}
        for glob in raw:
            if not glob.startswith("/"):
                self.bad(_join(pw, glob), 'expected a path glob starting with "/"')
                continue
            paths.append((glob, self.get(raw, glob, pw, "", _text)))
        return (*classes, *paths)

    def traffic(self, value: Any, sites: list[str], regions: list[str]) -> Traffic:
        w = "traffic"
        t = self.table(value, w, TRAFFIC_KEYS)
        d = Traffic()
        duration = self.get(t, "duration", w, d.duration, _duration(positive=True))
        warmup = self.get(t, "warmup", w, min(d.warmup, duration / 4), _duration())
        if "warmup" in t and warmup >= duration:
            self.bad(
                _join(w, "warmup"),
                f"expected less than traffic.duration ({duration:g}s), got {_show(t['warmup'])}",
            )
        diurnal = d.diurnal
        if "diurnal" in t:
            diurnal = self.diurnal(t["diurnal"], _join(w, "diurnal"))
        trace = self.path(t, "trace", w, directory=False)
        trace_format = ""
        if "trace_format" in t:
            trace_format = self.get(t, "trace_format", w, "", _choice(TRACE_FORMATS))
            if "trace" not in t:
                self.bad(_join(w, "trace_format"), "expected only with traffic.trace")
        elif trace is not None:
            # By name, as edgesim.traces.sniff_format; "" leaves sniffing the content
            # to the reader.
            trace_format = format_by_name(trace) or ""

        def within(tbl: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> float:
            at = self.get(tbl, key, where, 0.0, _duration(), required=_DURATION_HINT if required else "")
            if at >= duration:
                self.bad(
                    _join(where, key),
                    f"expected a time before the end of traffic ({duration:g}s), got {_show(tbl[key])}",
                )
            return at

        crowds = []
        for cw, c in self.tables(t.get("flash_crowds", []), _join(w, "flash_crowds"), FLASH_KEYS):
            site = self.site_ref(c, cw, sites)
            self.region_ref(c, "region", cw, regions)
            crowds.append(
                FlashCrowd(
                    site,
                    start=within(c, "start", cw),
                    duration=self.get(
                        c, "duration", cw, 0.0, _duration(positive=True), required=_DURATION_HINT
                    ),
                    multiplier=self.get(
                        c, "multiplier", cw, 1.0, _number_upto(0.0, MAX_MULTIPLIER), required="a number > 0"
                    ),
                    region=self.get(c, "region", cw, "", _text),
                )
            )
        if crowds and "trace" in t:
            self.bad(
                _join(w, "flash_crowds"), "expected no flash crowds with a trace (the trace is the traffic)"
            )
        deploys = []
        for dw, dep in self.tables(t.get("deploys", []), _join(w, "deploys"), DEPLOY_KEYS):
            deploys.append(
                Deploy(
                    self.site_ref(dep, dw, sites),
                    at=within(dep, "at", dw),
                    new_fraction=self.get(dep, "new_fraction", dw, 0.1, _number(0.0, 1.0)),
                    propagation=self.get(dep, "propagation", dw, 0.0, _duration()),
                )
            )
        return Traffic(
            duration=duration,
            peak_rps=self.get(t, "peak_rps", w, d.peak_rps, _number_upto(0.0, MAX_PEAK_RPS)),
            warmup=warmup,
            start_hour_utc=self.get(t, "start_hour_utc", w, 0.0, _hour_of_day),
            diurnal=diurnal,
            flash_crowds=tuple(crowds),
            deploys=tuple(deploys),
            trace=trace,
            trace_format=trace_format,
        )

    def diurnal(self, v: Any, path: str) -> tuple[float, ...]:
        if isinstance(v, str):
            if v in DIURNAL_PROFILES:
                return DIURNAL_PROFILES[v]
            names = ", ".join(f'"{n}"' for n in DIURNAL_PROFILES)
            self.bad(path, f"expected a profile name ({names}) or 24 hourly factors, got {_show(v)}")
            return Traffic().diurnal
        if not isinstance(v, list) or len(v) != 24:
            names = ", ".join(f'"{n}"' for n in DIURNAL_PROFILES)
            self.bad(
                path, f"expected 24 hourly factors from 0 to 1 or a profile name ({names}), got {_show(v)}"
            )
            return Traffic().diurnal
        before = len(self.problems)
        conv = _number(0.0, 1.0)
        out = []
        for i, x in enumerate(v):
            try:
                out.append(conv(x))
            except _Expected as exc:
                self.bad(_index(path, i), f"expected {exc.what}, got {_show(x)}")
        if len(self.problems) > before:
            return Traffic().diurnal
        if not any(out):
            self.bad(path, "expected at least one hour with a factor > 0")
        return tuple(out)

    def faults(self, value: Any, regions: list[Region], duration: float, has_shield: bool) -> Faults:
        w = "faults"
        t = self.table(value, w, FAULT_KEYS)
        d = Faults()
        by_name = {r.name: r for r in regions}
        names = list(by_name)

        def within(tbl: Mapping[str, Any], key: str, where: str) -> float:
            at = self.get(tbl, key, where, 0.0, _duration(), required=_DURATION_HINT)
            if at >= duration:
                self.bad(
                    _join(where, key),
                    f"expected a time before the end of traffic ({duration:g}s), got {_show(tbl[key])}",
                )
            return at

        def ends_within(
            tbl: Mapping[str, Any], where: str, what: str, at: float, key: str, length: float
        ) -> None:
            """A fault's window ends by the end of traffic: the run cuts nothing short
            (edgesim drill would wait out the rest of an outage after its load ends)."""
            # (a window ending at the end, in any units, passes: "1.1s" + "3.7s" is a
            # float past 4.8 by 1e-16)
            if key in tbl and at < duration and at + length - duration > 1e-9 * max(1.0, duration):
                self.bad(
                    _join(where, key),
                    f"expected at most {duration - at:g}s ({what} starts at {at:g}s and must end by the "
                    f"end of traffic, {duration:g}s), got {_show(tbl[key])}",
                )

        crashes: list[NodeCrash] = []
        of_node: dict[tuple[str, int], list[NodeCrash]] = {}  # each node's crashes so far
        for cw, c in self.tables(t.get("crashes", []), _join(w, "crashes"), CRASH_KEYS):
            region = self.get(c, "region", cw, "", _text, required="the region of the node")
            self.region_ref(c, "region", cw, names)
            node = self.get(c, "node", cw, -1, _whole(0), required="the node's index, from 0")
            if node >= 0 and region in by_name and node >= by_name[region].edge.nodes:
                n = by_name[region].edge.nodes
                has = f"{region} has {n} node{'s' * (n != 1)}"
                self.bad(_join(cw, "node"), f"expected a node index from 0 to {n - 1} ({has}), got {node}")
            crash = NodeCrash(
                region,
                node,
                at=within(c, "at", cw),
                down_for=self.get(c, "down_for", cw, 0.0, _duration(positive=True), required=_DURATION_HINT),
            )
            # (a crash may outlast the run: the node stays down to its end)
            earlier = of_node.setdefault((region, node), [])
            for other in earlier:
                end = other.at + other.down_for
                if crash.at < end and other.at < crash.at + crash.down_for:
                    self.bad(
                        _join(cw, "at"),
                        f"expected a time when {region} node {node} is up (it is down from "
                        f"{other.at:g}s to {end:g}s)",
                    )
            earlier.append(crash)
            crashes.append(crash)
        outages = []
        for ow, o in self.tables(t.get("origin_outages", []), _join(w, "origin_outages"), OUTAGE_KEYS):
            outage = OriginOutage(
                at=within(o, "at", ow),
                duration=self.get(o, "duration", ow, 0.0, _duration(positive=True), required=_DURATION_HINT),
                mode=self.get(o, "mode", ow, "stop", _choice(OUTAGE_MODES)),
            )
            ends_within(o, ow, "the outage", outage.at, "duration", outage.duration)
            outages.append(outage)
        spikes = []
        # (failover between regions takes [network.region_latency]; spikes on it are not modelled)
        ends = ["origin", "client", *(("shield",) if has_shield else ())]
        for sw, s in self.tables(t.get("latency_spikes", []), _join(w, "latency_spikes"), SPIKE_KEYS):
            link = self.get(s, "link", sw, "", _text, required='a link such as "eu-west->origin"')
            a, arrow, b = link.partition("->")
            a, b = a.strip(), b.strip()
            if link and (not arrow or a not in names or b not in ends or a == b):
                self.bad(
                    _join(sw, "link"),
                    'expected "REGION->origin" or "REGION->client"'
                    + (' or "REGION->shield"' if has_shield else "")
                    + f" with regions {_listed(names)}"
                    + (" (spikes on a link between regions are not modelled)" if b in names else "")
                    + f", got {_show(link)}",
                )
            spike = LatencySpike(
                f"{a}->{b}" if arrow else link,
                at=within(s, "at", sw),
                duration=self.get(s, "duration", sw, 0.0, _duration(positive=True), required=_DURATION_HINT),
                extra=self.get(s, "extra", sw, 0.0, _duration(positive=True), required=_DURATION_HINT),
            )
            ends_within(s, sw, "the spike", spike.at, "duration", spike.duration)
            spikes.append(spike)
        return Faults(
            crashes=tuple(crashes),
            outages=tuple(outages),
            spikes=tuple(spikes),
            health_check_delay=self.get(t, "health_check_delay", w, d.health_check_delay, _duration()),
            client_timeout=self.get(t, "client_timeout", w, d.client_timeout, _duration(positive=True)),
        )
