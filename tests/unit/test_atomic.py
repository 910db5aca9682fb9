"""Atomic result files (edgesim._atomic): replaced whole, through symlinks, never over
a device or FIFO."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgesim._atomic import write_atomic


def test_replaces_a_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    target.write_text("old")
    write_atomic(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left


def test_a_symlink_is_followed_and_kept(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("original")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_atomic(link, "report")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == "report"


def test_a_fifo_is_refused_not_replaced(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        write_atomic(fifo, "report")
    assert fifo.is_fifo()
    assert [p.name for p in tmp_path.iterdir()] == ["fifo"]


def test_a_folder_that_cannot_take_a_file_is_said_of_the_file_asked_for(tmp_path: Path) -> None:
    # the error named the temporary file (/proc/.r.json.i5xz_xb0.tmp)
    with pytest.raises(FileNotFoundError) as err:
        write_atomic(tmp_path / "missing" / "r.json", "report")
    assert err.value.filename == str(tmp_path / "missing" / "r.json")
    assert err.value.strerror == "No such file or directory"
