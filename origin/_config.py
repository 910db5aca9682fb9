"""Per-site configuration: the ``_edgesim.toml`` file of a site folder.

The file is parsed and validated once per deploy into frozen values; request handling
never sees raw dicts. Errors name the file, the key path and what was expected::

    sites/shop/_edgesim.toml: catalog.size.sigma: expected a number > 0, got "x"

Every table is optional; an empty or missing file gives the defaults below.
"""

from __future__ import annotations

import math
import random
import re
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import translate
from typing import Any, Final

from edgesim._toml import load_toml
from edgesim.errors import EdgesimError

CONFIG_NAME: Final = "_edgesim.toml"

# Default Cache-Control values (issue 3). Hashed assets never change under their name,
# so a year plus `immutable` (RFC 8246) is safe; HTML must pick up deploys quickly, so
# browsers revalidate every time (max-age=0) while shared caches keep it a minute.
HASHED_CC: Final = "public, max-age=31536000, immutable"
HTML_CC: Final = "public, max-age=0, s-maxage=60"
DEFAULT_CC: Final = "public, max-age=3600"
NOT_FOUND_CC: Final = "public, max-age=60"
REDIRECT_CC: Final = "public, max-age=300"
# Reserved endpoints, unknown hosts and unfetched proxies are never cached.
NO_STORE: Final = "no-store"

# A content hash in a file name: `app.3f9c2a1b.js`, `logo.0123456789abcdef.png`.
_HASHED: Final = re.compile(r"\.[0-9a-fA-F]{8,}\.")

# Synthetic catalogs: more objects than this is a typo, not a site (and would take
# seconds and hundreds of MB to lay out).
MAX_OBJECTS: Final = 10_000_000
# Largest synthetic object (1 GiB): sizes drawn above it are clamped.
MAX_SIZE: Final = 1 << 30


class SiteConfigError(EdgesimError, ValueError):
    """A site's ``_edgesim.toml`` (or its folder) is invalid."""


def is_hashed(path: str) -> bool:
    """Whether the file name of ``path`` carries a ``.<8+ hex>.`` content hash."""
    return _HASHED.search(path, path.rfind("/") + 1) is not None


# --------------------------------------------------------------------------
# Distributions (object sizes, service times)
# --------------------------------------------------------------------------

# The smallest Pareto shape accepted: a draw is min * u ** (-1 / alpha) with u >= 2**-53,
# which overflows a float for alpha below about 0.052.
MIN_PARETO_ALPHA: Final = 0.1

_NV_MAGICCONST: Final = 4 * math.exp(-0.5) / math.sqrt(2.0)
# Values a Uniforms drawing ahead takes from numpy at a time.
_UNIFORM_BLOCK: Final = 8192


class Uniforms:
    """The values ``rng.random()`` returns, in order, for code that draws many of them:
    compiled callers reach each through a native method rather than a Python call.

    ``Uniforms(rng)`` asks ``rng`` for every value, so ``rng`` stays in step with the
    draws. ``Uniforms(rng, ahead=True)`` takes ``rng`` over: it copies its Mersenne
    Twister state into numpy's ``MT19937`` and draws blocks of values from there. They
    are the same doubles in the same order (CPython's ``random()`` and numpy's
    ``random_sample()`` both make a double of two 32-bit outputs, 27 and 26 bits of
    them); ``rng`` itself is left behind and must not be drawn from again."""

    def __init__(self, rng: random.Random, ahead: bool = False) -> None:
        self.rng = rng
        self.buf: list[float] = []
        self.at = 0
        self.mt: Any = None
        if ahead:
            import numpy as np

            internal = rng.getstate()[1]  # (version, 624 words + position, gauss_next)
            mt = np.random.RandomState()
            mt.set_state(("MT19937", np.array(internal[:624], dtype=np.uint32), internal[624], 0, 0.0))
            self.mt = mt

    def random(self) -> float:
        """The next value of ``rng.random()``."""
        at = self.at
        if at < len(self.buf):
            self.at = at + 1
            return self.buf[at]
        if self.mt is None:
            return self.rng.random()
        self.buf = self.mt.random_sample(_UNIFORM_BLOCK).tolist()
        self.at = 1
        return self.buf[0]


