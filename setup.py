"""Build hook: a wheel carries the SPIR-V of every shader variant (see engine/shaders.py).

Everything else about the package is in pyproject.toml. ``build_py`` (run by ``pip wheel .`` and
``pip install .``) compiles the variants with glslc into ``vkbands/shaders/spirv/`` of the build tree,
so a machine without glslc runs the library as is. An editable install (``pip install -e .``) skips
this: it uses glslc and the disk cache at run time.
"""
import importlib.util
import sys
import types
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def _engine_shaders():
    """engine/shaders.py, imported without the rest of vkbands (which needs NumPy and Vulkan): stub
    parent packages pointing at the source folders, so the key and the variants are computed by the
    same code that looks them up at run time."""
    pkg = types.ModuleType("vkbands")
    pkg.__path__ = []
    sys.modules.setdefault("vkbands", pkg)
    spec = importlib.util.spec_from_file_location("vkbands.shaders", ROOT / "shaders" / "__init__.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["vkbands.shaders"] = mod
    spec.loader.exec_module(mod)
    engine = types.ModuleType("vkbands.engine")
    engine.__path__ = [str(ROOT / "engine")]
    sys.modules["vkbands.engine"] = engine
    return importlib.import_module("vkbands.engine.shaders")


class build_py_with_spirv(build_py):
    def run(self):
        super().run()
        self._spirv = []
        if getattr(self, "editable_mode", False):
            return
        out = Path(self.build_lib) / "vkbands" / "shaders" / "spirv"
        self._spirv = [str(f) for f in _engine_shaders().build_shipped(out)]
        print(f"vkbands: compiled {len(self._spirv) - 1} shader variants into {out}")

    def get_outputs(self, include_bytecode=1):
        return super().get_outputs(include_bytecode) + list(getattr(self, "_spirv", []))


setup(cmdclass={"build_py": build_py_with_spirv})
