"""Optional packages some tests need: `make test` installs them all ('.[dev]'); the GPU kit carries
only vkbands' core dependencies (kit/README.md), so there these tests skip, naming the package.

In CI (``CI`` set) nothing may skip for a missing package: :func:`need` imports it plainly, so a
missing install step fails the run instead of hiding the tests."""
import importlib
import os

import pytest

_WHY = "not installed (the GPU kit carries vkbands' core dependencies only; `make test` installs it)"


def need(name):
    """The module ``name``; skips the calling test (or module) when it is missing, except in CI."""
    if os.environ.get("CI"):
        return importlib.import_module(name)
    return pytest.importorskip(name, reason=f"{name} {_WHY}")
