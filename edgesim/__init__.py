"""edgesim: simulate a CDN edge network to plan its capacity and test edge software.

The public names are re-exported here lazily, so that importing a core module never
pulls in the Trio shells or the native extension before they are needed.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "RuleSet": "edgesim.redirects",
    "ReferenceRuleSet": "edgesim.redirects",
    "Match": "edgesim.redirects",
    "Diagnostic": "edgesim.redirects",
    "Source": "edgesim.redirects",
    "resolve": "edgesim.redirects",
    "EdgesimError": "edgesim.errors",
    "RuleSyntaxError": "edgesim.errors",
    "RuleFileError": "edgesim.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edgesim' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