def _normal(rng: Uniforms, mu: float, sigma: float) -> float:
    """``rng.normalvariate(mu, sigma)``: Kinderman and Monahan's method, as CPython's
    ``random`` module draws it (see :meth:`Distribution.sample`)."""
    while True:
        u1 = rng.random()
        u2 = 1.0 - rng.random()
        z = _NV_MAGICCONST * (u1 - 0.5) / u2
        zz = z * z / 4.0
        if zz <= -math.log(u2):
            break
    return mu + z * sigma


_DIST_PARAMS: dict[str, tuple[str, ...]] = {
    "fixed": ("value",),
    "lognormal": ("median", "sigma"),
    "pareto": ("alpha", "min"),
    "exponential": ("mean",),
    "uniform": ("min", "max"),
}


@dataclass(frozen=True, slots=True)
class Distribution:
    """A random variable drawn with a caller-supplied ``random.Random``.

    Kinds and their parameters: ``fixed`` (value), ``lognormal`` (median, sigma),
    ``pareto`` (alpha, min: the scale), ``exponential`` (mean), ``uniform`` (min, max).
    ``limit`` clamps draws from above (0: no limit).
    """

    kind: str
    a: float
    b: float = 0.0
    limit: float = 0.0

    def sample(self, rng: random.Random) -> float:
        """One draw (uses ``rng`` except for ``fixed``): ``rng.lognormvariate``,
        ``paretovariate``, ``expovariate`` or ``uniform``, by the formulas of CPython's
        ``random`` module written out here, so that compiled code makes a catalog's tens
        of thousands of draws without an interpreted frame each (the same operations on
        the same ``rng.random()`` values: the same floats, checked against ``random`` by
        the tests)."""
        return self.draw(Uniforms(rng))

    def draw(self, rng: Uniforms) -> float:
        """:meth:`sample` from the values of ``rng`` (a catalog's layout draws ahead)."""
        k = self.kind
        if k == "fixed":
            x = self.a
        elif k == "lognormal":
            x = math.exp(_normal(rng, math.log(self.a), self.b))
        elif k == "pareto":
            u = 1.0 - rng.random()
            x = self.b * u ** (-1.0 / self.a)
        elif k == "exponential":
            if self.a > 0:
                lambd = 1.0 / self.a
                x = -math.log(1.0 - rng.random()) / lambd
            else:
                x = 0.0
        else:
            x = self.a + (self.b - self.a) * rng.random()
        if self.limit and x > self.limit:
            x = self.limit
        return x

    def as_dict(self) -> dict[str, Any]:
        """The table :func:`_dist` parses back into this distribution. A uniform's
        ``max`` is its upper bound and its limit at once, so its limit only shows when
        it is below the bound (one above it clamps nothing): writing the limit over the
        bound turned ``uniform 0..3KB`` with the 1 GiB size clamp into ``0..1GiB``."""
        names = _DIST_PARAMS[self.kind]
        out: dict[str, Any] = {"distribution": self.kind, names[0]: self.a}
        if len(names) > 1:
            out[names[1]] = self.b
        if self.kind == "uniform":
            if self.limit and self.limit < self.b:
                out["max"] = self.limit
        elif self.limit:
            out["max"] = self.limit
        return out


