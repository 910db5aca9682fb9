# Build glue only: cffi has no declarative configuration yet (python-cffi/cffi#55), and
# mypyc's build is a function call. Metadata lives in pyproject.toml.
#
# The capacity engine's hot path (the cores and the event loop) is compiled with mypyc
# when a wheel is built (`pip install .`): the same modules, run as C extensions,
# about 2.5x faster (docs/benchmarks.md, "Compiled cores"). They stay plain Python
# where they are not compiled: `setup.py build_ext --inplace`, editable installs, and
# any build with EDGESIM_COMPILE=0. EDGESIM_COMPILE=1 compiles even in place (then
# the .so files beside the sources shadow them until rebuilt or deleted).
import os
import runpy
import sys

from setuptools import setup

# The module list lives in edgesim/_compiled.py, which also tells at run time what is.
_HERE = os.path.dirname(os.path.abspath(__file__))
_LIST = runpy.run_path(os.path.join(_HERE, "edgesim", "_compiled.py"))["COMPILED_MODULES"]
COMPILED = [m.replace(".", "/") + ".py" for m in _LIST]


def _compile() -> bool:
    wanted = os.environ.get("EDGESIM_COMPILE")
    if wanted is not None:
        return wanted.strip() not in ("", "0")
    args = set(sys.argv[1:])
    if args & {"--inplace", "-i", "develop", "editable_wheel"}:
        return False
    return bool(args & {"bdist_wheel", "build", "build_ext", "install"})


ext_modules = []
if _compile():
    from mypyc.build import mypycify

    # Third-party imports (numpy, trio, ...) are typed Any: the build needs none of
    # them installed, and compiles the same code whatever versions are. (The
    # warnings that Any brings, on ignores and returns, are the linting's business.)
    flags = ["--ignore-missing-imports", "--no-warn-unused-ignores", "--no-warn-return-any"]
    ext_modules = mypycify([*flags, *COMPILED], opt_level="3")

setup(cffi_modules=["native/build_redirects.py:ffibuilder"], ext_modules=ext_modules)
