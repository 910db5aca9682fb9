"""Runners for sweep tests that fail on purpose. Worker processes import this module
(spawned workers inherit the test process's sys.path, which holds tests/)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgesim.sweep import Cell, run_cell

# Folder where the runners leave marks (set by the test before the sweep starts).
MARKS = "EDGESIM_TEST_SWEEP_MARKS"


def _params(cell: Cell) -> dict[str, Any]:
    return {".".join(parts): v for parts, v in cell.patches}


def _mark(cell: Cell, what: str) -> Path:
    nodes = _params(cell).get("regions.eu.edge.nodes")
    return Path(os.environ[MARKS]) / f"{what}-nodes{nodes}-seed{cell.seed}"


def record(cell: Cell) -> dict[str, Any]:
    """Run the cell, leaving a mark that it ran."""
    _mark(cell, "ran").touch()
    return run_cell(cell)


def die_on_two_nodes(cell: Cell) -> dict[str, Any]:
    """The worker process dies (no exception, no cleanup) on every cell with 2 nodes."""
    if _params(cell).get("regions.eu.edge.nodes") == 2:
        os._exit(3)
    return run_cell(cell)


def die_once(cell: Cell) -> dict[str, Any]:
    """The worker dies the first time it runs a cell with 2 nodes, then works."""
    if _params(cell).get("regions.eu.edge.nodes") == 2:
        mark = _mark(cell, "died")
        if not mark.exists():
            mark.touch()
            os._exit(3)
    return run_cell(cell)


def raise_on_two_nodes(cell: Cell) -> dict[str, Any]:
    if _params(cell).get("regions.eu.edge.nodes") == 2:
        raise RuntimeError("deliberate failure\nsecond line")
    return run_cell(cell)
