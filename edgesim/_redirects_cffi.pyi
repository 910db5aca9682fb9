# Stub for the cffi module generated at build time from native/build_redirects.py.
from typing import Any

ffi: Any
lib: Any
