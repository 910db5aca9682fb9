"""Makes sure the ``edgesim.testing`` plugin is active exactly once.

Installed (CI), the ``pytest11`` entry point has already registered it. From a source
checkout on PYTHONPATH there is no entry point, so it is registered here. A
``pytest_plugins = ["edgesim.testing"]`` line can't do both: with the entry point
active, pytest would register the module a second time under its module name, and
pluggy refuses a plugin registered under two names (ValueError). ``-p edgesim.testing``
on the command line is also fine: the check below sees it.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    import edgesim.testing

    if not config.pluginmanager.is_registered(edgesim.testing):
        config.pluginmanager.register(edgesim.testing, "edgesim")
