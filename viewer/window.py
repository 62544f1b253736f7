"""GLFW window with a Vulkan surface, and its input (forwarded to ImGui and to the viewer's controls).

pyGLFW is ctypes and ``vulkan`` is cffi: the instance goes to GLFW as a ``ctypes.c_void_p`` and the
surface comes back in one, then is cast to ``VkSurfaceKHR`` (NOTES_VULKAN.md).
"""
from __future__ import annotations

import ctypes
import os
from typing import NamedTuple

import glfw
import vulkan as vk


class NoDisplayError(RuntimeError):
    """No display to open a window on (no X server / Wayland compositor, or GLFW cannot init)."""


_glfw_users = 0
_last_error = [""]


def _error_callback(code, description):
    _last_error[0] = description.decode("utf-8", "replace") if isinstance(description, bytes) else str(description)


def display_available() -> bool:
    """True when an X or Wayland display is named in the environment (GLFW may still fail to open it)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def init_glfw():
    """Initialise GLFW once per process (reference-counted); NoDisplayError when there is no display."""
    global _glfw_users
    if _glfw_users == 0:
        if not display_available():
            raise NoDisplayError("no display (DISPLAY/WAYLAND_DISPLAY unset)")
        glfw.set_error_callback(_error_callback)
        if not glfw.init():
            raise NoDisplayError(f"GLFW could not initialise: {_last_error[0] or 'unknown error'}")
        if not glfw.vulkan_supported():
            glfw.terminate()
            raise NoDisplayError("GLFW found no Vulkan loader with surface support")
    _glfw_users += 1


def release_glfw():
    global _glfw_users
    if _glfw_users > 0:
        _glfw_users -= 1
        if _glfw_users == 0:
            glfw.terminate()


def required_instance_extensions() -> list[str]:
    """The instance extensions GLFW needs for a surface (init_glfw() first)."""
    return list(glfw.get_required_instance_extensions())


class InputEvents(NamedTuple):
    """What :meth:`Window.take_events` returns."""
    keys: list          # (GLFW key, mods) pressed (or repeated), in order
    chars: list         # typed characters (code points)
    scroll: float       # y offset of the mouse wheel


class Window:
    """A resizable GLFW window without a client API (Vulkan draws into it).

    Input is collected between two :meth:`take_events` calls (the app makes one per frame): the
    key presses (GLFW key codes with mods), typed characters (for ImGui) and the accumulated scroll
    y offset; ``keys_down`` holds the keys held now; :meth:`take_resized` says whether the framebuffer
    size changed since it was last asked.
    """

    def __init__(self, width: int = 1280, height: int = 800, title: str = "vkbands", visible: bool = True):
        init_glfw()
        self._closed = True
        glfw.window_hint(glfw.CLIENT_API, glfw.NO_API)
        glfw.window_hint(glfw.RESIZABLE, glfw.TRUE)
        glfw.window_hint(glfw.VISIBLE, glfw.TRUE if visible else glfw.FALSE)
        self.handle = glfw.create_window(int(width), int(height), title, None, None)
        if not self.handle:
            release_glfw()
            raise NoDisplayError(f"GLFW could not open a window: {_last_error[0] or 'unknown error'}")
        self._closed = False
        self.keys_pressed: list[tuple[int, int]] = []
        self.keys_down: set[int] = set()
        self.chars: list[int] = []
        self.scroll = 0.0
        self.resized = False
        glfw.set_framebuffer_size_callback(self.handle, self._on_resize)
        glfw.set_key_callback(self.handle, self._on_key)
        glfw.set_char_callback(self.handle, self._on_char)
        glfw.set_scroll_callback(self.handle, self._on_scroll)

    # ------------------------------------------------------------------ callbacks
    def _on_resize(self, win, w, h):
        self.resized = True

    def _on_key(self, win, key, scancode, action, mods):
        if action == glfw.PRESS:
            self.keys_down.add(key)
            self.keys_pressed.append((key, mods))
        elif action == glfw.REPEAT:
            self.keys_pressed.append((key, mods))
        elif action == glfw.RELEASE:
            self.keys_down.discard(key)

    def _on_char(self, win, char):
        self.chars.append(char)

    def _on_scroll(self, win, dx, dy):
        self.scroll += dy

    # ------------------------------------------------------------------ queries
    def take_events(self) -> InputEvents:
        """The key presses, characters and scroll collected since the last call (then cleared)."""
        events = InputEvents(self.keys_pressed, self.chars, self.scroll)
        self.keys_pressed, self.chars, self.scroll = [], [], 0.0
        return events

    def take_resized(self) -> bool:
        """Whether the framebuffer was resized since the last call."""
        resized, self.resized = self.resized, False
        return resized

    def poll(self, wait_s: float | None = None):
        if wait_s:
            glfw.wait_events_timeout(wait_s)
        else:
            glfw.poll_events()

    @property
    def should_close(self) -> bool:
        return bool(glfw.window_should_close(self.handle))

    def request_close(self):
        glfw.set_window_should_close(self.handle, True)

    @property
    def framebuffer_size(self) -> tuple[int, int]:
        return tuple(glfw.get_framebuffer_size(self.handle))

    @property
    def size(self) -> tuple[int, int]:
        return tuple(glfw.get_window_size(self.handle))

    @property
    def minimised(self) -> bool:
        w, h = self.framebuffer_size
        return w == 0 or h == 0 or bool(glfw.get_window_attrib(self.handle, glfw.ICONIFIED))

    @property
    def focused(self) -> bool:
        return bool(glfw.get_window_attrib(self.handle, glfw.FOCUSED))

    def cursor(self) -> tuple[float, float]:
        return tuple(glfw.get_cursor_pos(self.handle))

    def mouse_button(self, i: int) -> bool:
        return glfw.get_mouse_button(self.handle, i) == glfw.PRESS

    def set_size(self, width: int, height: int):
        glfw.set_window_size(self.handle, int(width), int(height))

    def set_size_limits(self, max_width: int, max_height: int):
        """Ask the window manager to keep the window at most this large (screen coordinates)."""
        glfw.set_window_size_limits(self.handle, 1, 1, int(max_width), int(max_height))

    def iconify(self):
        glfw.iconify_window(self.handle)

    def restore(self):
        glfw.restore_window(self.handle)

    def set_title(self, title: str):
        glfw.set_window_title(self.handle, title)

    # ------------------------------------------------------------------ Vulkan surface
    def make_surface(self, instance):
        """A new VkSurfaceKHR of this window on ``instance``; pass the method itself as
        ``Context(surface=window.make_surface)``: the context calls it right after creating its
        instance, chooses a device and queue family that can present to the surface, and owns it
        (destroys it before the instance). The window keeps no reference to it."""
        inst = ctypes.c_void_p(int(vk.ffi.cast("uintptr_t", instance)))
        out = ctypes.c_void_p(0)
        res = glfw.create_window_surface(inst, self.handle, None, ctypes.byref(out))
        if res != 0 or not out.value:
            raise RuntimeError(f"glfwCreateWindowSurface failed (VkResult {res}): {_last_error[0]}")
        return vk.ffi.cast("VkSurfaceKHR", out.value)

    def close(self):
        """Destroy the window (close the Context that owns its surface first)."""
        if self._closed:
            return
        self._closed = True
        glfw.destroy_window(self.handle)
        self.handle = None
        release_glfw()

    @property
    def closed(self) -> bool:
        return self._closed
