"""Rule sources: diagnostics, source locations, and netlify.toml extraction.

Both matchers (native and reference) compile the same inputs: `_redirects` text as
bytes, and one *field record* per netlify.toml `[[redirects]]` table. This module turns
TOML into those records, so the two engines can never see different input, and turns the
engines' raw diagnostic tuples into :class:`Diagnostic` objects.

Record format (see ``esr_builder_add_fields`` in native/include/esr.h): NUL-terminated
fields, each a one-byte tag plus content; key/value fields separate the two with 0x1F.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from edgesim._toml import load_toml

SEVERITY_NAMES = {1: "warning", 2: "error"}

_FIELD_SEP = "\x1f"
# Strings that would break the record framing; TOML can smuggle them in via escapes.
_FORBIDDEN = re.compile("[\x00\x1f]")
_TABLE_HEADER = re.compile(rb"^[ \t]*\[\[[ \t]*redirects[ \t]*\]\]", re.MULTILINE)
_TOML_POS = re.compile(r"\(at line (\d+), column (\d+)\)")


class Source(NamedTuple):
    """Where a rule was written.

    ``line`` is the 1-based line in the file (for netlify.toml, the line of the
    table's ``[[redirects]]`` header, or 0 when it could not be found); ``table`` is the
    1-based table number for netlify.toml rules and 0 for `_redirects` lines.
    """

    file: str
    line: int
    table: int = 0

    def __str__(self) -> str:
        if self.table:
            where = f"{self.file}:{self.line}" if self.line else self.file
            return f"{where} (redirects[{self.table - 1}])"
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One parse error or warning.

    Attributes:
        severity: ``"error"`` or ``"warning"``.
        code: stable upper-case code (docs/redirects.md lists them).
        file: the file name the rule text came from.
        line: 1-based line (0 when unknown).
        column: 1-based column in code points (1 for netlify.toml tables).
        message: one line, no location.
        key: for netlify.toml, the key path (``redirects[2].status``); else None.
    """

    severity: str
    code: str
    file: str
    line: int
    column: int
    message: str
    key: str | None = None

    def __str__(self) -> str:
        key = f"{self.key}: " if self.key else ""
        return f"{self.file}:{self.line}:{self.column}: {self.severity}: {key}{self.message} [{self.code}]"

    def as_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "code": self.code,
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "message": self.message,
            "key": self.key,
        }


@dataclass(slots=True)
class SourceFile:
    """One input of a rule set: its name, kind and, for TOML, table header lines."""

    name: str
    kind: str  # "redirects" or "toml"
    data: bytes
    table_lines: list[int] = field(default_factory=list)
    records: list[tuple[int, bytes]] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def line_of_table(self, index: int) -> int:
        """The line of the 1-based table ``index``, or 0."""
        if 0 < index <= len(self.table_lines):
            return self.table_lines[index - 1]
        return 0

    def source(self, line: int) -> Source:
        """A :class:`Source` for the engine's ``line`` value (table index for TOML)."""
        if self.kind == "toml":
            return Source(self.name, self.line_of_table(line), line)
        return Source(self.name, line, 0)

    def diagnostic(self, severity: int, code: str, line: int, column: int, msg: str) -> Diagnostic:
        """Turn an engine diagnostic tuple into a :class:`Diagnostic`."""
        if self.kind == "toml":
            return Diagnostic(
                SEVERITY_NAMES.get(severity, "error"),
                code,
                self.name,
                self.line_of_table(line),
                1,
                msg,
                f"redirects[{line - 1}]",
            )
        return Diagnostic(SEVERITY_NAMES.get(severity, "error"), code, self.name, line, column, msg)


def is_toml_name(filename: str) -> bool:
    """True when a file name selects netlify.toml syntax."""
    return filename.lower().endswith(".toml")


def redirects_source(name: str, data: bytes) -> SourceFile:
    return SourceFile(name, "redirects", data)


def _header_lines(data: bytes) -> list[int]:
    """The 1-based line of each ``[[redirects]]`` header in ``data``, counting the
    newlines from one header to the next (linear in the file, however many tables)."""
    lines: list[int] = []
    line, pos = 1, 0
    for m in _TABLE_HEADER.finditer(data):
        line += data.count(b"\n", pos, m.start())
        pos = m.start()
        lines.append(line)
    return lines


