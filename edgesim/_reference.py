"""Pure-Python reference matcher for edgesim redirect and rewrite rules.

This module is the differential oracle for the native matcher (``native/``) and
the slow baseline in benchmarks. It implements docs/redirects.md directly and
mirrors the builder/match model of ``native/include/esr.h``:

* A :class:`ReferenceEngine` is a builder. ``add_text`` parses ``_redirects``
  text line by line (BOM, length and encoding checks, whitespace tokenising,
  role assignment of the tokens), ``add_fields`` takes one structured record
  (the netlify.toml path). Both end in the same per-rule validation
  (:meth:`ReferenceEngine._build`), which either records exactly one error and
  skips the rule, or appends a :class:`RefRule` and records its warnings.
* ``compile`` freezes the builder. ``match`` then canonicalises the request
  path once and tries every rule in order (the plain linear algorithm of
  R2.11): scheme/host, path pattern, query pairs, the Role check (denials are
  remembered), the other conditions; the first full match wins and its target
  is built in one left-to-right substitution pass.

Everything is bytes. Columns are counted in UTF-8 code points; diagnostics are
kept ordered by (source, line, column), stably.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "CODE_NUMBERS",
    "DENIED",
    "MATCH",
    "NO_MATCH",
    "SEV_ERROR",
    "SEV_WARNING",
    "Context",
    "Diagnostic",
    "RefPattern",
    "RefRule",
    "ReferenceEngine",
    "canonicalize_path",
    "form_decode",
    "query_escape",
]

SEV_WARNING = 1
SEV_ERROR = 2

NO_MATCH = 0
MATCH = 1
DENIED = 2

#: Diagnostic code names and their numbers in esr.h.
CODE_NUMBERS: dict[str, int] = {
    "MISSING_TO": 1,
    "BAD_TARGET": 2,
    "BAD_STATUS": 3,
    "BAD_FROM": 4,
    "RESERVED_PATH": 5,
    "SPLAT_NOT_AT_END": 6,
    "BAD_QUERY_PAIR": 7,
    "UNKNOWN_CONDITION": 8,
    "BAD_CONDITION": 9,
    "BAD_FIELD_TYPE": 10,
    "TOML_SYNTAX": 11,
    "NOT_AN_ARRAY": 12,
    "LINE_TOO_LONG": 13,
    "TOO_MANY_RULES": 14,
    "BAD_ENCODING": 15,
    "SELF_REDIRECT": 32,
    "TRAILING_SLASH_ONLY": 33,
    "STATUS_NOT_ON_NETLIFY": 34,
    "NONCANONICAL_KEY": 35,
    "PLACEHOLDER_NAME": 36,
    "UNBOUND_REFERENCE": 37,
    "DUPLICATE_PLACEHOLDER": 38,
    "UNREACHABLE": 39,
    "DUPLICATE_RULE": 40,
    "BOM": 41,
    "HEADERS_ON_NON_PROXY": 42,
    "EMPTY_FROM_PATH": 43,
    "FROM_NO_SLASH": 44,
    "OPEN_REDIRECT": 45,
}

#: (severity, code name, source, line, column, message)
Diagnostic = tuple[int, str, int, int, int, str]
#: (country, language, cookie names with non-empty values, roles)
Context = tuple[bytes, bytes, frozenset[bytes], frozenset[bytes]]
#: (kind, rule, denied_by, target)
MatchResult = tuple[int, int, int, bytes]

DEFAULT_MAX_LINE = 8192
DEFAULT_MAX_RULES = 1_000_000
MESSAGE_MAX = 159  # bytes, as esr_diag.message without its NUL

_BOM = b"\xef\xbb\xbf"
_DIGITS = b"0123456789"
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_REDIRECT_STATUSES = frozenset((301, 302, 303, 307, 308))

# Canonical path encoding: a %XX escape, or any byte that is neither
# unreserved, a sub-delim, ":", "@" nor "/" (a lone "%" falls in the latter).
_CANON_RE = re.compile(rb"%[0-9A-Fa-f]{2}|[^A-Za-z0-9\-._~!$&'()*+,;=:@/]")
_FORM_RE = re.compile(rb"\+|%[0-9A-Fa-f]{2}")
_QUERY_ESCAPE_RE = re.compile(rb"[^A-Za-z0-9\-._~]")
_TOKEN_RE = re.compile(rb":([A-Za-z0-9_]+)")
_NAME_RE = re.compile(rb"[A-Za-z0-9_]+")
_WORD_RE = re.compile(rb"[^ \t\r\x0b\x0c]+")
_CONTROL_RE = re.compile(rb"[\x00-\x08\x0e-\x1f\x7f]")
_SCHEME_RE = re.compile(rb"[A-Za-z][A-Za-z0-9+.\-]*://")
_HOST_RE = re.compile(rb"([A-Za-z0-9._\-]+)(?::([0-9]+))?")
_TEXT_STATUS_RE = re.compile(rb"([0-9]+)(!?)")
_RECORD_STATUS_RE = re.compile(rb"[0-9]+")

_CONDITION_KEYS: dict[bytes, str] = {
    b"country": "Country",
    b"language": "Language",
    b"role": "Role",
    b"cookie": "Cookie",
    b"sign": "Sign",
    b"signed": "signed",
}
_MATCH_CONDITIONS = frozenset(("Country", "Language", "Role", "Cookie"))
_RECORD_TAGS = frozenset(b"FTS!QCHG")
_TARGET_PREFIXES = (b"/", b"http://", b"https://")


# ---- encodings ---------------------------------------------------------------


def _canon_escape(m: re.Match[bytes]) -> bytes:
    s = m.group()
    if len(s) == 3:
        value = int(s[1:], 16)
        if value in _UNRESERVED:
            return bytes((value,))
        return b"%%%02X" % value
    return b"%%%02X" % s[0]


def canonicalize_path(path: bytes) -> bytes:
    """Return the canonical percent-encoding of a path (docs: "Canonical form")."""
    return _CANON_RE.sub(_canon_escape, path)


def _form_unescape(m: re.Match[bytes]) -> bytes:
    s = m.group()
    if s == b"+":
        return b" "
    return bytes((int(s[1:], 16),))


def form_decode(value: bytes) -> bytes:
    """Form-decode a query value: ``+`` is a space, ``%XX`` decoded, bad escapes kept."""
    return _FORM_RE.sub(_form_unescape, value)


def _query_escape_byte(m: re.Match[bytes]) -> bytes:
    byte = m.group()[0]
    if byte == 0x20:
        return b"+"
    return b"%%%02X" % byte


def query_escape(value: bytes) -> bytes:
    """Escape a decoded query capture: unreserved kept, space ``+``, else ``%XX``."""
    return _QUERY_ESCAPE_RE.sub(_query_escape_byte, value)


def _text(raw: bytes) -> str:
    """Lossless bytes → str for rule fields (invalid UTF-8 as surrogate escapes)."""
    return raw.decode("utf-8", "surrogateescape")


def _quote(raw: bytes, limit: int = 48) -> str:
    """A token quoted for a diagnostic message, shortened."""
    text = raw.decode("utf-8", "replace")
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return '"' + text + '"'


def _clip_message(message: str) -> str:
    data = message.encode("utf-8")
    if len(data) <= MESSAGE_MAX:
        return message
    return data[:MESSAGE_MAX].decode("utf-8", "ignore")


def _normalize_host(name: bytes, port: bytes | None, scheme: bytes) -> bytes:
    """Lower case, one trailing dot removed, the scheme's default port dropped."""
    name = name.lower()
    if name.endswith(b"."):
        name = name[:-1]
    if port is None or (scheme == b"http" and port == b"80") or (scheme == b"https" and port == b"443"):
        return name
    return name + b":" + port


