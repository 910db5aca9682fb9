"""TOML reading shared by every file edgesim parses (topologies, sweeps, cost files,
``netlify.toml``, ``_edgesim.toml``)."""

from __future__ import annotations

import tomllib
from typing import Any


def load_toml(text: str) -> dict[str, Any]:
    """``tomllib.loads``, with arrays or inline tables nested too deeply for its
    recursive parser reported as a ``TOMLDecodeError`` (it raised ``RecursionError``).
    A leading byte-order mark (some Windows editors write one) is skipped."""
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise tomllib.TOMLDecodeError("arrays or tables nested too deeply") from None
