"""Shared fixtures. Tests never read ../shared: the data they need lives in tests/data."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(params=["native", "reference"])
def engine(request: pytest.FixtureRequest) -> type:
    """Both matcher classes: every API test runs against each."""
    from edgesim.redirects import ReferenceRuleSet, RuleSet

    return RuleSet if request.param == "native" else ReferenceRuleSet
