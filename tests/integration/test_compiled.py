"""The mypyc-compiled cores against the same modules run as plain Python.

A wheel build compiles ``edgesim._compiled.COMPILED_MODULES`` and ships their sources
beside them. Each run below goes in a child process: once as installed, once with an
import hook that loads those modules from their ``.py`` files. The reports must be
byte-identical (a float field holding a TOML integer once made them differ).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgesim._compiled import COMPILED_MODULES, compiled_modules, cores_description

_CHILD = r"""
import importlib.util, json, os, sys

if sys.argv[1] == "source":
    from edgesim._compiled import COMPILED_MODULES

    class _FromSource:
        def find_spec(self, name, path=None, target=None):
            if name not in COMPILED_MODULES:
                return None
            for entry in path or ():
                f = os.path.join(entry, name.rpartition(".")[2] + ".py")
                if os.path.exists(f):
                    return importlib.util.spec_from_file_location(name, f)
            return None

    sys.meta_path.insert(0, _FromSource())

from dataclasses import replace

from edgesim._compiled import compiled_modules
from edgesim._topoload import load_topology, resolve_topology_arg
from edgesim.engine import simulate

out = {"compiled": compiled_modules(), "loaded_from": sys.modules["edgesim.engine"].__file__}
demo = load_topology(resolve_topology_arg("demo"))
out["demo"] = simulate(demo, seed=3).to_dict(deterministic=True)
g5 = load_topology(resolve_topology_arg("global-5-regions"))
g5 = replace(g5, traffic=replace(g5.traffic, duration=1800.0, warmup=300.0))
out["sampled"] = simulate(g5, seed=2, sample_rate=0.05).to_dict(deterministic=True)
print(json.dumps(out, sort_keys=True))
"""


def _run(mode: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-P", "-c", _CHILD, mode], capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, object] = json.loads(proc.stdout)
    return out


def test_compiled_state_is_all_or_nothing() -> None:
    # A mix means a stale build: .so files of an older source beside newer .py files.
    assert compiled_modules() in ([], list(COMPILED_MODULES))
    assert cores_description() in ("cores compiled with mypyc", "cores in plain Python")


@pytest.mark.skipif(not compiled_modules(), reason="the cores are not compiled here (plain Python only)")
def test_compiled_cores_give_the_reports_of_their_sources() -> None:
    compiled, source = _run("installed"), _run("source")
    assert compiled["compiled"] == list(COMPILED_MODULES)
    assert str(compiled["loaded_from"]).endswith(".so")
    assert str(source["loaded_from"]).endswith("engine.py")
    for key in ("demo", "sampled"):
        assert json.dumps(compiled[key], sort_keys=True) == json.dumps(source[key], sort_keys=True), key
