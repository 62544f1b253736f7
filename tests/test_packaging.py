"""pyproject.toml installs every library package and nothing else (issue 9): each folder with an
__init__.py under a mapped source folder is listed in [tool.setuptools] packages (a package left out
is missing from the wheel, so `import vkbands` fails outside an editable install), and tests/ and
benchmarks/ are not installed. Runs in the checkout only (the GPU kit has no pyproject.toml)."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"


def test_every_library_package_is_installed():
    tomllib = pytest.importorskip("tomllib")
    if not PYPROJECT.is_file():
        pytest.skip("no pyproject.toml beside tests/ (the GPU kit)")
    setuptools = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["setuptools"]
    listed, folders = set(setuptools["packages"]), setuptools["package-dir"]
    found = set()
    for package, folder in folders.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            if "__pycache__" not in parts:
                found.add(".".join((package,) + parts))
    assert found <= listed, f"packages missing from pyproject.toml: {sorted(found - listed)}"
    assert not {"vkbands.tests", "vkbands.benchmarks"} & listed
    assert not {"tests", "benchmarks"} & set(folders.values())