# --------------------------------------------------------------------------
# Cache policy
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """Cache-Control values of one site.

    ``paths`` are (glob, value) overrides checked in order, first match wins; ``*``
    matches any characters including ``/``. Then: hashed file names, HTML, everything
    else. ``not_found`` covers 4xx/5xx content (the 404 page), ``redirect`` 3xx.
    """

    hashed: str = HASHED_CC
    html: str = HTML_CC
    default: str = DEFAULT_CC
    not_found: str = NOT_FOUND_CC
    redirect: str = REDIRECT_CC
    paths: tuple[tuple[str, str], ...] = ()
    _compiled: tuple[tuple[re.Pattern[str], str], ...] = field(default=(), repr=False, compare=False)

    def for_file(self, path: str, content_type: str) -> str:
        """The Cache-Control value of a 2xx response serving file ``path``."""
        value = self.path_override(path)
        return value if value is not None else self.by_type(path, content_type)

    def path_override(self, path: str) -> str | None:
        """The value of the first ``paths`` pattern that matches ``path``, or None."""
        for pattern, value in self._compiled:
            if pattern.match(path):
                return value
        return None

    def may_override(self, start: str) -> bool:
        """Whether a path starting with ``start`` may match a ``paths`` pattern: false
        when, for every pattern, its literal start (before its first ``*``, ``?`` or
        ``[``) and ``start`` differ before either ends (a path starting with both would
        make one a prefix of the other)."""
        for glob, _ in self.paths:
            cut = [i for i in (glob.find(c) for c in "*?[") if i >= 0]
            literal = glob[: min(cut)] if cut else glob
            if literal.startswith(start) or start.startswith(literal):
                return True
        return False

    def by_type(self, path: str, content_type: str) -> str:
        """:meth:`for_file` without the path overrides: by hashed name, then type."""
        if is_hashed(path):
            return self.hashed
        if content_type.startswith("text/html"):
            return self.html
        return self.default

    def as_dict(self) -> dict[str, Any]:
        return {
            "hashed": self.hashed,
            "html": self.html,
            "default": self.default,
            "not_found": self.not_found,
            "redirect": self.redirect,
            "paths": dict(self.paths),
        }


def _policy(
    hashed: str, html: str, default: str, nf: str, redirect: str, paths: list[tuple[str, str]]
) -> CachePolicy:
    compiled = tuple((re.compile(translate(p)), v) for p, v in paths)
    return CachePolicy(hashed, html, default, nf, redirect, tuple(paths), compiled)


# --------------------------------------------------------------------------
# Catalog of a synthetic site
# --------------------------------------------------------------------------

# Kinds of synthetic objects: (content type, URL shape). Hashed kinds live under
# /assets/ with a content hash in the name; the others keep their name across deploys.
KINDS: dict[str, tuple[str, str]] = {
    "html": ("text/html; charset=utf-8", "/page-{i}.html"),
    "js": ("application/javascript; charset=utf-8", "/assets/obj-{i}.{h}.js"),
    "css": ("text/css; charset=utf-8", "/assets/obj-{i}.{h}.css"),
    "img": ("image/jpeg", "/assets/obj-{i}.{h}.jpg"),
    "font": ("font/woff2", "/assets/obj-{i}.{h}.woff2"),
    "json": ("application/json", "/data/obj-{i}.json"),
}
DEFAULT_TYPES: Final = (("html", 0.2), ("js", 0.1), ("css", 0.1), ("img", 0.6))
DEFAULT_SIZE: Final = Distribution("lognormal", 20_000.0, 1.0, float(MAX_SIZE))


@dataclass(frozen=True, slots=True)
class CatalogSpec:
    """Parameters of a synthetic site (the ``[catalog]`` table).

    Attributes:
        objects: number of numbered objects (``/page-<i>.html``, ``/assets/obj-<i>...``).
        seed: seed of the layout (kinds and sizes of the objects).
        size: default size distribution (bytes).
        sizes: per-kind overrides of ``size``.
        types: (kind, weight) mix; weights need not sum to 1.
        fixed_sizes: when given (one size per object), the objects' sizes, in place of
            draws from ``size``/``sizes``: a replayed trace's sizes. Kinds and URLs do
            not depend on it (the layout still makes the same draws), so it is left out
            of :meth:`as_dict` and of manifests: an edge rebuilds the same file set.
    """

    objects: int
    seed: int = 0
    size: Distribution = DEFAULT_SIZE
    sizes: tuple[tuple[str, Distribution], ...] = ()
    types: tuple[tuple[str, float], ...] = DEFAULT_TYPES
    fixed_sizes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.fixed_sizes and len(self.fixed_sizes) != self.objects:
            raise ValueError(f"fixed_sizes has {len(self.fixed_sizes)} sizes for {self.objects} objects")

    def as_dict(self) -> dict[str, Any]:
        return {
            "objects": self.objects,
            "seed": self.seed,
            "size": self.size.as_dict(),
            "sizes": {k: d.as_dict() for k, d in self.sizes},
            "types": dict(self.types),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "catalog") -> CatalogSpec:
        """Parse a ``[catalog]`` table (also the ``catalog`` object of a manifest)."""
        return _catalog(dict(data), where)


