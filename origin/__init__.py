"""The edgesim origin server: serves site deploys, evaluates redirects, answers
conditional requests (docs/origin.md).

``origin.core`` is the sans-IO core (no trio, no sockets, no clock); ``origin.server``
is the Trio shell. Names are re-exported lazily so that importing the core never loads
trio.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "OriginCore": "origin.core",
    "Deploy": "origin.core",
    "FileInfo": "origin.core",
    "LoadStats": "origin.core",
    "SiteConfigError": "origin.core",
    "DEPLOY_HEADER": "origin.core",
    "Catalog": "origin.core",
    "OriginServer": "origin.server",
    "serve_origin": "origin.server",
    "run": "origin.server",
    "main": "origin.server",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'origin' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
