"""Exceptions raised by edgesim.

``EdgesimError`` is the base class and is never raised itself; each failure has its
own subclass so callers (and the CLI) can tell them apart.
"""

from __future__ import annotations

from collections.abc import Sequence
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