# --------------------------------------------------------------------------
# The whole file
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SiteConfig:
    """Everything ``_edgesim.toml`` says about a site.

    Attributes:
        cache: the Cache-Control policy.
        service_time: modelled time to serve one request (seconds), or None.
        concurrency: per-site concurrency limit of the shell (0: none).
        catalog: the synthetic catalog, or None for a site made of real files.
        jwt_secret: HS256 secret for ``Role=`` rule conditions.
        text: the file as written (None when the site has no file).
    """

    cache: CachePolicy = CachePolicy()
    service_time: Distribution | None = None
    concurrency: int = 0
    catalog: CatalogSpec | None = None
    jwt_secret: str | None = None
    text: str | None = None


def parse_config(text: str | None, filename: str = CONFIG_NAME) -> SiteConfig:
    """Parse and validate one ``_edgesim.toml``.

    Args:
        text: the file's text, or None when the site has none (defaults).
        filename: used in error messages.

    Raises:
        SiteConfigError: bad TOML, an unknown key, or a value of the wrong type.
    """
    if text is None:
        return SiteConfig()
    try:
        data = load_toml(text)
    except tomllib.TOMLDecodeError as e:
        raise SiteConfigError(f"{filename}: {e}") from None
    try:
        _known(data, ("cache", "load", "catalog", "rules"), "")
        cache = _cache(_table(data, "cache", ""))
        load = _table(data, "load", "")
        _known(load, ("service_time", "concurrency"), "load")
        st = load.get("service_time")
        service = _dist(st, "load.service_time", minimum=0.0) if st is not None else None
        concurrency = _int(load.get("concurrency", 0), "load.concurrency", 0, 1_000_000)
        cat = data.get("catalog")
        catalog = _catalog(_table(data, "catalog", ""), "catalog") if cat is not None else None
        rules = _table(data, "rules", "")
        _known(rules, ("jwt_secret",), "rules")
        secret = rules.get("jwt_secret")
        if secret is not None and not isinstance(secret, str):
            raise _Bad("rules.jwt_secret", "a string", secret)
    except _Bad as e:
        raise SiteConfigError(f"{filename}: {e}") from None
    return SiteConfig(cache, service, concurrency, catalog, secret, text)


# Integers beyond the largest float are not numbers here. An int, compared as an int:
# compiled (mypyc), an int compared with a float is converted to one, which overflows.
FLOAT_MAX: Final = int(sys.float_info.max)


class _Bad(Exception):
    def __init__(self, key: str, expected: str, got: Any = None, *, raw: str | None = None) -> None:
        shown = raw if raw is not None else f"expected {expected}, got {got!r}"
        super().__init__(f"{key}: {shown}")


def _known(table: Mapping[str, Any], keys: tuple[str, ...], where: str) -> None:
    for k in table:
        if k not in keys:
            path = f"{where}.{k}" if where else k
            raise _Bad(path, "", raw=f"unknown key (expected one of: {', '.join(keys)})")


