"""GLSL -> SPIR-V: shipped with the package where it can be, else compiled with ``glslc`` and cached.

**Content key.** SHA-256 of the target environment, the stage, the defines, and the name and text of
the shader and of every file it ``#include``s (recursively) -- not of the ``glslc`` version, so the
key of an unchanged shader is the same on every machine, and an edited shader gets a new one.

**Variants.** A shader (or a file it includes) declares the ``#define`` flags it is built with in one
comment line next to the ``#ifdef``s, e.g. ``// vkbands: variants STATS PAIRS``: every subset of those
flags, each defined as 1 (``defines={"STATS": 1}``), is a variant. Specialisation constants cover
everything else, so these are all the SPIR-V modules the library uses.

:func:`compile_glsl` looks for the SPIR-V in this order:

1. **Shipped.** A wheel carries every variant, compiled at build time (``setup.py`` calls
   :func:`build_shipped`), in ``vkbands/shaders/spirv/``: ``<content key>.spv`` and
   ``manifest.json`` (content key -> SHA-256 of the file). Used when the key is there and the file
   matches its checksum (and looks like SPIR-V); then ``glslc`` is never started. An editable install
   has none: steps 2-3 do the work.
2. **Disk cache**, ``$VKBANDS_CACHE_DIR`` or ``~/.cache/vkbands/spirv`` (created 0700; refused when
   owned by another user or writable by everyone). Key: the content key and ``glslc --version``. An
   entry is a small header, the SHA-256 of the SPIR-V, then the SPIR-V; one that fails the check (or
   is not SPIR-V) is recompiled and replaced atomically (temp file in the same directory + rename).
   When the directory is unusable, compiled SPIR-V is kept in memory for the process (one warning).
3. **glslc.** A failed compile raises :class:`ShaderCompileError` with file and line.
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vkbands.shaders import SHADER_DIR

from .errors import ShaderCompileError

# No -O: spirv-opt would strip the names that reflection packs push constants by; drivers optimise anyway.
TARGET_ENV = "vulkan1.1"  # SPIR-V 1.3: every Vulkan 1.1+ driver (all current GPUs and lavapipe)
SHIPPED_DIR = SHADER_DIR / "spirv"   # built into wheels; absent in a source checkout
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
SPIRV_MAGIC = 0x07230203
_CACHE_HEADER = b"vkbands-spirv-cache-1\n"  # + 32-byte SHA-256 of the SPIR-V + the SPIR-V
_STAGES = {".comp": "compute", ".vert": "vertex", ".frag": "fragment"}
_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
_VARIANTS = re.compile(r"^[ \t]*//[ \t]*vkbands:[ \t]*variants(?P<flags>(?:[ \t]+[A-Za-z_]\w*)*)", re.M)  # then free text
_DIAG = re.compile(r"^(?P<file>.*?):(?P<line>\d+): (?:error|fatal error): (?P<msg>.*)$", re.M)

_memory_cache: dict[str, bytes] = {}   # used when the cache directory is unusable (or a write failed)
_warned: set = set()


class ShaderVariantWarning(UserWarning):
    """A library shader was compiled with defines that no ``// vkbands: variants`` line declares, so a
    wheel does not ship that SPIR-V and machines without ``glslc`` cannot run it."""


def _warn_once(key, message, category=UserWarning, depth=1):
    """Warn once per key, pointing at the caller of compile_glsl (``depth``: frames from it to here)."""
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, category, stacklevel=2 + depth)


def shader_path(name: str | os.PathLike) -> Path:
    """Resolve ``name`` (``"add.comp"`` or a path) to an existing GLSL file."""
    p = Path(name)
    if not p.is_absolute() and not p.exists():
        p = SHADER_DIR / p
    if not p.is_file():
        known = sorted(f.name for f in SHADER_DIR.iterdir() if f.suffix in _STAGES)
        raise FileNotFoundError(f"shader {str(name)!r} not found; shaders in {SHADER_DIR}: {', '.join(known)}")
    return p


def _stage(path: Path) -> str:
    stage = _STAGES.get(path.suffix)
    if stage is None:
        raise ValueError(f"shader {path.name!r}: unknown stage; allowed extensions: {', '.join(_STAGES)}")
    return stage


def _sources(path: Path, seen=None) -> list[tuple[str, bytes]]:
    """The file and everything it includes, in a stable order (for the content key)."""
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


def content_key(name: str | os.PathLike, defines: dict | None = None) -> str:
    """The SHA-256 (hex) naming the SPIR-V of ``name`` with ``defines`` (see the module docstring)."""
    path = shader_path(name).resolve()
    h = hashlib.sha256()
    for part in [TARGET_ENV, _stage(path), *_define_args(defines)]:
        h.update(part.encode() + b"\0")
    for fname, text in _sources(path):
        h.update(fname.encode() + b"\0" + text + b"\0")
    return h.hexdigest()


def declared_variants(name: str | os.PathLike) -> tuple[str, ...]:
    """The flags of the ``// vkbands: variants ...`` lines in the shader and the files it includes."""
    flags = set()
    for _, text in _sources(shader_path(name).resolve()):
        for m in _VARIANTS.finditer(text.decode("utf-8", "replace")):
            flags.update(m["flags"].split())
    return tuple(sorted(flags))


