"""Atomic result files: write to a temporary file in the same folder, then rename.

A reader never sees a half-written report, and an interrupted run never destroys the
previous file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path


def is_special(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` exists but is neither a regular file nor a folder (a FIFO, a
    device, a socket): reading one may never end, replacing one is never wanted."""
    p = Path(path)
    try:
        return p.exists() and not p.is_file() and not p.is_dir()
    except OSError:  # a name too long: not a special file (opening it tells what it is)
        return False


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write ``data`` to ``path`` atomically (same-directory temp file + ``os.replace``).

    A symlink is followed (its file is replaced, the link kept); a path that exists but is
    not a regular file (a device, a FIFO) is refused rather than replaced.

    Raises:
        OSError: the folder is missing or not writable, or the target is not a regular
            file (the target is left untouched).
    """
    target = Path(os.path.realpath(path))
    if target.exists() and not target.is_file():
        raise OSError(errno.EINVAL, "not a regular file", os.fspath(path))
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    except OSError as exc:  # said of the file asked for, not of the temporary one
        raise OSError(exc.errno, exc.strerror, os.fspath(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are ordinary files
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