def toml_source(name: str, data: bytes) -> SourceFile:
    """Parse netlify.toml bytes into field records plus whole-file diagnostics."""
    src = SourceFile(name, "toml", data)
    src.table_lines = _header_lines(data)

    def fail(code: str, line: int, column: int, msg: str, key: str | None = None) -> SourceFile:
        src.diagnostics.append(Diagnostic("error", code, name, line, column, msg, key))
        return src

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return fail("TOML_SYNTAX", line, 1, "file is not valid UTF-8; no rules read from it")
    try:
        doc = load_toml(text)
    except tomllib.TOMLDecodeError as exc:
        m = _TOML_POS.search(str(exc))
        line, col = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
        reason = _TOML_POS.sub("", str(exc)).strip()
        return fail("TOML_SYNTAX", line, col, f"invalid TOML: {reason}; no rules read from it")
    tables = doc.get("redirects")
    if tables is None:
        return src
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        found = re.search(rb"^[ \t]*\[?\[?[ \t]*redirects\b", data, re.MULTILINE)
        line = data.count(b"\n", 0, found.start()) + 1 if found else 0
        if isinstance(tables, list):
            bad = next(i for i, t in enumerate(tables) if not isinstance(t, dict))
            return fail(
                "NOT_AN_ARRAY",
                line,
                1,
                "every [[redirects]] entry must be a table",
                f"redirects[{bad}]",
            )
        return fail(
            "NOT_AN_ARRAY",
            line,
            1,
            "redirects must be an array of tables: write [[redirects]], not [redirects]",
            "redirects",
        )
    if len(src.table_lines) != len(tables):
        src.table_lines = []  # inline arrays: no reliable header lines
    for i, table in enumerate(tables):
        record, diag = _record(table, i, src)
        if diag is not None:
            src.diagnostics.append(diag)
        elif record is not None:
            src.records.append((i + 1, record))
    return src


def _record(table: Mapping[str, Any], i: int, src: SourceFile) -> tuple[bytes | None, Diagnostic | None]:
    """One table → (record, None) or (None, diagnostic)."""
    line = src.line_of_table(i + 1)

    def bad(key: str, msg: str, code: str = "BAD_FIELD_TYPE") -> tuple[None, Diagnostic]:
        return None, Diagnostic("error", code, src.name, line, 1, msg, f"redirects[{i}].{key}")

    def pick(*names: str) -> tuple[str, Any]:
        for n in names:
            if n in table:
                return n, table[n]
        return names[0], None

    parts: list[str] = []
    key, frm = pick("from", "origin")
    if frm is None:
        return bad("from", 'missing "from"', "BAD_FROM")
    if not isinstance(frm, str):
        return bad(key, f'"{key}" must be a string, not {_tname(frm)}')
    parts.append("F" + frm)
    key, to = pick("to", "destination")
    if to is not None:
        if not isinstance(to, str):
            return bad(key, f'"{key}" must be a string, not {_tname(to)}')
        parts.append("T" + to)
    status = table.get("status")
    if status is not None:
        if isinstance(status, bool) or not isinstance(status, int | str):
            return bad("status", f'"status" must be an integer, not {_tname(status)}')
        if isinstance(status, str) and not (status.isascii() and status.isdigit()):
            return bad("status", f'"status" must be an integer or a string of digits, not "{status}"')
        parts.append(f"S{status}")
    force = table.get("force")
    if force is not None:
        if not isinstance(force, bool):
            return bad("force", f'"force" must be true or false, not {_tname(force)}')
        if force:
            parts.append("!")
    key, query = pick("query", "params", "parameters")
    if query is not None:
        if not isinstance(query, dict):
            return bad(key, f'"{key}" must be a table of strings, not {_tname(query)}')
        for k, v in query.items():
            if not isinstance(v, str):
                return bad(f"{key}.{k}", f"query values must be strings, not {_tname(v)}")
            parts.append(f"Q{k}{_FIELD_SEP}{v}")
    conditions = table.get("conditions")
    if conditions is not None:
        if not isinstance(conditions, dict):
            return bad("conditions", f'"conditions" must be a table, not {_tname(conditions)}')
        for k, v in conditions.items():
            if isinstance(v, str):
                items = [s.strip() for s in v.split(",")]
            elif isinstance(v, list) and all(isinstance(s, str) for s in v):
                items = list(v)
            else:
                return bad(
                    f"conditions.{k}",
                    f"condition values must be strings or a list of strings, not {_tname(v)}",
                )
            parts.append(f"C{k}{_FIELD_SEP}{','.join(items)}")
    headers = table.get("headers")
    if headers is not None:
        if not isinstance(headers, dict):
            return bad("headers", f'"headers" must be a table of strings, not {_tname(headers)}')
        for k, v in headers.items():
            if not isinstance(v, str):
                return bad(f"headers.{k}", f"header values must be strings, not {_tname(v)}")
            parts.append(f"H{k}{_FIELD_SEP}{v}")
    key, signed = pick("signed", "signing", "sign")
    if signed is not None:
        if not isinstance(signed, str):
            return bad(key, f'"{key}" must be a string (an environment variable name), not {_tname(signed)}')
        parts.append("G" + signed)
    for p in parts:
        if _FORBIDDEN.search(p[1:].replace(_FIELD_SEP, "", 1) if p[0] in "QCH" else p[1:]):
            return bad("", "values must not contain NUL or U+001F control characters", "BAD_ENCODING")
    return "".join(p + "\0" for p in parts).encode("utf-8", "surrogatepass"), None


def _tname(v: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(v), type(v).__name__)


def sort_diagnostics(diags: Iterable[Diagnostic], order: Mapping[str, int]) -> list[Diagnostic]:
    """Order diagnostics by (source order, line, column), stably."""
    return sorted(diags, key=lambda d: (order.get(d.file, 0), d.line, d.column))
