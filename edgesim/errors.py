"""Exceptions raised by edgesim.

``EdgesimError`` is the base class and is never raised itself; each failure has its
own subclass so callers (and the CLI) can tell them apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgesim._rulefiles import Diagnostic


class EdgesimError(Exception):
    """Base class of every edgesim error (never raised directly)."""


class RuleFileError(EdgesimError, OSError):
    """A rule file or site directory could not be read."""


class RuleSyntaxError(EdgesimError, ValueError):
    """A rule set has errors and was parsed with ``strict=True``.

    Attributes:
        diagnostics: every diagnostic of the parse (errors and warnings).
        file, line, column, code: where the first error is.
    """

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = tuple(diagnostics)
        errors = [d for d in self.diagnostics if d.severity == "error"]
        first = errors[0]
        self.file = first.file
        self.line = first.line
        self.column = first.column
        self.code = first.code
        more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
        super().__init__(f"{first}{more}")


class TraceError(EdgesimError):
    """A request trace could not be read (or written).

    The message names the file, then the line (CSV, 1-based, the header is line 1) or
    the record index (binary, 0-based), then what was expected.

    Attributes:
        file: the trace's path as given.
        line: 1-based line of a CSV trace, or None.
        record: 0-based record index of a binary trace, or None.
    """

    def __init__(
        self, file: str, message: str, *, line: int | None = None, record: int | None = None
    ) -> None:
        self.file = file
        self.line = line
        self.record = record
        where = f"{file}:{line}" if line is not None else file
        if record is not None:
            where += f": record {record}"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, slots=True)
class TopologyProblem:
    """One problem of a topology file.

    Attributes:
        file: the file as named by the caller (``<topology>`` for text without a file).
        line: 1-based line, or 0 when unknown.
        key_path: e.g. ``regions[1].edge.nodes`` ("" for file-level problems).
        message: what was expected (and what was found).
        column: 1-based column (TOML syntax errors only), or 0.
    """

    file: str
    line: int
    key_path: str
    message: str
    column: int = 0

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}"
            if self.column:
                where += f":{self.column}"
        return f"{where}: {self.key_path}: {self.message}" if self.key_path else f"{where}: {self.message}"


class TopologyError(EdgesimError, ValueError):
    """A topology file is invalid; ``problems`` lists every problem found (not just the
    first), and ``str()`` gives one line per problem.
    """

    def __init__(self, problems: Sequence[TopologyProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def single_exception(exc: BaseException) -> BaseException:
    """``exc`` out of the exception groups of one that Trio's nurseries wrap it in (a
    group of several is returned as it is)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