def shader_variants(shader_dir: Path = SHADER_DIR) -> list[tuple[Path, dict | None]]:
    """Every (shader, defines) the library uses: each stage file with each subset of its declared flags."""
    out = []
    for path in sorted(p.resolve() for p in Path(shader_dir).iterdir() if p.suffix in _STAGES):
        flags = declared_variants(path)
        for r in range(len(flags) + 1):
            for combo in itertools.combinations(flags, r):
                out.append((path, {f: 1 for f in combo} or None))
    return out


def _is_spirv(blob: bytes) -> bool:
    return len(blob) >= 20 and len(blob) % 4 == 0 and int.from_bytes(blob[:4], "little") == SPIRV_MAGIC


# ----------------------------------------------------------------------------- 1. shipped SPIR-V
@functools.lru_cache(maxsize=8)
def _manifest(d: Path) -> dict:
    """content key -> entry of the manifest in ``d`` ({} when there is none or it is unusable)."""
    try:
        data = json.loads((d / MANIFEST).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        _warn_once(("manifest", str(d)), f"shipped SPIR-V manifest {d / MANIFEST} is unreadable ({e}); ignored",
                   depth=3)
        return {}
    if not (isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT
            and data.get("target_env") == TARGET_ENV and isinstance(data.get("entries"), dict)):
        _warn_once(("manifest", str(d)), f"shipped SPIR-V manifest {d / MANIFEST} is not format "
                                         f"{MANIFEST_FORMAT} for {TARGET_ENV}; ignored", depth=3)
        return {}
    return data["entries"]


def _shipped(key: str) -> bytes | None:
    entry = _manifest(SHIPPED_DIR).get(key)
    if not isinstance(entry, dict):
        return None
    f = SHIPPED_DIR / f"{key}.spv"   # named by our own key, never by a path from the manifest
    try:
        spv = f.read_bytes()
    except OSError:
        spv = b""
    if not _is_spirv(spv) or hashlib.sha256(spv).hexdigest() != entry.get("sha256"):
        _warn_once(("shipped", str(f)), f"shipped SPIR-V {f} ({entry.get('shader')}) is missing or fails its "
                                        "checksum; ignored (the shader is compiled with glslc instead)", depth=2)
        return None
    return spv


# ----------------------------------------------------------------------------- 2. disk cache
def cache_dir() -> Path | None:
    """The SPIR-V cache directory (created 0700), or None when it cannot be used (then one warning)."""
    d = os.environ.get("VKBANDS_CACHE_DIR")
    try:
        d = Path(d) if d else Path.home() / ".cache" / "vkbands" / "spirv"
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = d.stat()
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError("not a directory")
        if st.st_uid != os.geteuid():
            raise PermissionError("owned by another user")
        if st.st_mode & stat.S_IWOTH:
            raise PermissionError("writable by every user")
        if not os.access(d, os.W_OK | os.X_OK):
            raise PermissionError("not writable")
    except (OSError, RuntimeError) as e:   # RuntimeError: Path.home() without a home
        _warn_once(("cache", str(d)), f"shader cache directory {d} is unusable ({e}); compiled SPIR-V is kept "
                                      "in memory for this process only (set VKBANDS_CACHE_DIR to a directory "
                                      "of your own)", depth=2)
        return None
    return d


def _cache_read(f: Path) -> bytes | None:
    try:
        blob = f.read_bytes()
    except OSError:
        return None
    n = len(_CACHE_HEADER)
    spv = blob[n + 32:]
    if blob[:n] == _CACHE_HEADER and _is_spirv(spv) and hashlib.sha256(spv).digest() == blob[n:n + 32]:
        return spv
    return None


def _cache_write(f: Path, spv: bytes) -> bool:
    """Write atomically (a reader sees the old entry or the new one, never a part); False on failure."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=f.parent, prefix=f".{f.stem}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(_CACHE_HEADER + hashlib.sha256(spv).digest() + spv)
        os.replace(tmp, f)
        return True
    except OSError:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        return False


# ----------------------------------------------------------------------------- 3. glslc
def _glslc() -> str | None:
    return shutil.which("glslc")


@functools.lru_cache(maxsize=1)
def glslc_version() -> str:
    exe = _glslc()
    if exe is None:
        raise ShaderCompileError("glslc", None, "glslc not found on PATH (Debian: apt-get install glslc)")
    return subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout.strip()


def _run_glslc(exe: str, path: Path, defines: dict | None) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.spv"
        cmd = [exe, f"-fshader-stage={_stage(path)}", f"--target-env={TARGET_ENV}",
               "-I", str(SHADER_DIR), *_define_args(defines), str(path), "-o", str(out)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            m = _DIAG.search(res.stderr)
            if m:
                raise ShaderCompileError(m["file"], int(m["line"]), m["msg"].strip(), res.stderr)
            raise ShaderCompileError(path, None, res.stderr.strip() or "glslc failed", res.stderr)
        return out.read_bytes()


def _is_library_shader(path: Path) -> bool:
    return path.parent == SHADER_DIR


def compile_glsl(name: str | os.PathLike, defines: dict | None = None) -> bytes:
    """SPIR-V bytes of a GLSL shader (stage from its extension): shipped, cached, or compiled."""
    path = shader_path(name).resolve()
    _stage(path)
    key = content_key(path, defines)
    spv = _shipped(key)
    if spv is not None:
        return spv
    library = _is_library_shader(path)
    if library and defines:
        declared = declared_variants(path)
        if any(k not in declared or v != 1 for k, v in defines.items()):
            _warn_once(("variant", path.name, tuple(sorted(defines.items()))),
                       f"{path.name} compiled with defines {defines}, which no '// vkbands: variants' line "
                       f"declares (declared: {', '.join(declared) or 'none'}): wheels will not ship this "
                       "SPIR-V, so it needs glslc at run time", ShaderVariantWarning)
    exe = _glslc()
    if exe is None:
        what = f"{path.name}" + (f" with defines {defines}" if defines else "")
        why = (f"it is not among the SPIR-V shipped with vkbands ({SHIPPED_DIR}"
               f"{'' if (SHIPPED_DIR / MANIFEST).is_file() else ': none in this install'})" if library
               else "it is not part of vkbands")
        raise ShaderCompileError(path, None, f"glslc not found on PATH, needed to compile {what}: {why}. "
                                             "Install glslc (Debian: apt-get install glslc) or a vkbands wheel "
                                             "built with its SPIR-V")
    disk_key = hashlib.sha256(f"{key}\0{glslc_version()}".encode()).hexdigest()
    mem_key = f"{path.stem}-{_stage(path)}-{disk_key[:24]}"
    d = cache_dir()
    f = d / f"{mem_key}.spv" if d is not None else None
    spv = _memory_cache.get(mem_key) or (_cache_read(f) if f is not None else None)
    if spv is not None:
        return spv
    spv = _run_glslc(exe, path, defines)
    if f is None or not _cache_write(f, spv):
        _memory_cache[mem_key] = spv
    return spv


# ----------------------------------------------------------------------------- build time
def build_shipped(out_dir: str | os.PathLike, jobs: int | None = None) -> list[Path]:
    """Compile every variant of :func:`shader_variants` into ``out_dir`` (``<key>.spv`` + ``manifest.json``,
    whatever was there before removed); returns the files written. Needs ``glslc``."""
    exe = _glslc()
    if exe is None:
        raise ShaderCompileError("glslc", None, "glslc not found on PATH: it compiles the shaders into the "
                                                "package at build time (Debian: apt-get install glslc)")
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    variants = shader_variants()
    with ThreadPoolExecutor(jobs or os.cpu_count() or 1) as pool:
        spvs = list(pool.map(lambda v: _run_glslc(exe, *v), variants))
    entries, files = {}, []
    for (path, defines), spv in zip(variants, spvs):
        key = content_key(path, defines)
        f = out / f"{key}.spv"
        f.write_bytes(spv)
        files.append(f)
        entries[key] = {"shader": path.name, "defines": defines or {}, "sha256": hashlib.sha256(spv).hexdigest()}
    manifest = {"format": MANIFEST_FORMAT, "target_env": TARGET_ENV, "glslc": glslc_version(), "entries": entries}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    files.append(out / MANIFEST)
    return files