def _table(data: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    v = data.get(key, {})
    if not isinstance(v, dict):
        raise _Bad(f"{where}.{key}" if where else key, "a table", v)
    return v


def _num(v: Any, key: str, minimum: float | None = None, *, strict: bool = False) -> float:
    if isinstance(v, int) and not isinstance(v, bool) and not -FLOAT_MAX <= int(v) <= FLOAT_MAX:
        # (math.isfinite would raise OverflowError; and not hundreds of digits on a line)
        raise _Bad(key, "", raw=f"expected a number, got an integer of {len(str(abs(v)))} digits")
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise _Bad(key, "a number", v)
    if minimum is not None and (v <= minimum if strict else v < minimum):
        raise _Bad(key, f"a number {'>' if strict else '>='} {minimum:g}", v)
    return float(v)


def _int(v: Any, key: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise _Bad(key, f"an integer in [{lo}, {hi}]", v)
    return v


def _str(v: Any, key: str) -> str:
    if not isinstance(v, str) or not v.strip() or any(c in v for c in "\r\n\0"):
        raise _Bad(key, "a non-empty one-line string", v)
    return v


def _dist(v: Any, key: str, *, minimum: float) -> Distribution:
    """A number (fixed) or a table ``{distribution = "...", <params>, max = ...}``."""
    if not isinstance(v, dict):
        return Distribution("fixed", _num(v, key, minimum))
    kind = v.get("distribution", "fixed")
    if kind not in _DIST_PARAMS:
        raise _Bad(f"{key}.distribution", f"one of {', '.join(_DIST_PARAMS)}", kind)
    names = _DIST_PARAMS[kind]
    _known(v, ("distribution", *names, "max"), key)
    vals: list[float] = []
    for n in names:
        if n not in v:
            raise _Bad(f"{key}.{n}", "", raw=f"missing (a {kind} distribution needs {', '.join(names)})")
        if n == "alpha":  # x = min * u ** (-1 / alpha) overflows a float below this
            vals.append(_num(v[n], f"{key}.{n}", MIN_PARETO_ALPHA))
            continue
        positive = n in ("median", "sigma") or (kind == "pareto" and n == "min")
        vals.append(_num(v[n], f"{key}.{n}", 0.0 if positive else minimum, strict=positive))
    if kind == "uniform" and vals[1] < vals[0]:
        raise _Bad(f"{key}.max", f"a number >= min ({vals[0]:g})", vals[1])
    limit = _num(v["max"], f"{key}.max", 0.0, strict=True) if "max" in v else 0.0
    return Distribution(kind, vals[0], vals[1] if len(vals) > 1 else 0.0, limit)


def _cache(t: dict[str, Any]) -> CachePolicy:
    keys = ("hashed", "html", "default", "not_found", "redirect")
    _known(t, (*keys, "paths"), "cache")
    defaults = (HASHED_CC, HTML_CC, DEFAULT_CC, NOT_FOUND_CC, REDIRECT_CC)
    vals = [_str(t[k], f"cache.{k}") if k in t else d for k, d in zip(keys, defaults, strict=True)]
    raw = _table(t, "paths", "cache")
    paths: list[tuple[str, str]] = []
    for p, v in raw.items():
        if not p.startswith("/"):
            raise _Bad(f"cache.paths.{p!r}", "", raw='expected a path glob starting with "/"')
        paths.append((p, _str(v, f"cache.paths.{p!r}")))
    return _policy(vals[0], vals[1], vals[2], vals[3], vals[4], paths)


def _catalog(t: dict[str, Any], where: str) -> CatalogSpec:
    _known(t, ("objects", "seed", "size", "sizes", "types"), where)
    if "objects" not in t:
        raise _Bad(f"{where}.objects", "", raw="missing (the number of objects)")
    objects = _int(t["objects"], f"{where}.objects", 1, MAX_OBJECTS)
    seed = _int(t.get("seed", 0), f"{where}.seed", 0, 2**63 - 1)
    size = _size(t["size"], f"{where}.size") if "size" in t else DEFAULT_SIZE
    sizes = []
    for k, v in _table(t, "sizes", where).items():
        if k not in KINDS:
            raise _Bad(f"{where}.sizes.{k}", f"a kind ({', '.join(KINDS)})", k)
        sizes.append((k, _size(v, f"{where}.sizes.{k}")))
    types: tuple[tuple[str, float], ...] = DEFAULT_TYPES
    if "types" in t:
        mix = []
        for k, w in _table(t, "types", where).items():
            if k not in KINDS:
                raise _Bad(
                    f"{where}.types.{k}", "", raw=f"unknown kind (expected one of: {', '.join(KINDS)})"
                )
            mix.append((k, _num(w, f"{where}.types.{k}", 0.0)))
        if not any(w > 0 for _, w in mix):
            raise _Bad(f"{where}.types", "", raw="expected at least one kind with a weight > 0")
        types = tuple(mix)
    return CatalogSpec(objects, seed, size, tuple(sizes), types)


def _size(v: Any, key: str) -> Distribution:
    d = _dist(v, key, minimum=0.0)
    if not d.limit or d.limit > MAX_SIZE:
        d = Distribution(d.kind, d.a, d.b, float(MAX_SIZE))
    return d
