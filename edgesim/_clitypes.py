"""Click parameter types shared by the commands."""

from __future__ import annotations

import math
import os
import sys
import tempfile
from typing import Any

import click

__all__ = [
    "STDOUT",
    "FiniteFloatRange",
    "InputFile",
    "OutputFile",
    "distinct_outputs",
    "folder_name",
    "load_topology_arg",
    "make_output_folder",
    "write_result",
]

STDOUT = "-"
"""The file name that stands for standard output (``--json -``)."""


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


class InputFile(click.File):
    """:class:`click.File` for reading that refuses a FIFO or a device before opening it
    (opening a FIFO waits for a writer; ``/dev/zero`` never ends): one error line, as the
    commands' FILE arguments give. ``-`` is standard input, as click has it."""

    def __init__(self) -> None:
        super().__init__("r")

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from edgesim._atomic import is_special

        if isinstance(value, str | bytes | os.PathLike):
            name = os.fsdecode(value)
            if name != "-" and is_special(name):
                self.fail(f"{name}: not a regular file (a FIFO or device)", param, ctx)
        return super().convert(value, param, ctx)


class OutputFile(click.Path):
    """A file to write: a regular file or a new one (through symlinks), in a folder that
    exists.

    Checked when the options are read, so that a long run does not end in "cannot write".
    ``-`` is standard output when ``stdout`` is true (write it with :func:`write_result`),
    else an error: a file literally named ``-`` is never what was meant.
    """

    def __init__(self, *, stdout: bool = False, **kwargs: Any) -> None:
        super().__init__(dir_okay=False, **kwargs)
        self.stdout = stdout

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if os.fsdecode(value) == STDOUT:
            if self.stdout:
                return STDOUT
            self.fail("'-': expected a file name (this output is not written to standard output)", param, ctx)
        path = super().convert(value, param, ctx)
        if not os.fspath(path):
            self.fail("expected a file name, got ''", param, ctx)
        real = os.path.realpath(os.fsdecode(path))  # a symlink's file is the one written
        if os.path.exists(real) and not os.path.isfile(real):
            # results are replaced by a rename: never over a device, FIFO or socket
            self.fail(f"{os.fsdecode(path)} is not a regular file (results are written as files)", param, ctx)
        folder = os.path.dirname(real)
        if not os.path.isdir(folder):
            self.fail(f"{folder} is not a directory", param, ctx)
        try:
            _probe(folder)
        except OSError as exc:
            self.fail(f"cannot write {os.fsdecode(path)}: {exc.strerror or exc}", param, ctx)
        return path


def _probe(folder: str) -> None:
    """Make and remove a file in ``folder``, as an atomic write makes its temporary file.

    Raises:
        OSError: no file can be made there.
    """
    fd, probe = tempfile.mkstemp(prefix=".edgesim-probe.", dir=folder)
    os.close(fd)
    os.unlink(probe)


def distinct_outputs(*outputs: tuple[str, str | None]) -> None:
    """Refuse two options that would write the same file: ``outputs`` are (option,
    path) pairs, a path None (not given) or ``-`` (standard output) left out. Paths are
    compared as written to, through symlinks.

    Raises:
        click.UsageError: the two options and the file.
    """
    seen: dict[str, str] = {}
    for option, path in outputs:
        if path is None or path == STDOUT:
            continue
        real = os.path.realpath(os.fsdecode(path))
        if real in seen:
            raise click.UsageError(f"{seen[real]} and {option} name the same file ({os.fsdecode(path)})")
        seen[real] = option


def make_output_folder(path: str, option: str) -> None:
    """Create the folder an option's files go in (with its parents) and check that a file
    can be made in it, before a run rather than after it.

    Raises:
        click.UsageError: the option, the folder and why.
    """
    try:
        os.makedirs(path, exist_ok=True)
        _probe(path)
    except OSError as exc:
        raise click.UsageError(f"{option}: cannot write in {path}: {exc.strerror or exc}") from None


def folder_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A click callback for an option naming a folder of output files: not empty, and not
    ``-`` (files go in it: standard output cannot be one)."""
    if value is not None and not value.strip():
        raise click.BadParameter("expected a folder name, got ''")
    if value == STDOUT:
        raise click.BadParameter("'-': expected a folder name (its files are not written to standard output)")
    return value


def write_result(path: str, text: str) -> None:
    """Write a result to ``path`` atomically (edgesim._atomic), or to standard output when
    ``path`` is ``-``.

    Raises:
        OSError: as :func:`edgesim._atomic.write_atomic`.
    """
    if path == STDOUT:
        click.echo(text, nl=False)
        sys.stdout.flush()
        return
    from edgesim._atomic import write_atomic

    write_atomic(path, text)


def load_topology_arg(arg: str) -> Any:
    """The topology a command names (a file or a bundled name). Its problems are printed
    one per line (file, line, key path) and the exit status is 1; any other error is one
    ``Error:`` line."""
    from edgesim._topoload import load_topology, resolve_topology_arg
    from edgesim.errors import EdgesimError, TopologyError

    try:
        return load_topology(resolve_topology_arg(arg))
    except TopologyError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        sys.exit(1)
    except EdgesimError as exc:
        raise click.ClickException(str(exc)) from None
