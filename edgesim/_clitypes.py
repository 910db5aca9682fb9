"""Click parameter types shared by the commands."""

from __future__ import annotations

import math
import os
from typing import Any

import click

__all__ = ["FiniteFloatRange", "OutputFile"]


class FiniteFloatRange(click.FloatRange):
    """:class:`click.FloatRange` that also refuses ``nan`` and ``inf``.

    click compares the value with the bounds, and every comparison with NaN is false, so
    a plain ``FloatRange`` lets ``nan`` through (and ``inf`` when there is no upper bound).
    """

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        x = super().convert(value, param, ctx)
        if not math.isfinite(x):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return x


class OutputFile(click.Path):
    """A file to write: not a directory, in a folder that exists.

    Checked when the options are read, so that a long run does not end in "cannot write".
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(dir_okay=False, **kwargs)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = super().convert(value, param, ctx)
        if not os.fspath(path):
            self.fail("expected a file name, got ''", param, ctx)
        folder = os.path.dirname(os.path.abspath(os.fsdecode(path)))
        if not os.path.isdir(folder):
            self.fail(f"{folder} is not a directory", param, ctx)
        return path
