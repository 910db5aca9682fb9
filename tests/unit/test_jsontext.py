"""``dumps_indented`` writes the text of ``json.dumps(obj, indent=N)``, byte for byte.

It hands lists and objects of scalars to the C encoder with the indentation as the
item separator, and lays out the rest itself; these compare the two on generated
documents (nested containers, empty ones, strings with newlines and non-ASCII, odd
floats, keys that are not strings) and on a real run's report.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesim._jsontext import dumps_indented
from edgesim.report import report_json

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.sampled_from(["line\nbreak", "tab\t", 'quote"', "é ü 中", "\u2028", "\x00"])
)
_keys = st.text(max_size=6) | st.integers(-5, 5) | st.floats(allow_nan=False) | st.booleans() | st.none()
_docs = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=6), inner, max_size=6)
        | st.dictionaries(_keys, inner, max_size=4)
    ),
    max_leaves=40,
)
# rows of scalars (a manifest's history), some longer than the short-row path takes
_rows = st.lists(st.lists(_scalars, max_size=6), max_size=10)


@settings(max_examples=400, deadline=None)
@given(
    doc=_docs | _rows | st.dictionaries(st.text(max_size=3), _rows, max_size=3),
    indent=st.integers(0, 3),
    ensure_ascii=st.booleans(),
)
def test_same_text_as_json_dumps(doc: Any, indent: int, ensure_ascii: bool) -> None:
    want = json.dumps(doc, indent=indent, ensure_ascii=ensure_ascii)
    assert dumps_indented(doc, indent, ensure_ascii=ensure_ascii) == want


def test_long_flat_series_and_nesting() -> None:
    doc = {
        "meta": {"name": "x", "nan": math.nan, "inf": -math.inf, "big": 2**80},
        "series": {"a": [i * 0.25 for i in range(1000)], "b": [None, True, False, 0, "s"] * 50},
        "rows": [{"k": [1, [2, [3, {}]], []]}, [], {}],
    }
    assert dumps_indented(doc) == json.dumps(doc, indent=1)
    assert report_json(doc) == json.dumps(doc, indent=1) + "\n"


@pytest.mark.parametrize("bad", [{"a": {1, 2}}, [1, object()], {(1, 2): 3}, {"k": [{"x": b"bytes"}]}])
def test_what_the_encoder_rejects_is_rejected(bad: Any) -> None:
    with pytest.raises(TypeError):
        json.dumps(bad, indent=1)
    with pytest.raises(TypeError):
        dumps_indented(bad)
