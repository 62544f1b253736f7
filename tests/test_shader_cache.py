"""Where SPIR-V comes from (engine/shaders.py): the SPIR-V shipped in a wheel, used without glslc and
only when it matches its checksum; the disk cache, whose damaged entries are recompiled and replaced;
an unusable cache directory, which falls back to memory with one warning. Every recovered module is
run: a Kernel on add.comp must still add like NumPy."""
import contextlib
import json
import os
import re
import shutil
import stat
import warnings

import numpy as np
import pytest

from vkbands.engine import Kernel, ShaderCompileError
from vkbands.engine import shaders as S

HAVE_GLSLC = shutil.which("glslc") is not None
needs_glslc = pytest.mark.skipif(not HAVE_GLSLC, reason="needs glslc (this test compiles shaders)")


def _assert_add_works(ctx):
    """A new pipeline from compile_glsl("add.comp") (not the context's cached one) computes a + b."""
    rng = np.random.default_rng(1)
    n = 10_007
    a, b = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    with Kernel(ctx, "add.comp") as k, ctx.array(a) as A, ctx.array(b) as B, ctx.empty(n) as C, \
            ctx.recorder() as rec:
        rec.dispatch(k, k.grid(-(-n // (k.local_size[0] * 16))), A, B, C, push={"n": n})
        rec.submit()
        np.testing.assert_array_equal(C.numpy(), a + b)


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """No shipped SPIR-V (as in a source checkout), a private cache dir, fresh warnings; counts glslc runs."""
    monkeypatch.setattr(S, "SHIPPED_DIR", tmp_path / "no-shipped")
    monkeypatch.setattr(S, "_warned", set())
    monkeypatch.setattr(S, "_memory_cache", {})
    monkeypatch.setenv("VKBANDS_CACHE_DIR", str(tmp_path / "cache"))
    runs = []
    real = S._run_glslc

    def counting(exe, path, defines):
        runs.append((path.name, defines))
        return real(exe, path, defines)
    monkeypatch.setattr(S, "_run_glslc", counting)
    return runs


def _no_glslc(monkeypatch):
    """glslc unreachable, and any attempt to start a process fails the test."""
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(S.shutil, "which", lambda *a, **k: None)

    def no_process(*a, **k):
        raise AssertionError(f"a process was started: {a}")
    monkeypatch.setattr(S.subprocess, "run", no_process)
    monkeypatch.setattr(S, "_run_glslc", lambda *a: no_process(*a))


# ----------------------------------------------------------------------------- disk cache
@needs_glslc
@pytest.mark.parametrize("damage", ["empty", "random", "truncated", "bitflip"])
def test_damaged_cache_entry_is_recompiled_and_replaced(ctx, fresh, tmp_path, damage):
    spv = S.compile_glsl("add.comp")
    cache = tmp_path / "cache"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    (entry,) = cache.glob("*.spv")
    assert fresh == [("add.comp", None)] and S._cache_read(entry) == spv
    blob = entry.read_bytes()
    entry.write_bytes({"empty": b"",
                       "random": np.random.default_rng(0).bytes(len(blob)),
                       "truncated": blob[: len(blob) // 2],
                       # valid header, magic and length; only the checksum tells
                       "bitflip": blob[:-8] + bytes([blob[-8] ^ 1]) + blob[-7:]}[damage])
    assert S._cache_read(entry) is None
    _assert_add_works(ctx)                                # compiled again, and the module works
    assert fresh == [("add.comp", None)] * 2
    assert S._cache_read(entry) == spv                    # the entry was replaced with a good one
    assert [f.name for f in cache.iterdir()] == [entry.name]   # no temp file left behind
    assert S.compile_glsl("add.comp") == spv and len(fresh) == 2   # and is used from now on


@needs_glslc
@pytest.mark.parametrize("where", ["proc", "regular file", "world-writable"])
def test_unusable_cache_dir_falls_back_to_memory_with_one_warning(ctx, fresh, tmp_path, monkeypatch, where):
    if where == "proc":
        d = "/proc/vkbands-no-such-dir"
    elif where == "regular file":
        d = tmp_path / "a-file"
        d.write_text("not a directory")
    else:
        d = tmp_path / "open"
        d.mkdir()
        d.chmod(0o777)
    monkeypatch.setenv("VKBANDS_CACHE_DIR", str(d))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spv = S.compile_glsl("add.comp")
        _assert_add_works(ctx)
        S.compile_glsl("maxabs.comp")
        assert S.compile_glsl("add.comp") == spv
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 1 and str(d) in msgs[0] and "in memory" in msgs[0], msgs
    assert fresh == [("add.comp", None), ("maxabs.comp", None)]   # the memory cache served the rest
    if where == "world-writable":
        assert list(d.iterdir()) == []


@needs_glslc
def test_undeclared_variant_of_a_library_shader_warns(fresh):
    with pytest.warns(S.ShaderVariantWarning, match="add.comp.*NOT_A_VARIANT"):
        S.compile_glsl("add.comp", {"NOT_A_VARIANT": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        S.compile_glsl("bands_rowsum.comp", {"STATS": 1})   # declared: no warning


# ----------------------------------------------------------------------------- shipped SPIR-V
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Shipped SPIR-V as a wheel build makes it (glslc), else the one of this install."""
    if HAVE_GLSLC:
        d = tmp_path_factory.mktemp("built") / "spirv"
        S.build_shipped(d)
        return d
    if (S.SHIPPED_DIR / S.MANIFEST).is_file():
        return S.SHIPPED_DIR
    pytest.skip("needs glslc or an install with shipped SPIR-V")


@pytest.fixture
def shipped(built, tmp_path, monkeypatch):
    """A private copy of the shipped SPIR-V, used by compile_glsl for this test."""
    d = tmp_path / "spirv"
    shutil.copytree(built, d)
    monkeypatch.setattr(S, "SHIPPED_DIR", d)
    monkeypatch.setattr(S, "_warned", set())
    monkeypatch.setattr(S, "_memory_cache", {})
    monkeypatch.setenv("VKBANDS_CACHE_DIR", str(tmp_path / "cache"))
    return d


def test_shipped_spirv_covers_every_variant(shipped):
    m = json.loads((shipped / S.MANIFEST).read_text())
    assert m["format"] == S.MANIFEST_FORMAT and m["target_env"] == S.TARGET_ENV
    want = {S.content_key(p, d) for p, d in S.shader_variants()}
    assert set(m["entries"]) == want
    assert {f.stem for f in shipped.glob("*.spv")} == want
    names = {(e["shader"], tuple(sorted(e["defines"]))) for e in m["entries"].values()}
    assert ("bands_pyramid.comp", ("PAIRS", "STATS")) in names and ("step_heat.comp", ("ALIGNED",)) in names
    assert ("bands_rowsum.comp", ("STATS",)) in names and ("imgui.frag", ()) in names


def test_shipped_spirv_is_used_without_glslc(ctx, shipped, tmp_path, monkeypatch):
    _no_glslc(monkeypatch)
    _assert_add_works(ctx)
    for path, defines in S.shader_variants():
        assert S.compile_glsl(path, defines) == (shipped / f"{S.content_key(path, defines)}.spv").read_bytes()
    assert not (tmp_path / "cache").exists()        # nothing compiled, nothing cached


def test_shipped_entry_with_bad_checksum_is_ignored(ctx, shipped, tmp_path, monkeypatch):
    key = S.content_key("add.comp")
    f = shipped / f"{key}.spv"
    good = f.read_bytes()
    f.write_bytes(good[:-4] + bytes(4))              # still looks like SPIR-V; the checksum differs
    if HAVE_GLSLC:                                   # ignored, compiled with glslc instead
        with pytest.warns(UserWarning, match="fails its checksum"):
            spv = S.compile_glsl("add.comp")
        assert spv == good and list((tmp_path / "cache").glob("*.spv"))
        _assert_add_works(ctx)
    _no_glslc(monkeypatch)
    monkeypatch.setattr(S, "_memory_cache", {})
    monkeypatch.setenv("VKBANDS_CACHE_DIR", str(tmp_path / "cache2"))
    warned = contextlib.nullcontext() if HAVE_GLSLC else pytest.warns(UserWarning, match="fails its checksum")
    with warned, pytest.raises(ShaderCompileError, match="glslc not found.*add.comp.*not among the SPIR-V shipped"):
        S.compile_glsl("add.comp")
    assert S.compile_glsl("maxabs.comp") is not None   # the other entries are still used


def test_edited_shader_does_not_use_stale_shipped_spirv(shipped, tmp_path, monkeypatch):
    src = tmp_path / "add.comp"                      # a copy of a library shader: same key, shipped one used
    src.write_bytes((S.SHADER_DIR / "add.comp").read_bytes())
    assert S.content_key(src) == S.content_key("add.comp")
    src.write_text(src.read_text() + "\n// edited\n")  # edited: another key, so never the shipped file
    assert S.content_key(src) != S.content_key("add.comp")
    _no_glslc(monkeypatch)
    with pytest.raises(ShaderCompileError, match="glslc not found"):
        S.compile_glsl(src)


# ----------------------------------------------------------------------------- declarations
_COND = re.compile(r"#\s*if(?:n?def)?\b([^\n]*)")
_DEFINE = re.compile(r"^\s*#\s*define\s+(\w+)", re.M)


def test_variant_declarations_match_the_ifdefs():
    """A declared flag is tested by the shader; a flag the shader tests is declared, or #defined by a
    library shader (include guards, COUPLED): else a wheel would lack a variant Python asks for."""
    files = [p for p in S.SHADER_DIR.iterdir() if p.suffix in (".comp", ".vert", ".frag", ".glsl")]
    defined = {n for p in files for n in _DEFINE.findall(p.read_text())}
    for path in (p for p in files if p.suffix != ".glsl"):
        text = "\n".join(t.decode() for _, t in S._sources(path.resolve()))
        tested = {n for cond in _COND.findall(text) for n in re.findall(r"[A-Za-z_]\w*", cond)} - {"defined"}
        declared = set(S.declared_variants(path))
        assert declared <= tested, f"{path.name}: declared but never tested: {declared - tested}"
        assert tested <= declared | defined, f"{path.name}: #ifdef'd but not declared: {tested - declared - defined}"
