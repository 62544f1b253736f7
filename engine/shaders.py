"""GLSL -> SPIR-V with ``glslc``, cached on disk by content.

The cache key is a SHA-256 of: the shader source, every file it ``#include``s (recursively), the
defines, the target environment and ``glslc --version``. Cache directory: ``$VKBANDS_CACHE_DIR`` or
``~/.cache/vkbands/spirv``. A failed compile raises :class:`ShaderCompileError` with file and line.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from vkbands.shaders import SHADER_DIR

from .errors import ShaderCompileError

# No -O: spirv-opt would strip the names that reflection packs push constants by; drivers optimise anyway.
TARGET_ENV = "vulkan1.1"  # SPIR-V 1.3: every Vulkan 1.1+ driver (all current GPUs and lavapipe)
_STAGES = {".comp": "compute", ".vert": "vertex", ".frag": "fragment"}
_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
_DIAG = re.compile(r"^(?P<file>.*?):(?P<line>\d+): (?:error|fatal error): (?P<msg>.*)$", re.M)


def shader_path(name: str | os.PathLike) -> Path:
    """Resolve ``name`` (``"add.comp"`` or a path) to an existing GLSL file."""
    p = Path(name)
    if not p.is_absolute() and not p.exists():
        p = SHADER_DIR / p
    if not p.is_file():
        known = sorted(f.name for f in SHADER_DIR.iterdir() if f.suffix in _STAGES)
        raise FileNotFoundError(f"shader {str(name)!r} not found; shaders in {SHADER_DIR}: {', '.join(known)}")
    return p


@functools.lru_cache(maxsize=1)
def glslc_version() -> str:
    exe = shutil.which("glslc")
    if exe is None:
        raise ShaderCompileError("glslc", None, "glslc not found on PATH (Debian: apt-get install glslc)")
    return subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout.strip()


def cache_dir() -> Path:
    d = Path(os.environ.get("VKBANDS_CACHE_DIR") or Path.home() / ".cache" / "vkbands" / "spirv")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _sources(path: Path, seen=None) -> list[tuple[str, bytes]]:
    """The file and everything it includes, in a stable order (for the cache key)."""
    seen = set() if seen is None else seen
    if path in seen:
        return []
    seen.add(path)
    text = path.read_bytes()
    out = [(path.name, text)]
    for inc in _INCLUDE.findall(text.decode("utf-8", "replace")):
        for base in (path.parent, SHADER_DIR):
            if (base / inc).is_file():
                out += _sources((base / inc).resolve(), seen)
                break
    return out


def _define_args(defines: dict | None) -> list[str]:
    return [f"-D{k}" if v is None else f"-D{k}={v}" for k, v in sorted((defines or {}).items())]


def compile_glsl(name: str | os.PathLike, defines: dict | None = None) -> bytes:
    """Compile a GLSL shader (stage from its extension) to SPIR-V bytes, using the disk cache."""
    path = shader_path(name).resolve()
    stage = _STAGES.get(path.suffix)
    if stage is None:
        raise ValueError(f"shader {path.name!r}: unknown stage; allowed extensions: {', '.join(_STAGES)}")
    args = _define_args(defines)
    h = hashlib.sha256()
    for part in [glslc_version(), TARGET_ENV, *args]:
        h.update(part.encode() + b"\0")
    for fname, text in _sources(path):
        h.update(fname.encode() + b"\0" + text + b"\0")
    cached = cache_dir() / f"{path.stem}-{stage}-{h.hexdigest()[:24]}.spv"
    if cached.is_file():
        return cached.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.spv"
        cmd = ["glslc", f"-fshader-stage={stage}", f"--target-env={TARGET_ENV}",
               "-I", str(SHADER_DIR), *args, str(path), "-o", str(out)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            m = _DIAG.search(res.stderr)
            if m:
                raise ShaderCompileError(m["file"], int(m["line"]), m["msg"].strip(), res.stderr)
            raise ShaderCompileError(path, None, res.stderr.strip() or "glslc failed", res.stderr)
        spv = out.read_bytes()
    tmp_target = cached.with_suffix(f".{os.getpid()}.tmp")
    tmp_target.write_bytes(spv)
    os.replace(tmp_target, cached)  # atomic: concurrent processes never read a half-written file
    return spv
