"""The Zarr store of a :func:`vkbands.sweep` (private): created once, written one chunk of runs at a time,
checked before it is resumed or read.

Layout (Zarr v3, a directory; every array chunked along ``run`` by the sweep's ``chunk_runs``, the
other axes whole, so writing one chunk of runs touches only that chunk's files)::

    STORE/zarr.json         group; attributes: the Dataset's attrs + "vkbands_sweep" (JSON string:
                            {"format": 1, "fingerprint": {...}, "chunk_runs": n, "n_chunks": k})
    STORE/run, t, band      index coordinates (written at creation)
    STORE/<param>, seed     coordinates along run (written at creation)
    STORE/energies ...      data variables (fill values until their chunk is written)
    STORE/chunk_done        bool (n_chunks,), chunks of 1: set AFTER a chunk's data is written

A chunk counts as finished only when its ``chunk_done`` entry is set; any other is recomputed and
rewritten whole on resume. Zarr's local store writes every file to a temporary name, then renames it,
so a crash leaves whole files. The store is created in a temporary sibling directory and renamed into
place, so STORE never exists half-made.

Security (``/work/shared/SECURITY.md``): the metadata is read as JSON only, before Zarr or xarray open
anything; every array must be one the sweep wrote (its name, dimension names, a plain numeric or bool
data type and the usual compression codecs), so no object dtype or pickle codec is ever decoded; a
path that exists but is not a sweep store is refused, never written.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile

import numpy as np

__all__ = ["MARK", "FORMAT", "create", "read_record", "check_arrays", "set_attrs", "write_chunk", "open_dataset", "done_chunks", "differences"]

MARK = "vkbands_sweep"
FORMAT = 1
DONE = "chunk_done"
_DTYPES = {"float64", "float32", "int64", "bool"}
_CODECS = {"bytes", "zstd", "blosc", "gzip", "crc32c", "transpose"}


def _json_file(path, what):
    try:
        with open(path, "rb") as f:
            text = f.read(1 << 24)
        return json.loads(text)
    except (OSError, ValueError) as e:
        raise ValueError(f"{what}: cannot be read as JSON ({e})") from None


def _not_a_store(path, why):
    return ValueError(f"store {os.fspath(path)!r} exists but is not a vkbands sweep store ({why}); it is left "
                      "untouched: give a new path (or remove it yourself)")


def create(path, variables, coords, attrs, meta):
    """Make the store at ``path`` (which must not exist). ``variables``: ``{name: (dims, shape, dtype,
    fill, chunks, attrs)}`` (data variables and coordinates alike); ``coords``: ``{name: values}``
    written now; ``attrs``: the Dataset's attributes; ``meta``: the "vkbands_sweep" record."""
    import zarr
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(os.path.abspath(path)) + ".tmp-", dir=parent)
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        group_attrs = dict(attrs, **{MARK: json.dumps(meta, sort_keys=True)})
        g = zarr.open_group(tmp, mode="w", zarr_format=3, attributes=group_attrs)
        for name, (dims, shape, dtype, fill, chunks, vattrs) in variables.items():
            a = g.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill,
                               dimension_names=list(dims), attributes=dict(vattrs))
            if name in coords:
                a[...] = np.asarray(coords[name], dtype=dtype)
        if os.path.lexists(path):
            raise FileExistsError(f"store {path!r} appeared while this sweep was creating it; run again")
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_record(path):
    """The "vkbands_sweep" record of the store at ``path``, read as JSON only; a ValueError saying why
    when ``path`` is not a sweep store of this format."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise _not_a_store(path, "not a directory")
    top = os.path.join(path, "zarr.json")
    if not os.path.isfile(top):
        why = "an empty folder" if not os.listdir(path) else "no zarr.json"
        raise _not_a_store(path, why)
    meta = _json_file(top, f"store {path!r}: zarr.json")
    if not isinstance(meta, dict) or meta.get("zarr_format") != 3 or meta.get("node_type") != "group":
        raise _not_a_store(path, "not a Zarr v3 group")
    attrs = meta.get("attributes") or {}
    if MARK not in attrs or not isinstance(attrs[MARK], str):
        raise _not_a_store(path, f"a Zarr group without the {MARK!r} record")
    try:
        record = json.loads(attrs[MARK])
    except ValueError:
        raise _not_a_store(path, f"its {MARK!r} record is not JSON") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        got = record.get("format") if isinstance(record, dict) else record
        raise ValueError(f"store {path!r}: a vkbands sweep store of format {got!r}; this vkbands reads format "
                         f"{FORMAT}")
    return record


def check_arrays(path, variables):
    """Check (JSON only) that the store at ``path`` holds exactly ``variables`` (names, dimension names,
    shapes, data types) with safe codecs: a ValueError saying what differs otherwise."""
    path = os.fspath(path)
    present = sorted(e for e in os.listdir(path) if e != "zarr.json")
    expected = sorted(variables)
    if present != expected:
        extra, missing = sorted(set(present) - set(expected)), sorted(set(expected) - set(present))
        raise ValueError(f"store {path!r} holds other arrays than this sweep writes"
                         f"{f'; unexpected: {extra}' if extra else ''}{f'; missing: {missing}' if missing else ''}")
    for name, (dims, shape, dtype, _fill, chunks, _attrs) in variables.items():
        m = _json_file(os.path.join(path, name, "zarr.json"), f"store {path!r}: array {name!r}")
        if not isinstance(m, dict) or m.get("node_type") != "array" or m.get("zarr_format") != 3:
            raise ValueError(f"store {path!r}: {name!r} is not a Zarr v3 array")
        if m.get("data_type") not in _DTYPES or m.get("data_type") != np.dtype(dtype).name:
            raise ValueError(f"store {path!r}: array {name!r} has data type {m.get('data_type')!r}; "
                             f"this sweep writes {np.dtype(dtype).name}")
        codecs = [c.get("name") if isinstance(c, dict) else c for c in m.get("codecs", [])]
        if any(c not in _CODECS for c in codecs):
            raise ValueError(f"store {path!r}: array {name!r} uses codecs {codecs}; allowed: {sorted(_CODECS)}")
        if list(m.get("dimension_names") or []) != list(dims):
            raise ValueError(f"store {path!r}: array {name!r} has dimensions {m.get('dimension_names')}; this "
                             f"sweep writes {list(dims)}")
        if list(m.get("shape") or []) != list(shape):
            raise ValueError(f"store {path!r}: array {name!r} has shape {m.get('shape')}; this sweep writes "
                             f"{list(shape)}")
        grid = (m.get("chunk_grid") or {}).get("configuration") or {}
        if list(grid.get("chunk_shape") or []) != list(chunks):
            raise ValueError(f"store {path!r}: array {name!r} has chunks {grid.get('chunk_shape')}; this sweep "
                             f"writes {list(chunks)}")


def differences(given: dict, stored: dict) -> list:
    """``["steps 500 != 1000", ...]``: the fingerprint entries that differ (this call's value first)."""
    out = []
    for key in sorted(set(given) | set(stored)):
        a, b = given.get(key, "(absent)"), stored.get(key, "(absent)")
        if a != b:
            out.append(f"{key} {_short(a)} != {_short(b)}")
    return out


def _short(v):
    text = json.dumps(v, sort_keys=True) if not isinstance(v, str) else v
    return text if len(text) <= 80 else text[:77] + "..."


def _group(path):
    import zarr
    return zarr.open_group(os.fspath(path), mode="r+", zarr_format=3)


def done_chunks(path) -> np.ndarray:
    """The ``chunk_done`` markers, bool (n_chunks,)."""
    return np.asarray(_group(path)[DONE][...], dtype=bool)


def write_chunk(path, index, start, arrays: dict):
    """Write one chunk's arrays (``{name: values for runs start..start+n}``), then set its marker."""
    g = _group(path)
    for name, values in arrays.items():
        g[name][start:start + len(values)] = values
    g[DONE][index] = True


def set_attrs(path, **attrs):
    """Update the group's attributes (Zarr writes zarr.json to a temporary name, then renames it)."""
    _group(path).attrs.update(attrs)


def open_dataset(path):
    """The Dataset of the store, lazily (no values read until used), without the store's bookkeeping."""
    import xarray as xr
    ds = xr.open_zarr(os.fspath(path), chunks=None, mask_and_scale=False, decode_times=False,
                      decode_timedelta=False, consolidated=False, zarr_format=3)
    ds = ds.drop_vars(DONE)
    ds.attrs.pop(MARK, None)
    return ds
