"""Which modules a wheel build compiles with mypyc, and which of them are compiled here.

The capacity engine's hot path: the sans-IO cores it drives, and its event loop.
``setup.py`` reads ``COMPILED_MODULES`` from this file (it imports nothing, so the build
can run it without importing edgesim). Where they are not compiled (editable installs,
``setup.py build_ext --inplace``, ``EDGESIM_COMPILE=0``) the same modules run as plain
Python, with the same results, about 2.5x slower (docs/benchmarks.md, "Compiled cores").
"""

from __future__ import annotations

COMPILED_MODULES = (
    "edgesim.http",
    "edgesim._cachestore",
    "edgesim.cache",
    "edgesim.node",
    "edgesim._modelled",
    "edgesim.metrics",
    "edgesim.engine",
    "edgesim._reqfields",
    "origin.core",
    "origin._catalog",
    "origin._config",
)


def compiled_modules() -> list[str]:
    """The modules of ``COMPILED_MODULES`` that this installation loads as C extensions
    (found without importing them)."""
    from importlib.machinery import EXTENSION_SUFFIXES
    from importlib.util import find_spec

    out = []
    for name in COMPILED_MODULES:
        spec = find_spec(name)
        origin = spec.origin if spec is not None else None
        if origin is not None and origin.endswith(tuple(EXTENSION_SUFFIXES)):
            out.append(name)
    return out


def cores_description() -> str:
    """One phrase for ``--version`` and benchmark output."""
    n = len(compiled_modules())
    if n == len(COMPILED_MODULES):
        return "cores compiled with mypyc"
    if n == 0:
        return "cores in plain Python"
    return f"{n} of {len(COMPILED_MODULES)} core modules compiled with mypyc (a stale build?)"
