"""`redirects check`'s whole-list lint (edgesim._lint): its index of placeholder rules
finds the very rules a test of every earlier placeholder rule finds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edgesim._lint as lint
from edgesim._rulefiles import redirects_source

_SEGMENT = st.sampled_from(["a", "b", ":p", ":q", ""])
_RULE = st.tuples(
    st.lists(_SEGMENT, min_size=1, max_size=3), st.booleans(), st.sampled_from(["", " Country=nz"])
)


def _text(rules: list[tuple[list[str], bool, str]]) -> bytes:
    lines = []
    for segments, splat, condition in rules:
        path = "/" + "/".join(segments) + ("/*" if splat else "")
        lines.append(f"{path} /to 301{condition}")
    return ("\n".join(lines) + "\n").encode()


def _warnings(data: bytes) -> list[str]:
    return [str(d) for d in lint.cross_rule_warnings([redirects_source("_redirects", data)])]


@settings(max_examples=300, deadline=None)
@given(st.lists(_RULE, max_size=14))
def test_the_index_finds_what_testing_every_placeholder_rule_finds(
    rules: list[tuple[list[str], bool, str]],
) -> None:
    data = _text(rules)
    indexed = _warnings(data)
    with pytest.MonkeyPatch.context() as mp:  # one bucket for all: every earlier rule tested
        mp.setattr(lint, "_bucket", lambda p: (False, 0, -1, b""))
        mp.setattr(lint, "_candidate_buckets", lambda p: [(False, 0, -1, b"")])
        assert _warnings(data) == indexed


def test_placeholder_first_rules_are_still_found() -> None:
    # rules starting with a placeholder: each bucketed by its first literal segment
    # (the speed of that is measured in docs/benchmarks.md, not here)
    text = b"/:p/x/* /a 301\n/:q/x/y /b 301\n/:q/:r/z /c 301\n/w/:r/z /d 301\n"
    found = [w for w in _warnings(text) if "[UNREACHABLE]" in w]
    assert [w.split(":")[1] for w in found] == ["2", "4"], found
    assert "_redirects:1" in found[0] and "_redirects:3" in found[1]
