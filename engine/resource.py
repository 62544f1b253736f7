"""The one lifetime protocol of vkbands: explicit ``close()``, ``with``, and freed when dropped.

- :class:`Lifetime` — ``close()`` (idempotent), ``closed``, context manager. Every object that holds
  device resources derives from it, directly or through the two kinds below.
- :class:`Resource` — owns Vulkan handles. ``_adopt(ctx, release)`` registers it with its Context:
  ``release`` (a function that must not reference the object) frees the handles. The object is
  freed by ``close()``, by the context closing (newest first), or — when the user simply drops it —
  by a ``weakref.finalize`` that *queues* it; the context frees queued handles at its next safe
  point (creating an object, a submission, a wait, ``collect()``), on the thread that owns it,
  never from the garbage collector and never while a recording that uses it can still run (a
  recording keeps what it binds alive).
- :class:`Owner` — a Python object that owns other lifetimes (arrays, images, recorders) and closes
  them newest first when it closes; dropping it drops them, so they are freed as above.
"""
from __future__ import annotations

import weakref

from .errors import ClosedError


class Lifetime:
    """``close()`` / ``closed`` / ``with``; subclasses implement :meth:`_close_now` and :meth:`_is_closed`."""

    def _is_closed(self) -> bool:
        return self.__dict__.get("_closed_flag", False)

    def _close_now(self):
        """Free what this object holds (called once)."""

    @property
    def closed(self) -> bool:
        return self._is_closed()

    def _require_open(self):
        if self._is_closed():
            raise ClosedError(f"this {type(self).__name__} is closed")

    def close(self):
        """Free the object's device resources (idempotent)."""
        if self._is_closed():
            return
        try:
            self._close_now()
        finally:
            self._closed_flag = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Owner(Lifetime):
    """Owns other lifetimes (``_own(obj)``) and closes them newest first when it closes."""

    def _own(self, obj):
        """Register ``obj`` (anything with ``close()``) to be closed with this owner; returns it."""
        self.__dict__.setdefault("_owned", []).append(obj)
        return obj

    def _close_now(self):
        owned = self.__dict__.get("_owned", [])
        while owned:
            owned.pop().close()


class Resource(Lifetime):
    """Vulkan handles registered with a Context (see the module docstring)."""

    ctx = None
    _entry = None

    def _adopt(self, ctx, release, waits: bool = False):
        """Register with ``ctx``; ``release()`` frees the handles (it must not reference ``self``).
        ``waits``: release blocks on GPU work (recorders): such entries are freed first."""
        self._entry = ctx._track(self, release, waits)

    def _is_closed(self) -> bool:
        entry = self._entry
        return entry is None or not entry.alive

    def _close_now(self):
        self._entry.release_now()


class TrackedEntry:
    """The context's record of one Resource: its release function and its finalizer."""

    __slots__ = ("ctx_ref", "release", "waits", "serial", "finalizer", "alive", "kind", "__weakref__")

    def __init__(self, ctx, obj, release, waits, serial):
        self.ctx_ref = weakref.ref(ctx)
        self.release, self.waits, self.serial, self.alive = release, waits, serial, True
        self.kind = type(obj).__name__
        self.finalizer = weakref.finalize(obj, _bury, self.ctx_ref, serial)
        self.finalizer.atexit = False

    def release_now(self):
        """Free the handles now (explicit close, context close, or collection of a dropped object)."""
        if not self.alive:
            return
        self.alive = False
        self.finalizer.detach()
        ctx = self.ctx_ref()
        try:
            if ctx is not None and not ctx.closed:
                self.release()
        finally:
            self.release = None
            if ctx is not None:
                ctx._untrack(self.serial)


def _bury(ctx_ref, serial):
    """weakref.finalize callback: runs wherever the GC runs, so it only queues (no Vulkan call)."""
    ctx = ctx_ref()
    if ctx is not None:
        ctx._graveyard.append(serial)   # list.append is atomic
