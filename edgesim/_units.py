"""Parsing of sizes and durations given on the command line or in topology files."""

from __future__ import annotations

import re

# (ASCII: "\d" would take any script's digits, which float() reads too)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE | re.ASCII)
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
    whole, _, frac = m.group(1).partition(".")
    factor: int = _FACTORS[unit]
    if factor == 1 and frac.strip("0"):
        raise ValueError(f"expected a whole number of bytes (or a unit, as in 1.5KB), not {text!r}")
    # exact (a float made 2.01KB 2009 bytes, and 10^23 bytes 99,999,999,999,999,991,611,392);
    # a fraction of a byte is dropped
    size: int = int(whole) * factor + int(frac or "0") * factor // 10 ** len(frac)
    if size > MAX_SIZE:
        raise ValueError(f"expected a size of at most {MAX_SIZE:,} bytes (8 EiB), not {text!r}")
    return size


# The largest size (bytes are counted in signed 64-bit integers)
MAX_SIZE = 2**63 - 1


# Durations: a number with a unit, or several ("1h30m"); a bare number is seconds.
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(us|µs|ms|s|m|h|d)", re.IGNORECASE | re.ASCII)
_DURATION = re.compile(rf"(?:{_DURATION_PART.pattern})+\s*", re.IGNORECASE | re.ASCII)
_DURATION_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*", re.ASCII)


def parse_duration(text: str) -> float:
    """Seconds in ``"200ms"``, ``"1.5s"``, ``"30m"``, ``"2h"``, ``"1h30m"`` or ``"90"``.

    Units: ``us`` (or ``µs``), ``ms``, ``s``, ``m``, ``h``, ``d``. Negative durations are
    not durations.

    Raises:
        ValueError: with a message naming what was expected.
    """
    m = _NUMBER.fullmatch(text)
    if m:
        return float(m.group(1))
    if _DURATION.fullmatch(text):
        return sum(float(n) * _DURATION_UNITS[u.lower()] for n, u in _DURATION_PART.findall(text))
    raise ValueError(f"expected a duration such as 200ms, 1.5s, 30m or 2h, not {text!r}")


_RATE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(i?)(bps|bit/s|b/s)?\s*", re.IGNORECASE | re.ASCII)
_PREFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_IPREFIX = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_rate(text: str) -> float:
    """Bytes per second in ``"1Gbps"``, ``"100Mbit/s"`` (bits) or ``"100MB/s"``,
    ``"1GiB/s"``, ``"100MBps"`` (bytes); a bare number is bytes per second.

    The case of the ``b`` decides, as network and storage vendors write them: ``bps``,
    ``bit/s`` and ``b/s`` are bits, ``Bps`` and ``B/s`` bytes.

    Raises:
        ValueError: with a message naming what was expected.
    """
    m = _RATE.fullmatch(text)
    if m is not None:
        number, prefix, binary, unit = m.groups()
        if unit is None and not prefix and not binary:
            return float(number)
        if unit is not None:
            bits = unit.lower() == "bit/s" or unit[0] == "b"
            if not (bits and binary):
                factor = (_IPREFIX if binary else _PREFIX)[prefix.lower()]
                return float(number) * factor / (8 if bits else 1)
    raise ValueError(f"expected a rate such as 1Gbps, 100Mbit/s, 100MB/s or 125000000, not {text!r}")


def format_size(n: float) -> str:
    """Bytes as a short decimal size: ``1GB``, ``64MB``, ``2.5KB``, ``512B``."""
    for unit, f in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= f:
            return f"{n / f:.3g}{unit}"
    return f"{n:.0f}B"