def _strip_one_slash(path: bytes) -> bytes:
    if len(path) > 1 and path.endswith(b"/"):
        return path[:-1]
    return path


def _placeholder_name(segment: bytes) -> bytes | None:
    """The name of a placeholder segment (``:name``), or None for a literal."""
    if len(segment) > 1 and segment[0] == 0x3A:
        return segment[1:]
    return None


def _absolute_host(to: bytes) -> bytes | None:
    """The host text of an absolute ``http(s)://`` target, else None."""
    for prefix in (b"http://", b"https://"):
        if to.startswith(prefix):
            rest = to[len(prefix) :]
            end = len(rest)
            for stop in b"/?#":
                at = rest.find(bytes((stop,)))
                if 0 <= at < end:
                    end = at
            return rest[:end]
    return None


# ---- rules -------------------------------------------------------------------


@dataclass(slots=True)
class RefPattern:
    """A compiled ``from`` path.

    ``segments`` are the segments matched one for one (``names`` holds the
    placeholder name of each, or None for a literal). Without a splat they are
    the whole rule path (one trailing ``/`` removed). With a splat they are the
    segments of the text before ``*``; ``prefix`` is None when that text ends
    in ``/`` (``/news/*``), else the literal last segment that the request must
    continue (``/x/ab*`` → prefix ``ab``).
    """

    path: bytes
    segments: tuple[bytes, ...]
    names: tuple[bytes | None, ...]
    splat: bool
    prefix: bytes | None

    @classmethod
    def compile(cls, canonical: bytes) -> RefPattern:
        prefix: bytes | None = None
        if canonical.endswith(b"*"):
            before = canonical[:-1]
            if before.endswith(b"/"):
                segments = before[:-1].split(b"/")
            else:
                parts = before.split(b"/")
                segments, prefix = parts[:-1], parts[-1]
            splat = True
        else:
            segments = _strip_one_slash(canonical).split(b"/")
            splat = False
        names = tuple(_placeholder_name(s) for s in segments)
        return cls(canonical, tuple(segments), names, splat, prefix)

    @property
    def placeholders(self) -> list[bytes]:
        return [n for n in self.names if n is not None]

    def _match_segments(self, request: list[bytes], captures: list[tuple[bytes, bytes]]) -> bool:
        for literal, name, seg in zip(self.segments, self.names, request, strict=False):
            if name is None:
                if literal != seg:
                    return False
            elif not seg:
                return False
            else:
                captures.append((name, seg))
        return True

    def match(
        self, path: bytes, stripped_segments: list[bytes], segments: list[bytes]
    ) -> tuple[list[tuple[bytes, bytes]], bytes | None] | None:
        """Match a canonical request path.

        ``segments`` is ``path`` split on ``/``; ``stripped_segments`` the same
        after one trailing ``/`` was removed. Returns (placeholder captures in
        order, splat capture or None), or None when the path does not match.
        """
        captures: list[tuple[bytes, bytes]] = []
        n = len(self.segments)
        if not self.splat:
            if len(stripped_segments) != n or not self._match_segments(stripped_segments, captures):
                return None
            return captures, None
        if self.prefix is None:
            if len(segments) < n or not self._match_segments(segments, captures):
                return None
            consumed = sum(len(s) for s in segments[:n]) + n - 1
            rest = path[consumed:]
            return captures, rest[1:]
        if len(segments) <= n or not self._match_segments(segments, captures):
            return None
        consumed = sum(len(s) for s in segments[:n]) + n - 1
        tail = path[consumed + 1 :]
        if not tail.startswith(self.prefix):
            return None
        rest = tail[len(self.prefix) :]
        if rest.startswith(b"/"):
            rest = rest[1:]
        return captures, rest


