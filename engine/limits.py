"""Splitting work around the device's binding limits.

A storage-buffer binding may span at most ``maxStorageBufferRange`` bytes (128 MiB on lavapipe, the
spec minimum; 4 GiB - 1 on NVIDIA/AMD) and must start at a multiple of
``minStorageBufferOffsetAlignment``. Element-wise and per-member work larger than that runs in
ranges of rows (``DeviceArray.rows``) that respect both; everything else is refused when bound
(``Recorder.dispatch`` raises :class:`LimitError` before recording).
"""
from __future__ import annotations

import math

from .errors import LimitError, _human


def row_ranges(ctx, n_rows: int, *row_bytes: int, what: str = "array") -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``n_rows`` rows such that for every array whose rows are
    ``row_bytes`` long, ``rows(start, stop)`` binds at most ``max_storage_buffer_range`` bytes from
    an offset aligned to ``min_storage_buffer_offset_alignment``. One range when everything fits."""
    n_rows = int(n_rows)
    limit, align = ctx.max_storage_buffer_range, ctx.min_storage_buffer_offset_alignment
    widest = max((int(b) for b in row_bytes), default=0)
    if n_rows * widest <= limit or n_rows <= 1:
        return [(0, n_rows)]
    step = 1                                  # rows per range must keep every start aligned
    for b in row_bytes:
        need = align // math.gcd(align, int(b)) if b else 1
        step = step * need // math.gcd(step, need)
    per = (limit // widest) // step * step
    if per < 1:
        raise LimitError(f"{what}: one row of {_human(widest)} ({widest} bytes) with alignment {align} cannot be "
                         f"bound within this device's maxStorageBufferRange of {_human(limit)}")
    return [(s, min(s + per, n_rows)) for s in range(0, n_rows, per)]
