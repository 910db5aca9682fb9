"""JSON text exactly as ``json.dumps(obj, indent=N)`` writes it, at the C encoder's speed.

Python 3.11's ``json`` encodes in C only without ``indent``; with one, every value goes
through the pure-Python encoder, which took most of the time of writing a report with a
million time-series buckets (docs/benchmarks.md, "Many deploys, and a million
buckets"). Here each list or object whose members are all scalars (the time series,
a latency table) is handed to the C encoder whole, with the newline and indentation of
its level as the item separator; other containers are laid out member by member as the
Python encoder lays them out. The text is the same, byte for byte
(``tests/unit/test_jsontext.py``).
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import Any, Final

_SCALARS: Final = frozenset((str, int, float, bool, type(None)))
_STR: Final = frozenset((str,))
_LIST: Final = frozenset((list,))


def dumps_indented(obj: Any, indent: int = 1, *, ensure_ascii: bool = True) -> str:
    """``json.dumps(obj, indent=indent, ensure_ascii=ensure_ascii)``, the same text."""
    return _text(obj, 0, indent, ensure_ascii, {})


def _text(obj: Any, level: int, indent: int, ensure_ascii: bool, coders: dict[int, json.JSONEncoder]) -> str:
    if isinstance(obj, list | tuple):
        if not obj:
            return "[]"
        if _SCALARS.issuperset(map(type, obj)):
            return _flat(obj, level, indent, ensure_ascii, coders)
        inner = "\n" + " " * (indent * (level + 1))
        parts = _rows(obj, level + 1, indent, ensure_ascii) if _LIST.issuperset(map(type, obj)) else None
        if parts is None:
            parts = [_text(x, level + 1, indent, ensure_ascii, coders) for x in obj]
        return "[" + inner + ("," + inner).join(parts) + "\n" + " " * (indent * level) + "]"
    if isinstance(obj, dict) and _STR.issuperset(map(type, obj)):
        if not obj:
            return "{}"
        if _SCALARS.issuperset(map(type, obj.values())):
            return _flat(obj, level, indent, ensure_ascii, coders)
        inner = "\n" + " " * (indent * (level + 1))
        parts = [
            json.dumps(k, ensure_ascii=ensure_ascii)
            + ": "
            + _text(v, level + 1, indent, ensure_ascii, coders)
            for k, v in obj.items()
        ]
        return "{" + inner + ("," + inner).join(parts) + "\n" + " " * (indent * level) + "}"
    # a scalar, an object with keys that are not all strings, or something the encoder
    # rejects: the encoder's own text, moved to this level (a newline in JSON text is
    # never inside a string, where it is escaped)
    text = json.dumps(obj, indent=indent, ensure_ascii=ensure_ascii)
    return text.replace("\n", "\n" + " " * (indent * level)) if level else text


def _rows(obj: Any, level: int, indent: int, ensure_ascii: bool) -> list[str] | None:
    """The texts of the lists ``obj`` holds, at ``level``, when each is small and of
    scalars (a manifest's history: thousands of [seed, fraction]); None otherwise."""
    inner = "\n" + " " * (indent * (level + 1))
    sep = "," + inner
    close = "\n" + " " * (indent * level) + "]"
    out = []
    for row in obj:
        if not row:
            out.append("[]")
        elif len(row) <= _SMALL and _SCALARS.issuperset(map(type, row)):
            out.append("[" + inner + sep.join([_scalar(x, ensure_ascii) for x in row]) + close)
        else:
            return None
    return out


def _flat(obj: Any, level: int, indent: int, ensure_ascii: bool, coders: dict[int, json.JSONEncoder]) -> str:
    """A non-empty list or object of scalars at ``level``: the C encoder's one-line text
    with this level's newline and indentation between members (and after its opening
    and before its closing bracket, as the indented encoder puts them)."""
    inner = "\n" + " " * (indent * (level + 1))
    if len(obj) <= _SMALL:  # (a manifest's history: thousands of [seed, fraction])
        if isinstance(obj, dict):
            members = [_scalar(k, ensure_ascii) + ": " + _scalar(v, ensure_ascii) for k, v in obj.items()]
            return "{" + inner + ("," + inner).join(members) + "\n" + " " * (indent * level) + "}"
        members = [_scalar(x, ensure_ascii) for x in obj]
        return "[" + inner + ("," + inner).join(members) + "\n" + " " * (indent * level) + "]"
    coder = coders.get(level)
    if coder is None:
        coder = coders[level] = json.JSONEncoder(ensure_ascii=ensure_ascii, separators=("," + inner, ": "))
    text = coder.encode(obj)
    return text[0] + inner + text[1:-1] + "\n" + " " * (indent * level) + text[-1]


# Containers up to this many members are written member by member (_scalar): the C
# encoder's set-up costs more than that many scalars.
_SMALL: Final = 4
_INFINITY: Final = float("inf")


def _scalar(x: Any, ensure_ascii: bool) -> str:
    """One scalar's JSON text, as both of ``json``'s encoders write it."""
    if type(x) is str:
        return encode_basestring_ascii(x) if ensure_ascii else encode_basestring(x)
    if x is None:
        return "null"
    if x is True:
        return "true"
    if x is False:
        return "false"
    if type(x) is int:
        return int.__repr__(x)
    # a float (the only scalar left)
    if x != x:
        return "NaN"
    if x == _INFINITY:
        return "Infinity"
    if x == -_INFINITY:
        return "-Infinity"
    return float.__repr__(x)