@dataclass(slots=True)
class RefRule:
    """One accepted rule (the fields of esr_rule_info and what matching needs)."""

    from_text: str
    to_text: str
    status: int
    force: bool
    source: int
    line: int
    has_query: bool
    has_conditions: bool
    has_role: bool
    dynamic: bool
    target_static: bool
    headers: list[tuple[str, str]]
    signed: str | None
    host: str | None
    scheme: str | None
    pattern: RefPattern
    from_bytes: bytes
    to_bytes: bytes
    host_bytes: bytes | None
    scheme_bytes: bytes | None
    #: (key, value, is_capture): a literal value is stored form-decoded,
    #: a capture as its name.
    query: tuple[tuple[bytes, bytes, bool], ...]
    #: (Country | Language | Cookie | Role, values); Country and Language
    #: values are stored in lower case. Repeated keys are separate entries.
    conditions: tuple[tuple[str, tuple[bytes, ...]], ...]

    @property
    def is_redirect(self) -> bool:
        return self.status in _REDIRECT_STATUSES

    @property
    def is_proxy(self) -> bool:
        return not self.is_redirect and _absolute_host(self.to_bytes) is not None


# ---- building --------------------------------------------------------------------


class _Reject(Exception):
    """One error for the rule being built (the rule is skipped)."""

    def __init__(self, code: str, column: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.column = column
        self.message = message


@dataclass(slots=True)
class _Item:
    """A query pair or condition of a draft: key and value, or ``key is None``
    when the text token had no ``=``."""

    token: bytes
    key: bytes | None
    value: bytes
    column: int


@dataclass(slots=True)
class _Draft:
    """A rule as read from a line or a record, before validation."""

    from_raw: bytes
    from_column: int
    to_raw: bytes | None = None  # None: forward rule (to derived from from)
    to_column: int = 1  # forward rules report target warnings at from's column
    status_raw: bytes | None = None  # None: default 301
    status_column: int = 1
    status_bang: bool = True  # `_redirects` syntax: a "!" suffix means force
    force: bool = False
    queries: list[_Item] = field(default_factory=list)
    conditions: list[_Item] = field(default_factory=list)
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    signed: bytes | None = None
    signed_column: int = 1


@dataclass(slots=True)
class _From:
    scheme: bytes | None
    host: bytes | None
    canonical: bytes
    pattern: RefPattern
    warnings: list[tuple[str, str]]


def _parse_from(raw: bytes, column: int) -> _From:
    warnings: list[tuple[str, str]] = []
    scheme: bytes | None = None
    host: bytes | None = None
    if not raw:
        raise _Reject("BAD_FROM", column, "empty from")
    scheme_match = _SCHEME_RE.match(raw)
    if scheme_match is not None:
        scheme = raw[: scheme_match.end() - 3].lower()
        if scheme not in (b"http", b"https"):
            raise _Reject("BAD_FROM", column, f"unsupported scheme in from {_quote(raw)}")
        rest = raw[scheme_match.end() :]
        slash = rest.find(b"/")
        host_text, path = (rest, b"") if slash < 0 else (rest[:slash], rest[slash:])
        host_match = _HOST_RE.fullmatch(host_text)
        if host_match is None:
            raise _Reject("BAD_FROM", column, f"invalid host {_quote(host_text)} in from")
        host = _normalize_host(host_match.group(1), host_match.group(2), scheme)
        if not path:
            path = b"/"
            warnings.append(("EMPTY_FROM_PATH", f"from {_quote(raw)} has no path; it means /"))
    elif raw.startswith(b"//"):
        raise _Reject("BAD_FROM", column, f"from {_quote(raw)} has no scheme; write http:// or https://")
    elif not raw.startswith(b"/"):
        path = b"/" + raw
        warnings.append(("FROM_NO_SLASH", f"from {_quote(raw)} does not start with /; / was prepended"))
    else:
        path = raw
    canonical = canonicalize_path(path)
    if canonical == b"/.netlify" or canonical.startswith(b"/.netlify/"):
        raise _Reject("RESERVED_PATH", column, f"path {_quote(canonical)} is reserved (/.netlify)")
    star = canonical.find(b"*")
    if star >= 0 and star != len(canonical) - 1:
        raise _Reject(
            "SPLAT_NOT_AT_END", column, f"splat * must be the last character of {_quote(canonical)}"
        )
    pattern = RefPattern.compile(canonical)
    seen: set[bytes] = set()
    bad_names: list[bytes] = []
    duplicates: list[bytes] = []
    for name in pattern.placeholders:
        if _NAME_RE.fullmatch(name) is None and name not in bad_names:
            bad_names.append(name)
        if name in seen and name not in duplicates:
            duplicates.append(name)
        seen.add(name)
    for name in bad_names:
        warnings.append(("PLACEHOLDER_NAME", f"placeholder {_quote(b':' + name)} can never be substituted"))
    for name in duplicates:
        warnings.append(
            (
                "DUPLICATE_PLACEHOLDER",
                f"placeholder {_quote(b':' + name)} is used twice; the first wins",
            )
        )
    return _From(scheme, host, canonical, pattern, warnings)


def _parse_status(draft: _Draft) -> tuple[int, bool]:
    """(status, force from "!") of a draft; raises BAD_STATUS."""
    raw = draft.status_raw
    if raw is None:
        return 301, False
    if draft.status_bang:
        m = _TEXT_STATUS_RE.fullmatch(raw)
        digits, bang = (m.group(1), m.group(2) == b"!") if m is not None else (b"", False)
    else:
        m = _RECORD_STATUS_RE.fullmatch(raw)
        digits, bang = (raw, False) if m is not None else (b"", False)
    if not digits:
        raise _Reject("BAD_STATUS", draft.status_column, f"invalid status {_quote(raw)}")
    significant = digits.lstrip(b"0")
    value = int(significant) if 0 < len(significant) <= 3 else (0 if not significant else 1000)
    if not (200 <= value <= 299 or value in _REDIRECT_STATUSES or 400 <= value <= 599):
        raise _Reject("BAD_STATUS", draft.status_column, f"status {_quote(raw)} is not a valid status")
    return value, bang


def _query_pair(item: _Item) -> tuple[bytes, bytes, bool]:
    if item.key is None or not item.key:
        raise _Reject("BAD_QUERY_PAIR", item.column, f"query parameter {_quote(item.token)} is not key=value")
    if len(item.value) > 1 and item.value[0] == 0x3A:
        return item.key, item.value[1:], True
    return item.key, form_decode(item.value), False


def _condition(item: _Item) -> tuple[str, tuple[bytes, ...], bool]:
    """(canonical key, values, written canonically) of a condition."""
    if item.key is None or not item.key:
        raise _Reject("BAD_CONDITION", item.column, f"condition {_quote(item.token)} is not Key=value")
    canonical = _CONDITION_KEYS.get(item.key.lower())
    if canonical is None:
        raise _Reject("UNKNOWN_CONDITION", item.column, f"unknown condition {_quote(item.key)}")
    value = item.value
    if not value:
        raise _Reject("BAD_CONDITION", item.column, f"condition {_quote(item.token)} has an empty value")
    if b"=" in value:
        raise _Reject("BAD_CONDITION", item.column, f"condition {_quote(item.token)} has a second =")
    values = tuple(value.split(b","))
    if any(not v for v in values):
        raise _Reject("BAD_CONDITION", item.column, f"condition {_quote(item.token)} has an empty list item")
    if canonical in ("Sign", "signed") and len(values) != 1:
        raise _Reject("BAD_CONDITION", item.column, f"{canonical} takes one variable name, not a list")
    return canonical, values, item.key.decode("latin-1") == canonical


class ReferenceEngine:
    """Builder and linear matcher with the model of esr.h (see module docstring)."""

    def __init__(self, max_line: int = DEFAULT_MAX_LINE, max_rules: int = DEFAULT_MAX_RULES) -> None:
        if max_line < 0 or max_rules < 0:
            raise ValueError("limits must not be negative")
        self.max_line = max_line or DEFAULT_MAX_LINE
        self.max_rules = max_rules or DEFAULT_MAX_RULES
        self._diagnostics: list[Diagnostic] = []
        self._unsorted = False
        self.rules: list[RefRule] = []
        self._compiled = False
        self._full = False  # TOO_MANY_RULES was reported: loading has stopped

    # -- builder ------------------------------------------------------------

    def _check_open(self) -> None:
        if self._compiled:
            raise RuntimeError("the engine is compiled; no more rules can be added")

    @property
    def diagnostics(self) -> list[Diagnostic]:
        """All diagnostics so far, ordered by (source, line, column), stably."""
        if self._unsorted:
            self._diagnostics.sort(key=lambda d: (d[2], d[3], d[4]))
            self._unsorted = False
        return self._diagnostics

    def _diag(self, severity: int, code: str, source: int, line: int, column: int, message: str) -> None:
        self._diagnostics.append((severity, code, source, line, column, _clip_message(message)))
        self._unsorted = True

    def add_text(self, source: int, data: bytes) -> int:
        """Parse ``_redirects`` text; returns the number of rules accepted."""
        self._check_open()
        if self._full:
            return 0
        accepted = 0
        if data.startswith(_BOM):
            data = data[len(_BOM) :]
            self._diag(SEV_WARNING, "BOM", source, 1, 1, "UTF-8 byte order mark removed")
        for number, line in enumerate(data.split(b"\n"), 1):
            if len(line) > self.max_line:
                self._diag(
                    SEV_ERROR,
                    "LINE_TOO_LONG",
                    source,
                    number,
                    1,
                    f"line is {len(line)} bytes, over the limit of {self.max_line}",
                )
                continue
            bad = self._check_encoding(line)
            if bad is not None:
                column, message = bad
                self._diag(SEV_ERROR, "BAD_ENCODING", source, number, column, message)
                continue
            tokens = self._tokenize(line)
            if not tokens:
                continue
            accepted += self._add_line(source, number, tokens)
            if self._full:
                break
        return accepted

    @staticmethod
    def _check_encoding(line: bytes) -> tuple[int, str] | None:
        """(column, message) of the first bad byte of a line, or None."""
        end = len(line)
        message = ""
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            end = exc.start
            message = "invalid UTF-8"
        control = _CONTROL_RE.search(line, 0, end)
        if control is not None:
            end = control.start()
            byte = line[end]
            message = "NUL byte" if byte == 0 else f"control byte 0x{byte:02X}"
        if not message:
            return None
        return len(line[:end].decode("utf-8")) + 1, message

    @staticmethod
    def _tokenize(line: bytes) -> list[tuple[bytes, int]]:
        """Tokens of a valid line with their columns, up to the first #-token."""
        tokens: list[tuple[bytes, int]] = []
        offset, column = 0, 1
        for m in _WORD_RE.finditer(line):
            token = m.group()
            if token.startswith(b"#"):
                break
            column += len(line[offset : m.start()].decode("utf-8"))
            offset = m.start()
            tokens.append((token, column))
        return tokens

    def _add_line(self, source: int, line: int, tokens: list[tuple[bytes, int]]) -> int:
        from_raw, from_column = tokens[0]
        try:
            parsed_from = _parse_from(from_raw, from_column)
            if len(tokens) == 1:
                raise _Reject("MISSING_TO", from_column, f"rule {_quote(from_raw)} has no target")
            second = tokens[1][0]
            draft = _Draft(from_raw, from_column, to_column=from_column)
            if second[0] in _DIGITS or (len(second) > 1 and second[0] in b"+-" and second[1] in _DIGITS):
                # Forward rule: FROM STATUS CONDITION...
                draft.status_raw, draft.status_column = tokens[1]
                rest = tokens[2:]
            else:
                # FROM QUERY-PAIR... TO [STATUS [CONDITION...]]
                at = next(
                    (i for i in range(1, len(tokens)) if tokens[i][0].startswith(_TARGET_PREFIXES)),
                    None,
                )
                if at is None:
                    raise _Reject(
                        "BAD_TARGET",
                        tokens[1][1],
                        f"no target starting with /, http:// or https:// after {_quote(from_raw)}",
                    )
                draft.to_raw, draft.to_column = tokens[at]
                draft.queries = [self._split_token(t, c) for t, c in tokens[1:at]]
                if at + 1 < len(tokens):
                    draft.status_raw, draft.status_column = tokens[at + 1]
                rest = tokens[at + 2 :]
            draft.conditions = [self._split_token(t, c) for t, c in rest]
        except _Reject as reject:
            self._diag(SEV_ERROR, reject.code, source, line, reject.column, reject.message)
            return 0
        return self._build(source, line, draft, parsed_from)

    @staticmethod
    def _split_token(token: bytes, column: int) -> _Item:
        key, eq, value = token.partition(b"=")
        return _Item(token, key if eq else None, value, column)

    def add_fields(self, source: int, line: int, record: bytes) -> int:
        """Add one structured rule; 1 accepted, 0 rejected. ValueError: malformed record."""
        self._check_open()
        draft = self._parse_record(record)
        if self._full:
            return 0
        if draft is None:
            self._diag(SEV_ERROR, "BAD_FROM", source, line, 1, "rule has no from")
            return 0
        try:
            parsed_from = _parse_from(draft.from_raw, 1)
        except _Reject as reject:
            self._diag(SEV_ERROR, reject.code, source, line, reject.column, reject.message)
            return 0
        accepted = self._build(source, line, draft, parsed_from)
        return accepted

    @staticmethod
    def _parse_record(record: bytes) -> _Draft | None:
        """Read a field record (esr_builder_add_fields); None when it has no F field."""
        if record and not record.endswith(b"\0"):
            raise ValueError("record field is not NUL-terminated")
        fields = record.split(b"\0")[:-1] if record else []
        draft = _Draft(b"", 1, status_bang=False)
        seen: set[int] = set()
        for item in fields:
            if not item or item[0] not in _RECORD_TAGS:
                raise ValueError(f"record field with unknown tag: {item[:1]!r}")
            tag, body = item[0], item[1:]
            if tag in b"FTSG":
                if tag in seen:
                    raise ValueError(f"record repeats field {chr(tag)}")
                seen.add(tag)
            if tag == ord("F"):
                draft.from_raw = body
            elif tag == ord("T"):
                draft.to_raw = body
            elif tag == ord("S"):
                draft.status_raw = body
            elif tag == ord("!"):
                if body:
                    raise ValueError("record field ! carries a value")
                draft.force = True
            elif tag == ord("G"):
                draft.signed = body
            else:
                key, sep, value = body.partition(b"\x1f")
                if not sep:
                    raise ValueError(f"record field {chr(tag)} has no \\x1f separator")
                if tag == ord("Q"):
                    draft.queries.append(_Item(key + b"=" + value, key, value, 1))
                elif tag == ord("C"):
                    draft.conditions.append(_Item(key + b"=" + value, key, value, 1))
                else:
                    draft.headers.append((key, value))
        if ord("F") not in seen:
            return None
        return draft

    def _build(self, source: int, line: int, draft: _Draft, parsed_from: _From) -> int:
        """Validate a draft in the documented order; record one error or the rule."""
        warnings: list[tuple[int, str, str]] = [(draft.from_column, c, m) for c, m in parsed_from.warnings]
        try:
            query = tuple(_query_pair(item) for item in draft.queries)
            if draft.to_raw is not None:
                to = draft.to_raw
                if not to.startswith(_TARGET_PREFIXES):
                    raise _Reject(
                        "BAD_TARGET",
                        draft.to_column,
                        f"target {_quote(to)} must start with /, http:// or https://",
                    )
                if _absolute_host(to) == b"":
                    raise _Reject("BAD_TARGET", draft.to_column, f"absolute target {_quote(to)} has no host")
                status, bang = _parse_status(draft)
            else:
                status, bang = _parse_status(draft)
                if not (draft.from_raw.endswith(b"/*") and 200 <= status <= 299):
                    raise _Reject(
                        "MISSING_TO",
                        draft.from_column,
                        f"rule {_quote(draft.from_raw)} has no target",
                    )
                # a from without its leading "/" (FROM_NO_SLASH) gets it in the target too
                lead = b"" if draft.from_raw.startswith(b"/") or parsed_from.scheme is not None else b"/"
                to = lead + draft.from_raw[:-1] + b":splat"
            conditions: list[tuple[str, tuple[bytes, ...]]] = []
            key_warnings: list[tuple[int, str, str]] = []
            signed, signed_column = draft.signed, draft.signed_column
            sign_from_sign: bytes | None = None
            sign_column = 1
            for item in draft.conditions:
                key, values, canonical_case = _condition(item)
                if not canonical_case:
                    key_warnings.append(
                        (
                            item.column,
                            "NONCANONICAL_KEY",
                            f"condition key {_quote(item.key or b'')} should be {key}",
                        )
                    )
                if key == "signed":
                    signed, signed_column = values[0], item.column
                elif key == "Sign":
                    sign_from_sign, sign_column = values[0], item.column
                elif key in ("Country", "Language"):
                    conditions.append((key, tuple(v.lower() for v in values)))
                else:
                    conditions.append((key, values))
            if signed is None and sign_from_sign is not None:
                signed, signed_column = sign_from_sign, sign_column
        except _Reject as reject:
            self._diag(SEV_ERROR, reject.code, source, line, reject.column, reject.message)
            return 0

        if len(self.rules) >= self.max_rules:
            self._diag(
                SEV_ERROR,
                "TOO_MANY_RULES",
                source,
                line,
                draft.from_column,
                f"rule limit of {self.max_rules} reached; loading stops",
            )
            self._full = True
            return 0

        pattern = parsed_from.pattern
        bound = set(pattern.placeholders)
        if pattern.splat:
            bound.add(b"splat")
        bound.update(name for _, name, is_capture in query if is_capture)
        tokens = [m.group(1) for m in _TOKEN_RE.finditer(to)]
        force = draft.force or bang
        rule = RefRule(
            from_text=_text(draft.from_raw),
            to_text=_text(to),
            status=status,
            force=force,
            source=source,
            line=line,
            has_query=bool(query),
            has_conditions=any(key in _MATCH_CONDITIONS for key, _ in conditions),
            has_role=any(key == "Role" for key, _ in conditions),
            dynamic=pattern.splat or bool(pattern.placeholders),
            target_static=not any(name in bound for name in tokens),
            headers=[(_text(k), _text(v)) for k, v in draft.headers],
            signed=None if signed is None else _text(signed),
            host=None if parsed_from.host is None else _text(parsed_from.host),
            scheme=None if parsed_from.scheme is None else _text(parsed_from.scheme),
            pattern=pattern,
            from_bytes=draft.from_raw,
            to_bytes=to,
            host_bytes=parsed_from.host,
            scheme_bytes=parsed_from.scheme,
            query=query,
            conditions=tuple(conditions),
        )
        self.rules.append(rule)

        warnings.extend(
            (draft.to_column, c, m) for c, m in self._target_warnings(rule, parsed_from, bound, tokens)
        )
        if status in (307, 308) or (200 < status <= 299):
            warnings.append(
                (
                    draft.status_column,
                    "STATUS_NOT_ON_NETLIFY",
                    f"status {status} is not served by Netlify",
                )
            )
        warnings.extend(key_warnings)
        if (draft.headers or signed is not None) and not rule.is_proxy:
            column = signed_column if signed is not None and not draft.headers else 1
            warnings.append((column, "HEADERS_ON_NON_PROXY", "headers/signed only apply to proxy rules"))
        warnings.sort(key=lambda w: w[0])  # stable: within a column, the order above
        for column, code, message in warnings:
            self._diag(SEV_WARNING, code, source, line, column, message)
        return 1

    @staticmethod
    def _target_warnings(
        rule: RefRule, parsed_from: _From, bound: set[bytes], tokens: list[bytes]
    ) -> list[tuple[str, str]]:
        """SELF_REDIRECT / TRAILING_SLASH_ONLY, UNBOUND_REFERENCE, OPEN_REDIRECT."""
        out: list[tuple[str, str]] = []
        to = rule.to_bytes
        if (
            300 <= rule.status <= 399
            and parsed_from.host is None
            and to.startswith(b"/")
            and b"?" not in to
            and b"#" not in to
        ):
            canonical_to = canonicalize_path(to)
            canonical_from = parsed_from.canonical
            if canonical_from.endswith(b"*"):  # "/a/* /a/:splat 301" loops as well
                canonical_from = canonical_from[:-1] + b":splat"
            if _strip_one_slash(canonical_to) == _strip_one_slash(canonical_from):
                if canonical_to == canonical_from:
                    out.append(("SELF_REDIRECT", "rule redirects to itself (loop)"))
                else:
                    out.append(("TRAILING_SLASH_ONLY", "from and to differ only by a trailing / (loop)"))
        unbound: list[bytes] = []
        for name in tokens:
            if (name[0] == 0x5F or chr(name[0]).isalpha()) and name not in bound and name not in unbound:
                unbound.append(name)
        for name in unbound:
            out.append(("UNBOUND_REFERENCE", f"target uses {_quote(b':' + name)}, which from never binds"))
        first = _TOKEN_RE.match(to, 1)
        host = _absolute_host(to)
        if (
            to.startswith(b"//")
            or (
                rule.pattern.splat
                and to.startswith(b"/")
                and first is not None
                and first.group(1) == b"splat"
            )
            or (host is not None and any(m.group(1) in bound for m in _TOKEN_RE.finditer(host)))
        ):
            out.append(("OPEN_REDIRECT", "target can send visitors to a host chosen by the request"))
        return out

    def compile(self) -> None:
        """Freeze the rule list; later add_* and compile calls raise RuntimeError."""
        self._check_open()
        self._compiled = True

    # -- matching -----------------------------------------------------------

    @staticmethod
    def _parse_url(url: bytes) -> tuple[bytes | None, bytes | None, bytes, bytes | None]:
        """(scheme, host, raw path, raw query or None); ValueError when invalid."""
        hash_at = url.find(b"#")
        if hash_at >= 0:
            url = url[:hash_at]
        scheme: bytes | None = None
        host: bytes | None = None
        lowered = url[:8].lower()
        if lowered.startswith((b"http://", b"https://")):
            scheme = b"http" if lowered.startswith(b"http://") else b"https"
            rest = url[len(scheme) + 3 :]
            end = len(rest)
            for stop in (b"/", b"?"):
                at = rest.find(stop)
                if 0 <= at < end:
                    end = at
            host_text, url = rest[:end], rest[end:]
            if not host_text:
                raise ValueError("URL has an empty host")
            name, colon, port = host_text.rpartition(b":")
            if colon and port and port.isdigit():
                host = _normalize_host(name, port, scheme)
            else:
                host = _normalize_host(host_text, None, scheme)
            if not url.startswith(b"/"):
                url = b"/" + url
        elif not url.startswith(b"/"):
            raise ValueError("URL is neither absolute http(s) nor origin-form")
        path, question, query = url.partition(b"?")
        return scheme, host, path, (query if question else None)

    def match(self, url: bytes, ctx: Context | None) -> MatchResult:
        """Match one request: (kind, rule, denied_by, target)."""
        if not self._compiled:
            raise RuntimeError("compile() the engine before matching")
        scheme, host, raw_path, raw_query = self._parse_url(url)
        path = canonicalize_path(raw_path)
        segments = path.split(b"/")
        stripped_segments = _strip_one_slash(path).split(b"/")
        country, language, cookies, roles = ctx if ctx is not None else (b"", b"", frozenset(), frozenset())
        country = country.lower()
        language = language.lower()
        primary = language.split(b"-", 1)[0]
        query_items: dict[bytes, bytes] | None = None
        denied = -1
        for index, rule in enumerate(self.rules):
            if rule.scheme_bytes is not None and (rule.scheme_bytes != scheme or rule.host_bytes != host):
                continue
            path_match = rule.pattern.match(path, stripped_segments, segments)
            if path_match is None:
                continue
            query_captures: list[tuple[bytes, bytes]] = []
            if rule.query:
                if query_items is None:
                    query_items = self._parse_query(raw_query)
                if not self._match_query(rule, query_items, query_captures):
                    continue
            if rule.conditions:
                role_ok = all(
                    any(v in roles for v in values) for key, values in rule.conditions if key == "Role"
                )
                if not role_ok:
                    if denied < 0:
                        denied = index
                    continue
                if not all(
                    self._condition_holds(key, values, country, language, primary, cookies)
                    for key, values in rule.conditions
                    if key != "Role"
                ):
                    continue
            return MATCH, index, denied, self._target(rule, path_match, query_captures)
        if denied >= 0:
            return DENIED, denied, -1, b""
        return NO_MATCH, -1, -1, b""

    @staticmethod
    def _parse_query(raw: bytes | None) -> dict[bytes, bytes]:
        items: dict[bytes, bytes] = {}
        if raw:
            for item in raw.split(b"&"):
                key, eq, value = item.partition(b"=")
                if eq:
                    items[key] = value
        return items

    @staticmethod
    def _match_query(rule: RefRule, items: dict[bytes, bytes], captures: list[tuple[bytes, bytes]]) -> bool:
        for key, value, is_capture in rule.query:
            raw = items.get(key)
            if raw is None:
                return False
            decoded = form_decode(raw)
            if is_capture:
                captures.append((value, decoded))
            elif decoded != value:
                return False
        return True

    @staticmethod
    def _condition_holds(
        key: str,
        values: tuple[bytes, ...],
        country: bytes,
        language: bytes,
        primary: bytes,
        cookies: frozenset[bytes],
    ) -> bool:
        if key == "Country":
            return bool(country) and country in values
        if key == "Language":
            return bool(language) and any(v in (language, primary) for v in values)
        return any(v in cookies for v in values)  # Cookie

    @staticmethod
    def _target(
        rule: RefRule,
        path_match: tuple[list[tuple[bytes, bytes]], bytes | None],
        query_captures: list[tuple[bytes, bytes]],
    ) -> bytes:
        captures, splat = path_match
        bindings: dict[bytes, bytes] = {}
        for name, value in captures:
            bindings.setdefault(name, value)
        if splat is not None:
            bindings.setdefault(b"splat", splat)
        for name, value in query_captures:
            bindings.setdefault(name, query_escape(value))
        if not bindings:
            return rule.to_bytes

        def replace(m: re.Match[bytes]) -> bytes:
            return bindings.get(m.group(1), m.group())

        return _TOKEN_RE.sub(replace, rule.to_bytes)
