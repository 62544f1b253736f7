"""Interruption as a normal ending: SIGINT / SIGTERM deferred to a safe point.

Inside :func:`deferred` (main thread only), the first SIGINT or SIGTERM is remembered instead of
raising: :func:`requested` returns its name, and the code that owns the loop (``rollout``'s chunk loop,
``vkbands rollout`` writing its files) stops at its next safe point. A second signal raises
``KeyboardInterrupt`` at once (the way out of anything that does not come back). Only signals whose
handler raises ``KeyboardInterrupt`` (Python's default SIGINT handler, or :func:`raise_interrupt`,
which the ``vkbands`` command installs for SIGTERM) are deferred: a program that installed its own
handlers keeps them. Outside :func:`deferred` nothing changes.
"""
from __future__ import annotations

import contextlib
import signal
import threading

__all__ = ["deferred", "requested", "clear", "raise_interrupt", "terminate_raises"]

_state = {"depth": 0, "requested": None}


def raise_interrupt(signum, frame):
    """A handler raising ``KeyboardInterrupt`` for any signal (``vkbands`` uses it for SIGTERM)."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _raises(handler) -> bool:
    return handler is signal.default_int_handler or handler is raise_interrupt


def _defer(signum, frame):
    if _state["requested"] is not None:          # the second one: do not wait any longer
        raise KeyboardInterrupt(signal.Signals(signum).name)
    _state["requested"] = signal.Signals(signum).name


def requested():
    """The name of the signal received inside :func:`deferred` (``"SIGINT"``, ``"SIGTERM"``), or None."""
    return _state["requested"]


def clear():
    _state["requested"] = None


@contextlib.contextmanager
def deferred():
    """Defer SIGINT / SIGTERM (see the module docstring); nests (the outermost one owns the handlers
    and forgets a request when it ends: whoever checked :func:`requested` has acted on it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _state["depth"]:
        _state["depth"] += 1
        try:
            yield
        finally:
            _state["depth"] -= 1
        return
    saved = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        if _raises(handler):
            saved[sig] = handler
            signal.signal(sig, _defer)
    _state["depth"], _state["requested"] = 1, None
    try:
        yield
    finally:
        _state["depth"] = 0
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        _state["requested"] = None


@contextlib.contextmanager
def terminate_raises():
    """SIGTERM raises ``KeyboardInterrupt`` like SIGINT while the block runs (main thread; where
    SIGTERM still has its default action), so that both end a command the same way."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
