"""Parsing of sizes and durations given on the command line or in topology files."""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_FACTORS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "ki": 2**10,
    "kib": 2**10,
    "m": 10**6,
    "mb": 10**6,
    "mi": 2**20,
    "mib": 2**20,
    "g": 10**9,
    "gb": 10**9,
    "gi": 2**30,
    "gib": 2**30,
    "t": 10**12,
    "tb": 10**12,
    "ti": 2**40,
    "tib": 2**40,
}


def parse_size(text: str) -> int:
    """Bytes in ``"64MB"``, ``"1GiB"``, ``"500k"`` or ``"1024"`` (SI and IEC units).

    Raises:
        ValueError: with a message naming what was expected.
    """
    m = _SIZE.match(text)
    unit = (m.group(2) or "").lower() if m else ""
    if m is None or unit not in _FACTORS:
        raise ValueError(f"expected a size such as 512MB, 1GiB or 1000000, not {text!r}")
    return int(float(m.group(1)) * _FACTORS[unit])
