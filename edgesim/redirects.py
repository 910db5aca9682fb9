"""Redirect and rewrite rules: the Python face of the native matcher.

Theory of operation
-------------------
A :class:`RuleSet` owns exactly one compiled native rule set (``esr_ruleset`` from
native/include/esr.h). The handle returned by ``esr_builder_compile`` is wrapped at once
with ``ffi.gc(ptr, lib.esr_ruleset_free)``; that wrapper is the only owner, and nothing
derived from it (casts, fields, result pointers) ever leaves this module: results are
copied into ``str``/``int`` values before a call returns.

The compiled set is immutable, so one :class:`RuleSet` may serve any number of Trio tasks
and threads; cffi releases the GIL around every C call. Reloading rules means compiling
a new set and rebinding a reference; the old one is freed when nothing uses it.

Invariants (the crash this project exists to prevent):

* Every C call runs with the owner wrapper held in a local variable of the calling
  frame. ``close()`` only drops the :class:`RuleSet`'s own reference, so on CPython the
  handle is freed at once when no call is in flight, and otherwise by the last in-flight
  call when it returns and its frame lets go. No interleaving of ``close()``, garbage
  collection and matching can free memory that a running C call uses. (An explicit
  ``ffi.release`` would free it under a running call, so it is never used here.)
* Calls after ``close()`` raise ``ValueError("RuleSet is closed")``.

:class:`ReferenceRuleSet` has the same API over the pure-Python reference matcher
(``edgesim._reference``): the oracle of the differential tests and the benchmark
baseline.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from edgesim._atomic import is_special
from edgesim._reqfields import FUNCTIONS as _FUNCTIONS
from edgesim._reqfields import MISSING as _MISSING
from edgesim._reqfields import (
    MatchMemo,
    memo_key,
    resolution_fields,
    resolve_file,
    visitor_fields,
)
from edgesim._reqfields import cookie_and_language as _cookie_and_language
from edgesim._rulefiles import (
    Diagnostic,
    Source,
    SourceFile,
    is_toml_name,
    redirects_source,
    sort_diagnostics,
    toml_source,
)
from edgesim._visitor import DEFAULT_ROLE_CLAIM, HeadersLike, Visitor, derive, header, mint_jwt
from edgesim.errors import RuleFileError, RuleSyntaxError

__all__ = [
    "DEFAULT_ROLE_CLAIM",
    "Diagnostic",
    "Match",
    "ReferenceRuleSet",
    "Resolution",
    "RuleInfo",
    "RuleSet",
    "Source",
    "mint_jwt",
    "resolve",
    "resolve_file",
    "visitor_fields",
]

_T = TypeVar("_T", bound="_RuleSetBase")

# Target bytes kept per thread for single matches; longer targets get a one-off buffer.
_TARGET_BUF = 4096
# Memoised visitor contexts per rule set (distinct visitors are few; bounded anyway).
_CONTEXT_CACHE = 4096


class Match(NamedTuple):
    """The outcome of matching one request (all plain values, no native memory).

    Attributes:
        status: HTTP status of the rule (404 for a denial).
        to: target after placeholder substitution, before the request query is
            passed through.
        force: whether the rule applies even over an existing file.
        source: where the rule is written (file, line, TOML table index).
        denied: a ``Role=`` rule denied the visitor and no later rule matched.
        rule: 0-based index of the rule in the combined list.
        query: the request's raw query string (without ``?``), for :attr:`location`.
        after_denial: the match came after an earlier ``Role=`` rule denied.
    """

    status: int
    to: str
    force: bool
    source: Source
    denied: bool = False
    rule: int = -1
    query: str = ""
    after_denial: bool = False

    @property
    def location(self) -> str:
        """What an edge sends: the target with query pass-through (spec R2.18)."""
        to, q = self.to, self.query
        if self.denied:
            return ""
        if to.startswith(_FUNCTIONS) and not 300 <= self.status < 400:
            base, _, frag = to.partition("#")
            base = base.partition("?")[0]
            return base + ("?" + q if q else "") + ("#" + frag if frag else "")
        if not q or "?" in to:
            return to
        base, hash_, frag = to.partition("#")
        return f"{base}?{q}{hash_}{frag}"

    @property
    def is_redirect(self) -> bool:
        return not self.denied and 300 <= self.status < 400

    @property
    def is_proxy(self) -> bool:
        """A non-redirect rule with an absolute target."""
        return (
            not self.denied and not 300 <= self.status < 400 and self.to.startswith(("http://", "https://"))
        )

    @property
    def is_rewrite(self) -> bool:
        """A non-redirect rule with a site-relative target (200, 404, ...)."""
        return not self.denied and not 300 <= self.status < 400 and self.to.startswith("/")

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "to": self.to,
            "location": self.location,
            "force": self.force,
            "denied": self.denied,
            "after_denial": self.after_denial,
            "rule": self.rule,
            "source": {"file": self.source.file, "line": self.source.line, "table": self.source.table},
        }


class RuleInfo(NamedTuple):
    """One compiled rule, as written."""

    rule: int
    source: Source
    from_: str
    to: str
    status: int
    force: bool
    text: str
    has_query: bool
    has_conditions: bool


class _RuleSetBase:
    """Loading, diagnostics and visitor context shared by both matchers."""

    _files: list[SourceFile]
    _diagnostics: tuple[Diagnostic, ...]
    _secret: bytes | None
    _claim: tuple[str, ...]
    _status: list[int]
    _force: list[bool]
    _static: list[bool]
    _where: list[tuple[int, int]]
    _sources: dict[int, Source]
    _lines: dict[int, list[bytes]]
    _infos: list[RuleInfo] | None
    memo: MatchMemo

    # ---- construction -----------------------------------------------------

    @classmethod
    def parse(
        cls: type[_T],
        text: str | bytes,
        *,
        filename: str = "_redirects",
        jwt_secret: str | bytes | None = None,
        jwt_role_claim: str = DEFAULT_ROLE_CLAIM,
        strict: bool = False,
        max_line: int = 0,
        max_rules: int = 0,
    ) -> _T:
        """Compile rules from text.

        Args:
            text: `_redirects` text, or netlify.toml text when ``filename`` ends in
                ``.toml``. Bytes are taken as UTF-8; invalid lines are reported.
            filename: name used in diagnostics and to pick the syntax.
            jwt_secret: HS256 secret for ``Role=`` conditions (none: roles never held).
            jwt_role_claim: dotted path of the roles claim in the token.
            strict: raise :class:`RuleSyntaxError` if any rule has an error.
            max_line, max_rules: limits (0 = defaults: 8,192 bytes, 1,000,000 rules).

        Returns:
            The compiled rule set. Invalid rules are skipped and reported in
            :attr:`diagnostics` (lenient mode).

        Raises:
            RuleSyntaxError: ``strict=True`` and an error was found.
            TypeError: ``text`` is neither str nor bytes.
        """
        if isinstance(text, str):
            data = text.encode("utf-8", "surrogatepass")
        elif isinstance(text, bytes | bytearray | memoryview):
            data = bytes(text)
        else:
            raise TypeError(f"rule text must be str or bytes, not {type(text).__name__}")
        src = toml_source(filename, data) if is_toml_name(filename) else redirects_source(filename, data)
        return cls._from_sources([src], jwt_secret, jwt_role_claim, strict, max_line, max_rules)

    @classmethod
    def from_file(cls: type[_T], path: str | os.PathLike[str], **options: Any) -> _T:
        """Compile one file; ``*.toml`` is read as netlify.toml, anything else as
        `_redirects`. Options are those of :meth:`parse`.

        Raises:
            RuleFileError: the file cannot be read.
        """
        p = Path(path)
        data = _read(p)
        return cls.parse(data, filename=str(path), **options)

    @classmethod
    def from_site(cls: type[_T], directory: str | os.PathLike[str], **options: Any) -> _T:
        """Compile a site: its `_redirects`, then its netlify.toml (spec R1.1).

        Either file may be missing. Options are those of :meth:`parse`.

        Raises:
            RuleFileError: ``directory`` is not a readable directory.
        """
        d = Path(directory)
        if not d.is_dir():
            raise RuleFileError(f"{directory}: not a directory")
        sources = []
        for name, make in (("_redirects", redirects_source), ("netlify.toml", toml_source)):
            p = d / name
            if p.exists():
                sources.append(make(str(p), _read(p)))
        return cls._from_sources(
            sources,
            options.pop("jwt_secret", None),
            options.pop("jwt_role_claim", DEFAULT_ROLE_CLAIM),
            options.pop("strict", False),
            options.pop("max_line", 0),
            options.pop("max_rules", 0),
            **options,
        )

    @classmethod
    def _from_sources(
        cls: type[_T],
        sources: list[SourceFile],
        jwt_secret: str | bytes | None,
        jwt_role_claim: str,
        strict: bool,
        max_line: int,
        max_rules: int,
        **unexpected: Any,
    ) -> _T:
        if unexpected:
            raise TypeError(f"unexpected options: {', '.join(sorted(unexpected))}")
        self = cls.__new__(cls)
        self._files = sources
        self._secret = jwt_secret.encode() if isinstance(jwt_secret, str) else jwt_secret
        self._claim = tuple(jwt_role_claim.split(".")) if jwt_role_claim else ()
        self._sources = {}
        self._lines = {}  # a `_redirects` file's lines, split once
        self._infos = None
        # Match results by request: RuleSet.match fills it (the reference matcher
        # never does); public to the edge core, which reads it without calling
        # ``match`` (MatchMemo.lookup).
        self.memo = MatchMemo()
        raw = self._compile(sources, max_line, max_rules)
        diags: list[Diagnostic] = []
        for s in sources:
            diags.extend(s.diagnostics)
        for severity, code, src_id, line, column, message in raw:
            diags.append(sources[src_id].diagnostic(severity, code, line, column, message))
        order = {s.name: i for i, s in enumerate(sources)}
        self._diagnostics = tuple(sort_diagnostics(diags, order))
        if strict and self.errors:
            self.close()
            raise RuleSyntaxError(self._diagnostics)
        return self

    def _compile(
        self, sources: list[SourceFile], max_line: int, max_rules: int
    ) -> list[tuple[int, str, int, int, int, str]]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # ---- introspection ----------------------------------------------------

    @property
    def diagnostics(self) -> tuple[Diagnostic, ...]:
        """Errors and warnings of the compile, ordered by file, line, column."""
        return self._diagnostics

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self._diagnostics if d.severity == "error")

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self._diagnostics if d.severity == "warning")

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(s.name for s in self._files)

    def __len__(self) -> int:
        return len(self._status)

    def lint(self) -> list[Diagnostic]:
        """All diagnostics plus the linter's warnings (``UNREACHABLE``, ``DUPLICATE_RULE``,
        ``UNUSED_PLACEHOLDER``), ordered by file, line and column."""
        from edgesim._lint import cross_rule_warnings

        extra = cross_rule_warnings(self._files)
        order = {s.name: i for i, s in enumerate(self._files)}
        return sort_diagnostics([*self._diagnostics, *extra], order)

    def source(self, rule: int) -> Source:
        """Where rule ``rule`` (0-based) is written."""
        s = self._sources.get(rule)
        if s is None:
            src_id, line = self._where[rule]
            s = self._sources[rule] = self._files[src_id].source(line)
        return s

    def rule_text(self, rule: int) -> str:
        """The rule as written: its `_redirects` line, or a TOML table summary."""
        src_id, line = self._where[rule]
        f = self._files[src_id]
        if f.kind == "redirects":
            lines = self._lines.get(src_id)
            if lines is None:  # once per file: rule_text of every rule stays linear
                lines = self._lines[src_id] = f.data.split(b"\n")
            text = lines[line - 1] if 0 < line <= len(lines) else b""
            return text.decode("utf-8", "replace").strip().lstrip("\ufeff")
        info = self.rules[rule]
        return f"from = {info.from_!r}, to = {info.to!r}, status = {info.status}" + (
            ", force = true" if info.force else ""
        )

    @property
    def rules(self) -> list[RuleInfo]:
        raise NotImplementedError

    def _with_texts(self, infos: list[RuleInfo]) -> list[RuleInfo]:
        """``infos`` (texts empty) with each rule's :meth:`rule_text`. A TOML rule's text
        is read from :attr:`rules`, so ``infos`` stand for them meanwhile."""
        self._infos = infos
        return [r._replace(text=self.rule_text(r.rule)) for r in infos]

    # ---- matching helpers -------------------------------------------------

    def _visitor(
        self,
        country: str | None,
        language: str | None,
        cookies: Mapping[str, str] | None,
        headers: HeadersLike | None,
        now: float | None,
    ) -> Visitor:
        return derive(
            country=country,
            language=language,
            cookies=cookies,
            headers=headers,
            now=now,
            jwt_secret=self._secret,
            role_claim=self._claim,
        )

    def _result(self, url: str, kind: int, rule: int, denied_by: int, target: str) -> Match:
        """Build the Match for a raw engine outcome (kind 1 match, 2 denied)."""
        if kind == 2:
            return Match(404, "", self._force[rule], self.source(rule), True, rule)
        q = url.find("?")
        query = "" if q < 0 else url[q + 1 :].partition("#")[0]
        return Match(
            self._status[rule],
            target,
            self._force[rule],
            self.source(rule),
            False,
            rule,
            query,
            denied_by >= 0,
        )

    def match(
        self,
        url: str,
        *,
        country: str | None = None,
        language: str | None = None,
        cookies: Mapping[str, str] | None = None,
        headers: HeadersLike | None = None,
        now: float | None = None,
    ) -> Match | None:
        raise NotImplementedError

    def match_unmemoised(
        self,
        url: str,
        country: str | None,
        language: str | None,
        cookies: Mapping[str, str] | None,
        headers: HeadersLike | None,
        now: float | None,
        cookie_and_language: tuple[str | None, str | None] | None = None,
    ) -> Match | None:
        """:meth:`match` with positional arguments, without reading or filling
        :attr:`memo`, for a caller that memoises results itself (the edge core, the
        origin's ``Deploy.resolve``). ``cookie_and_language``: the request's
        ``visitor_fields``, when the caller has them."""
        return self.match(url, country=country, language=language, cookies=cookies, headers=headers, now=now)

    def match_scoped(
        self,
        url: str,
        country: str | None,
        language: str | None,
        cookies: Mapping[str, str] | None,
        headers: HeadersLike | None,
        now: float | None,
        cookie_and_language: tuple[str | None, str | None] | None = None,
    ) -> tuple[Match | None, bool]:
        """:meth:`match_unmemoised`, and whether its answer is the visitor's own (false:
        every visitor gets the same answer for this URL, and callers may share it). A
        matcher that cannot tell says true, as here."""
        return self.match_unmemoised(url, country, language, cookies, headers, now, cookie_and_language), True

    def match_many(
        self,
        urls: Sequence[str],
        *,
        country: str | None = None,
        language: str | None = None,
        cookies: Mapping[str, str] | None = None,
        headers: HeadersLike | None = None,
        now: float | None = None,
    ) -> list[Match | None]:
        raise NotImplementedError

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read(p: Path) -> bytes:
    if is_special(p):
        raise RuleFileError(f"{p}: not a regular file (a FIFO or device), expected a rule file")
    try:
        return p.read_bytes()
    except IsADirectoryError:
        raise RuleFileError(f"{p}: is a directory, expected a rule file") from None
    except OSError as exc:
        raise RuleFileError(f"{p}: cannot read: {exc.strerror or exc}") from None


# --------------------------------------------------------------------------
# Native rule set
# --------------------------------------------------------------------------

_local = threading.local()
_new_match = tuple.__new__  # builds a Match without NamedTuple.__new__'s Python frame
_new_resolution = tuple.__new__


def _lib() -> Any:
    """The generated cffi module (imported on first use, so that importing this module
    never requires the compiled extension)."""
    from edgesim import _redirects_cffi

    return _redirects_cffi


class RuleSet(_RuleSetBase):
    """An immutable, compiled rule set backed by the native matcher.

    Create it with :meth:`parse`, :meth:`from_file` or :meth:`from_site`.

    Resource handling:
        The rule set owns one native handle, freed by :meth:`close` (also on leaving a
        ``with`` block) or, if never closed, by garbage collection. Closing while other
        threads are matching is safe: they finish, and the handle is freed after the
        last of them returns. Later calls raise ``ValueError``.

    Error handling:
        Invalid rules never raise (unless ``strict=True``): they are skipped and listed
        in :attr:`diagnostics`. An unusable URL raises ``ValueError``.
    """

    _h: Any
    _cache: list[Match | None]
    _srcs: list[Source]
    _info: list[tuple[int, bool, Source, bool]]
    _memory: int
    # The generated module, bound on first compile (class attributes: the hot paths
    # avoid an import statement per call).
    _ffi: Any = None
    _lib: Any = None

    def _compile(
        self, sources: list[SourceFile], max_line: int, max_rules: int
    ) -> list[tuple[int, str, int, int, int, str]]:
        m = _lib()
        ffi, lib = m.ffi, m.lib
        bp = ffi.new("esr_builder **")
        _check(lib.esr_builder_new(max_line, max_rules, bp))
        builder = ffi.gc(bp[0], lib.esr_builder_free)
        try:
            for src_id, src in enumerate(sources):
                if src.kind == "redirects":
                    _check(lib.esr_builder_add_text(builder, src_id, src.data, len(src.data)))
                else:
                    for index, record in src.records:
                        _check(lib.esr_builder_add_fields(builder, src_id, index, record, len(record)))
            rp = ffi.new("esr_ruleset **")
            _check(lib.esr_builder_compile(builder, rp))
            # The one owner of the compiled set: the gc wrapper of the pointer itself.
            self._h = handle = ffi.gc(rp[0], lib.esr_ruleset_free)
        finally:
            ffi.release(builder)
        n = lib.esr_ruleset_rule_count(handle)
        status = ffi.new("int32_t[]", n)
        flags = ffi.new("uint8_t[]", n)
        source = ffi.new("uint32_t[]", n)
        line = ffi.new("uint32_t[]", n)
        _check(lib.esr_ruleset_export(handle, status, flags, source, line, n))
        fl = ffi.unpack(flags, n)
        self._status = ffi.unpack(status, n)
        self._force = [bool(f & lib.ESR_RULE_FORCE) for f in fl]
        self._static = [bool(f & lib.ESR_RULE_TARGET_STATIC) for f in fl]
        self._where = list(zip(ffi.unpack(source, n), ffi.unpack(line, n), strict=True))
        self._srcs = _sources(sources, self._where)
        self._contexts: dict[tuple[str | None, ...], tuple[Any, tuple[Any, ...]]] = {}
        # One tuple per rule: the hot loops touch one list entry, not four.
        self._info = list(zip(self._status, self._force, self._srcs, self._static, strict=True))
        cls = type(self)
        cls._ffi, cls._lib = ffi, lib
        self._cache = [None] * n
        self._memory = lib.esr_ruleset_memory(handle)
        raw = []
        for i in range(lib.esr_ruleset_diag_count(handle)):
            d = lib.esr_ruleset_diag(handle, i)
            raw.append(
                (
                    d.severity,
                    ffi.string(lib.esr_diag_code_name(d.code)).decode(),
                    d.source,
                    d.line,
                    d.column,
                    ffi.string(d.message).decode("utf-8", "replace"),
                )
            )
        return raw

    def close(self) -> None:
        """Release the native rule set (idempotent; see "Resource handling")."""
        self._h = None
        self.memo.clear()  # the edge core reads it without the closed check of ``match``

    @property
    def closed(self) -> bool:
        return self._h is None

    @property
    def memory(self) -> int:
        """Heap bytes held by the native rule set."""
        return int(self._memory)

    @property
    def rules(self) -> list[RuleInfo]:
        """The compiled rules, as written."""
        if self._infos is None:
            h = self._handle()
            m = _lib()
            ffi, lib = m.ffi, m.lib
            info = ffi.new("esr_rule_info *")
            out = []
            for i in range(lib.esr_ruleset_rule_count(h)):
                lib.esr_ruleset_rule(h, i, info)
                out.append(
                    RuleInfo(
                        i,
                        self.source(i),
                        ffi.unpack(getattr(info, "from"), info.from_len).decode("utf-8", "replace"),
                        ffi.unpack(info.to, info.to_len).decode("utf-8", "replace"),
                        info.status,
                        bool(info.force),
                        "",
                        bool(info.has_query),
                        bool(info.has_conditions),
                    )
                )
            self._infos = self._with_texts(out)
        return self._infos

    def _handle(self) -> Any:
        h = self._h
        if h is None:
            raise ValueError("RuleSet is closed")
        return h

    def _native_context(
        self,
        country: str | None,
        language: str | None,
        cookies: Mapping[str, str] | None,
        headers: HeadersLike | None,
        now: float | None,
        cookie_and_language: tuple[str | None, str | None] | None = None,
    ) -> tuple[Any, tuple[Any, ...]]:
        """The native context for a request, memoised per (country, language, Cookie,
        Accept-Language) when no JWT is involved: visitors repeat, and deriving the
        context costs more than matching. A token's roles depend on ``now``, so requests
        with ``nf_jwt`` are derived every time. ``cookie_and_language``: the Cookie and
        Accept-Language values when the caller already read them from ``headers``."""
        if cookies is None:
            if cookie_and_language is not None:
                cookie_header, accept_language = cookie_and_language
            elif type(headers) is list:
                cookie_header, accept_language = _cookie_and_language(headers)
            else:
                cookie_header = header(headers, "cookie")
                accept_language = header(headers, "accept-language")
            if cookie_header is None or "nf_jwt" not in cookie_header:
                key = (country, language, cookie_header, accept_language)
                cache = self._contexts
                made = cache.get(key)
                if made is None:
                    made = self._context(self._visitor(country, language, None, headers, now))
                    if len(cache) >= _CONTEXT_CACHE:
                        cache.clear()
                    cache[key] = made
                return made
        return self._context(self._visitor(country, language, cookies, headers, now))

    def _context(self, visitor: Visitor) -> tuple[Any, tuple[Any, ...]]:
        """An ``esr_context`` for ``visitor`` plus the buffers it points into."""
        ffi = _lib().ffi
        country, language, cookies, roles = visitor
        ck = b"\0".join(sorted(cookies))
        rl = b"\0".join(sorted(roles))
        keep = (ffi.from_buffer(country), ffi.from_buffer(language), ffi.from_buffer(ck), ffi.from_buffer(rl))
        ctx = ffi.new("esr_context *")
        ctx.country, ctx.country_len = keep[0], len(country)
        ctx.language, ctx.language_len = keep[1], len(language)
        ctx.cookies, ctx.cookies_len = keep[2], len(ck)
        ctx.roles, ctx.roles_len = keep[3], len(rl)
        return ctx, (keep, country, language, ck, rl)

    def match(
        self,
        url: str,
        *,
        country: str | None = None,
        language: str | None = None,
        cookies: Mapping[str, str] | None = None,
        headers: HeadersLike | None = None,
        now: float | None = None,
    ) -> Match | None:
        """Match one request.

        Args:
            url: absolute ``http(s)://host/path?query`` or origin-form ``/path?query``.
            country: effective visitor country (else the ``nf_country`` cookie).
            language: effective language tag (else ``nf_lang``, else Accept-Language).
            cookies: request cookies (else parsed from the ``Cookie`` header).
            headers: request headers (``Cookie``, ``Accept-Language``).
            now: Unix time for JWT ``exp`` checks (default: the wall clock).

        Returns:
            The first matching rule as a :class:`Match`, a denial (``denied=True``,
            status 404), or None.

        Raises:
            ValueError: the rule set is closed, or ``url`` is not a URL or path.

        Results are memoised (a rule set never changes). An answer that no visitor
        condition decided (the matcher reached no rule with Country, Language, Cookie or
        Role conditions: :meth:`match_scoped`) is kept per URL, for every visitor. Any
        other is kept per (URL, country, language, Cookie, Accept-Language) when the
        visitor comes as country, language or a header list (cookies only from the
        headers) without ``nf_jwt``: only a token's roles depend on ``now``. A miss runs
        the native matcher; the memo holds at most 65,536 answers of each kind, then
        starts over.
        """
        memo = self.memo
        if type(url) is not str:
            return self.match_unmemoised(url, country, language, cookies, headers, now)
        hit = memo.shared(url)
        if hit is not _MISSING:
            if self._h is None:
                raise ValueError("RuleSet is closed")
            return hit  # type: ignore[no-any-return]
        key: tuple[str | None, ...] | None = None
        cl = None  # read once here, reused by the native context on a memo miss
        visitor = headers is not None or country is not None or language is not None
        if visitor and cookies is None and (headers is None or type(headers) is list):
            cl = visitor_fields(headers)
            if cl is not None:
                key = memo_key(url, country, language, cl)
                hit = memo.get(key)
                if hit is not _MISSING:
                    if self._h is None:
                        raise ValueError("RuleSet is closed")
                    return hit  # type: ignore[no-any-return]
        result, own = self.match_scoped(url, country, language, cookies, headers, now, cl)
        if not own:
            memo.share(url, result)
        elif key is not None:
            memo.put(key, result)
        return result

    def match_unmemoised(
        self,
        url: str,
        country: str | None,
        language: str | None,
        cookies: Mapping[str, str] | None,
        headers: HeadersLike | None,
        now: float | None,
        cookie_and_language: tuple[str | None, str | None] | None = None,
    ) -> Match | None:
        """One native match, without the memo (see :meth:`match`, and the base class;
        ``cookie_and_language`` as for ``_native_context``)."""
        return self.match_scoped(url, country, language, cookies, headers, now, cookie_and_language)[0]

    def match_scoped(
        self,
        url: str,
        country: str | None,
        language: str | None,
        cookies: Mapping[str, str] | None,
        headers: HeadersLike | None,
        now: float | None,
        cookie_and_language: tuple[str | None, str | None] | None = None,
    ) -> tuple[Match | None, bool]:
        """:meth:`match_unmemoised`, and whether its answer is the visitor's own: the
        native matcher reports whether it reached a rule with Country, Language, Cookie
        or Role conditions (``esr_result.context_used``). When it did not, every visitor
        gets this answer for ``url``."""
        h = self._h  # held for the whole call: see the module docstring
        if h is None:
            raise ValueError("RuleSet is closed")
        ffi, lib = self._ffi, self._lib
        if country is None and language is None and cookies is None and headers is None:
            ctx: Any = ffi.NULL
        else:
            ctx, _keep = self._native_context(country, language, cookies, headers, now, cookie_and_language)
        try:
            ub = url.encode()
        except UnicodeEncodeError:
            ub = url.encode("utf-8", "surrogatepass")
        except AttributeError:
            raise TypeError(f"url must be a str, not {type(url).__name__}") from None
        try:
            res, buf = _local.res, _local.buf
        except AttributeError:
            res, buf = _local.res, _local.buf = ffi.new("esr_result *"), ffi.new("char[]", _TARGET_BUF)
        rc = lib.esr_ruleset_match(h, ub, len(ub), ctx, res, buf, _TARGET_BUF)
        if rc:
            if rc != lib.ESR_ERANGE:
                raise ValueError(f"not an http(s) URL or an absolute path: {url!r}")
            buf = ffi.new("char[]", res.target_len)
            _check(lib.esr_ruleset_match(h, ub, len(ub), ctx, res, buf, res.target_len))
        own = res.context_used != 0
        kind = res.kind
        if not kind:
            return None, own
        rule = res.rule
        status, force, src, static = self._info[rule]
        if kind == 2:
            return _new_match(Match, (404, "", force, src, True, rule, "", False)), own
        after = res.denied_by >= 0
        q = url.find("?")
        if q < 0 and static and not after:
            hit: Match | None = self._cache[rule]
            if hit is not None:
                return hit, own
        target = ffi.unpack(buf, res.target_len).decode("utf-8", "surrogateescape")
        if q < 0:
            result: Match = _new_match(Match, (status, target, force, src, False, rule, "", after))
            if static and not after:
                self._cache[rule] = result
        else:
            query = url[q + 1 :].partition("#")[0]
            result = _new_match(Match, (status, target, force, src, False, rule, query, after))
        return result, own

    def match_many(
        self,
        urls: Sequence[str],
        *,
        country: str | None = None,
        language: str | None = None,
        cookies: Mapping[str, str] | None = None,
        headers: HeadersLike | None = None,
        now: float | None = None,
    ) -> list[Match | None]:
        """Match many requests sharing one visitor context, in one native call.

        Returns a list aligned with ``urls``; each entry equals what :meth:`match`
        returns for that URL. Raises ``ValueError`` if any URL is unusable.
        """
        h = self._h  # held for the whole call: see the module docstring
        if h is None:
            raise ValueError("RuleSet is closed")
        n = len(urls)
        if not n:
            return []
        ffi, lib = self._ffi, self._lib
        if country is None and language is None and cookies is None and headers is None:
            ctx: Any = ffi.NULL
        else:
            ctx, _keep = self._native_context(country, language, cookies, headers, now)
        try:
            joined = "\n".join(urls)
        except TypeError:
            raise TypeError("urls must be a sequence of str") from None
        data = joined.encode("utf-8", "surrogatepass")
        if data.count(b"\n") != n - 1:  # a URL with a raw newline: go one by one
            return [
                self.match(u, country=country, language=language, cookies=cookies, headers=headers, now=now)
                for u in urls
            ]
        kinds = ffi.new("int8_t[]", n)
        rules = ffi.new("int32_t[]", n)
        ends = ffi.new("uint32_t[]", n)
        cap = min(len(data) * 3 + 64 * n + 4096, 1 << 31)
        out = ffi.new("char[]", cap)
        src = ffi.from_buffer(data)
        done, pos = 0, 0
        pieces: list[tuple[int, int, bytes]] = []  # (first URL, end URL, their target bytes)
        while done < n:
            k = lib.esr_ruleset_match_batch(
                h,
                src + pos,
                len(data) - pos,
                n - done,
                ctx,
                kinds + done,
                rules + done,
                ends + done,
                out,
                cap,
            )
            if k == lib.ESR_ERANGE:  # one target larger than the whole buffer
                cap *= 4
                out = ffi.new("char[]", cap)
                continue
            if k < 0:
                raise ValueError("invalid arguments to the batch matcher")
            used = ends[done + k - 1] if k else 0
            pieces.append((done, done + k, ffi.buffer(out, used)[:]))
            done += k
            if done < n:  # the output buffer filled up: skip the URLs already done
                for _ in range(k):
                    pos = data.index(b"\n", pos) + 1
        kl = ffi.unpack(kinds, n)
        if -1 in kl:
            bad = urls[kl.index(-1)]
            raise ValueError(f"not an http(s) URL or an absolute path: {bad!r}")
        rl = ffi.unpack(rules, n)
        el = ffi.unpack(ends, n)
        info, cache = self._info, self._cache
        # Pass 1: static targets without a query reuse the rule's cached Match (most hits).
        results: list[Match | None] = [
            cache[r] if k == 1 and "?" not in u else None for k, r, u in zip(kl, rl, urls, strict=True)
        ]
        # Pass 2: build the rest from the target bytes.
        todo = [i for i, k in enumerate(kl) if k and results[i] is None]
        t_i = 0
        for first, last, blob in pieces:
            text = blob.decode("utf-8", "surrogateescape")
            exact = blob.isascii()  # then str offsets equal byte offsets
            while t_i < len(todo) and todo[t_i] < last:
                i = todo[t_i]
                t_i += 1
                kind = kl[i]
                rule = rl[i]
                status, force, src, static = info[rule]
                if kind == 2:
                    results[i] = _new_match(Match, (404, "", force, src, True, rule, "", False))
                    continue
                end = el[i]
                start = el[i - 1] if i > first else 0
                t = text[start:end] if exact else blob[start:end].decode("utf-8", "surrogateescape")
                url = urls[i]
                q = url.find("?")
                if q < 0:
                    m = _new_match(Match, (status, t, force, src, False, rule, "", kind == 3))
                    if static and kind == 1:
                        cache[rule] = m
                else:
                    query = url[q + 1 :].partition("#")[0]
                    m = _new_match(Match, (status, t, force, src, False, rule, query, kind == 3))
                results[i] = m
        return results


def _sources(files: list[SourceFile], where: list[tuple[int, int]]) -> list[Source]:
    """One :class:`Source` per rule, built in bulk (10,000 rules: about a millisecond)."""
    make = tuple.__new__
    redirects = [f.kind == "redirects" for f in files]
    names = [f.name for f in files]
    return [make(Source, (names[s], line, 0)) if redirects[s] else files[s].source(line) for s, line in where]


def _check(rc: int) -> int:
    if rc >= 0:
        return rc
    lib = _lib().lib
    if rc == lib.ESR_ENOMEM:
        raise MemoryError("native rule matcher: out of memory")
    raise ValueError(_lib().ffi.string(lib.esr_strerror(rc)).decode())


# --------------------------------------------------------------------------
# Reference rule set (pure Python)
# --------------------------------------------------------------------------


class ReferenceRuleSet(_RuleSetBase):
    """The pure-Python reference matcher behind the :class:`RuleSet` API.

    Linear, simple and slow on purpose: it is the oracle that differential tests compare
    the native matcher with, and the baseline of ``edgesim redirects bench``.
    """

    _engine: Any

    def _compile(
        self, sources: list[SourceFile], max_line: int, max_rules: int
    ) -> list[tuple[int, str, int, int, int, str]]:
        from edgesim._reference import ReferenceEngine

        eng = ReferenceEngine(max_line or 8192, max_rules or 1_000_000)
        for src_id, src in enumerate(sources):
            if src.kind == "redirects":
                eng.add_text(src_id, src.data)
            else:
                for index, record in src.records:
                    eng.add_fields(src_id, index, record)
        eng.compile()
        self._engine = eng
        self._status = [r.status for r in eng.rules]
        self._force = [bool(r.force) for r in eng.rules]
        self._static = [bool(r.target_static) for r in eng.rules]
        self._where = [(r.source, r.line) for r in eng.rules]
        return list(eng.diagnostics)

    def close(self) -> None:
        self._engine = None

    @property
    def rules(self) -> list[RuleInfo]:
        if self._infos is None:
            eng = self._engine
            if eng is None:
                raise ValueError("RuleSet is closed")
            out = [
                RuleInfo(
                    i,
                    self.source(i),
                    r.from_text,
                    r.to_text,
                    r.status,
                    bool(r.force),
                    "",
                    bool(r.has_query),
                    bool(r.has_conditions),
                )
                for i, r in enumerate(eng.rules)
            ]
            self._infos = self._with_texts(out)
        return self._infos

    def match(
        self,
        url: str,
        *,
        country: str | None = None,
        language: str | None = None,
        cookies: Mapping[str, str] | None = None,
        headers: HeadersLike | None = None,
        now: float | None = None,
    ) -> Match | None:
        """Same contract as :meth:`RuleSet.match`."""
        eng = self._engine
        if eng is None:
            raise ValueError("RuleSet is closed")
        if country is None and language is None and cookies is None and headers is None:
            visitor = None
        else:
            visitor = self._visitor(country, language, cookies, headers, now)
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, not {type(url).__name__}")
        try:
            kind, rule, denied_by, target = eng.match(url.encode("utf-8", "surrogatepass"), visitor)
        except ValueError:
            raise ValueError(f"not an http(s) URL or an absolute path: {url!r}") from None
        if not kind:
            return None
        return self._result(url, kind, rule, denied_by, target.decode("utf-8", "surrogateescape"))

    def match_many(
        self,
        urls: Sequence[str],
        *,
        country: str | None = None,
        language: str | None = None,
        cookies: Mapping[str, str] | None = None,
        headers: HeadersLike | None = None,
        now: float | None = None,
    ) -> list[Match | None]:
        """Same contract as :meth:`RuleSet.match_many`."""
        return [
            self.match(u, country=country, language=language, cookies=cookies, headers=headers, now=now)
            for u in urls
        ]


# --------------------------------------------------------------------------
# Shadowing and files (spec §2.9, R2.20, R2.25, R2.26); the path and file helpers
# are edgesim._reqfields's, compiled with the cores
# --------------------------------------------------------------------------


class Resolution(NamedTuple):
    """What a site answers for a request once rules and files are applied.

    ``action`` is ``"file"`` (serve ``target``, a file path), ``"rewrite"`` (serve file
    ``target`` with ``status``), ``"redirect"`` (``target`` is the Location),
    ``"proxy"`` (``target`` is the upstream URL), ``"function"`` (a rewrite to
    ``/.netlify/functions/...``; ``target`` carries the request's own query), or
    ``"not_found"`` (``target`` is the site's 404 page, or empty).
    """

    action: str
    status: int
    target: str
    match: Match | None = None


def resolve(
    rules: _RuleSetBase | None,
    url: str,
    *,
    exists: Callable[[str], bool],
    match: Match | None = None,
    **visitor: Any,
) -> Resolution:
    """Apply rules, shadowing and pretty URLs to one request (spec R2.20).

    Args:
        rules: the site's rules, or None.
        url: the request URL or path.
        exists: whether a decoded file path exists in the deploy.
        match: a match already computed for ``url`` (skips matching).
        visitor: keyword arguments for :meth:`RuleSet.match`.
    """
    return _new_resolution(Resolution, resolution_fields(rules, url, exists, match, visitor))
