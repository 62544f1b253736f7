"""Resource: the lifetime protocol shared by every object a Context owns.

A resource registers with its context when created (``_adopt``), is closed explicitly (``close()``,
idempotent) or by ``with``, and frees its Vulkan handles in ``_destroy()`` — which is skipped when the
context is already gone (its device took everything with it). The context closes its children,
newest first, when it closes.
"""
from __future__ import annotations

from .errors import ClosedError


class Resource:
    ctx = None
    _closed = True

    def _adopt(self, ctx):
        """Mark this object open and make ``ctx`` close it (call at the end of ``__init__``)."""
        self._closed = False
        ctx._register(self)

    def _destroy(self):
        """Free this object's Vulkan handles (the context is still open when this runs)."""

    @property
    def closed(self) -> bool:
        return self._closed

    def _require_open(self):
        if self._closed:
            raise ClosedError(f"this {type(self).__name__} is closed")

    def close(self):
        """Free the object's device resources (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            if not self.ctx.closed:
                self._destroy()
        finally:
            self.ctx._unregister(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
