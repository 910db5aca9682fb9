"""cffi build script for the native matcher (runs at build time only).

API (out-of-line) mode: setuptools calls ``ffibuilder`` through ``cffi_modules`` in
setup.py and compiles ``native/src/*.c`` into ``edgesim._redirects_cffi``.

``EDGESIM_SANITIZE=1`` builds with AddressSanitizer and UBSan (see docs/sanitizers.md).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
# Relative paths keep machine paths out of the generated sources; setuptools runs
# the build from the project root.
ROOT = HERE.parent


def _rel(p: Path) -> str:
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


SOURCES = sorted(_rel(p) for p in (HERE / "src").glob("*.c"))

CFLAGS = ["-std=c11", "-O2", "-Wall", "-Wextra", "-fvisibility=hidden"]
LDFLAGS: list[str] = []
if os.environ.get("EDGESIM_SANITIZE") == "1":
    CFLAGS = [
        "-std=c11",
        "-O1",
        "-g",
        "-fno-omit-frame-pointer",
        "-fsanitize=address,undefined",
        "-fno-sanitize-recover=undefined",
        "-Wall",
        "-Wextra",
    ]
    LDFLAGS = ["-fsanitize=address,undefined"]

ffibuilder = FFI()
ffibuilder.cdef((HERE / "esr_cdef.h").read_text(encoding="utf-8"))
ffibuilder.set_source(
    "edgesim._redirects_cffi",
    '#include "esr.h"\n',
    sources=SOURCES,
    include_dirs=[_rel(HERE / "include"), _rel(HERE / "src")],
    extra_compile_args=CFLAGS,
    extra_link_args=LDFLAGS,
)

if __name__ == "__main__":  # pragma: no cover - manual builds
    ffibuilder.compile(verbose=True, tmpdir=sys.argv[1] if len(sys.argv) > 1 else ".")
