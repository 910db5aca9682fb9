"""Sizes on the command line and in topology files: exact, whole bytes, 64-bit."""

from __future__ import annotations

import pytest

from edgesim._units import MAX_SIZE, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("64MB", 64_000_000),
        ("1GiB", 2**30),
        ("1.5KB", 1500),
        ("2.01KB", 2010),  # a float product made it 2009
        ("0.3KB", 300),
        ("1.0", 1),
        ("1.0001KB", 1000),  # a fraction of a byte is dropped
        ("9223372036854775807", MAX_SIZE),
    ],
)
def test_sizes_are_exact(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1.5", "expected a whole number of bytes (or a unit, as in 1.5KB)"),
        ("99999999999999999999999", "expected a size of at most 9,223,372,036,854,775,807 bytes"),
        ("9EiB", "expected a size such as 512MB"),
        ("1e3", "expected a size such as 512MB"),
    ],
)
def test_sizes_that_are_not_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_size(text)
