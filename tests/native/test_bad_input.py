"""Malformed rule files never crash or hang: they get clear, located diagnostics."""

from __future__ import annotations

import random

import pytest

from edgesim.redirects import RuleSet


def test_binary_garbage_is_reported_not_fatal(engine: type) -> None:
    rng = random.Random(3)
    blob = bytes(rng.randrange(256) for _ in range(20000))
    rs = engine.parse(b"/ok /fine\n" + blob + b"\n/also /fine 302\n")
    assert rs.match("/ok").to == "/fine"
    assert rs.match("/also").to == "/fine"
    assert rs.errors
    assert all(d.line >= 2 for d in rs.errors)


def test_nul_byte(engine: type) -> None:
    rs = engine.parse(b"/a /b\n/c\x00 /d\n/e /f\n")
    assert [(d.code, d.line, d.column) for d in rs.errors] == [("BAD_ENCODING", 2, 3)]
    assert "NUL" in rs.errors[0].message
    assert [r.to for r in rs.rules] == ["/b", "/f"]


def test_invalid_utf8(engine: type) -> None:
    rs = engine.parse(b"/a /b\n/caf\xc3 /d\n/\xe2\x9c\x93 /ok\n")
    assert [(d.code, d.line, d.column) for d in rs.errors] == [("BAD_ENCODING", 2, 5)]
    assert "UTF-8" in rs.errors[0].message
    assert rs.match("/\u2713").to == "/ok"


def test_one_megabyte_line(engine: type) -> None:
    line = b"/x " + b"/y" * 500_000
    rs = engine.parse(b"/a /b\n" + line + b"\n/c /d\n")
    assert [(d.code, d.line) for d in rs.errors] == [("LINE_TOO_LONG", 2)]
    assert len(rs) == 2


def test_line_limit_is_configurable(engine: type) -> None:
    rs = engine.parse("/aaaa /b\n", max_line=5)
    assert [d.code for d in rs.errors] == ["LINE_TOO_LONG"]


def test_rule_limit_stops_loading(engine: type) -> None:
    rs = engine.parse("".join(f"/r{i} /t{i}\n" for i in range(10)), max_rules=4)
    assert len(rs) == 4
    assert [(d.code, d.line) for d in rs.errors] == [("TOO_MANY_RULES", 5)]


def test_control_characters(engine: type) -> None:
    rs = engine.parse("/a\x01 /b\n/c\t/d\r\n")
    assert [(d.code, d.line) for d in rs.errors] == [("BAD_ENCODING", 1)]
    assert rs.match("/c").to == "/d"


@pytest.mark.parametrize(
    "url",
    ["/" + "a" * 100_000, "/%", "/%zz/%C3", "https://EXAMPLE.com.:443/x", "/\udcff", "/a?%%%&&=&=x"],
)
def test_odd_urls_are_answered(url: str) -> None:
    rs = RuleSet.parse("/* /all/:splat 200\n")
    m = rs.match(url)
    assert m is not None and m.to.startswith("/all/")
