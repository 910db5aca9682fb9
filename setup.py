# Build glue only: cffi has no declarative configuration yet (python-cffi/cffi#55).
# Metadata lives in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["native/build_redirects.py:ffibuilder"])
