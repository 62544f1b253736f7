"""Exception types raised by the vkbands engine."""


class VkbandsError(RuntimeError):
    """Base class of every engine error.

    Errors pickle with their constructor's arguments (``_ctor``), so one raised in another process (a
    Ray worker running a sweep chunk) reaches the caller as the same type with the same attributes."""

    def __reduce__(self):
        return type(self), tuple(getattr(self, "_ctor", self.args)), self.__dict__


class ShaderCompileError(VkbandsError):
    """glslc rejected a shader.

    Attributes: ``path`` (the GLSL file), ``line`` (1-based, or None when glslc named none),
    ``message`` (glslc's own text for the first error).
    """

    def __init__(self, path, line, message, log=""):
        self._ctor = (path, line, message, log)
        self.path, self.line, self.message, self.log = str(path), line, message, log
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {message}" + (f"\n{log}" if log and log.strip() != message else ""))


class ValidationError(VkbandsError):
    """The Khronos validation layer reported an error for the call that raised this."""

    def __init__(self, messages):
        self.messages = list(messages)
        self._ctor = (self.messages,)
        super().__init__("Vulkan validation error(s):\n" + "\n".join(self.messages))


class NoDeviceError(VkbandsError):
    """No Vulkan physical device (or none matching ``VKBANDS_DEVICE``) is available."""


class ClosedError(VkbandsError):
    """A closed object (context, array, kernel, recorder) was used."""


class VulkanError(VkbandsError):
    """A Vulkan call failed with a result code vkbands has no more specific error for.

    Attributes: ``result`` (the VkResult name, e.g. ``"VK_ERROR_INITIALIZATION_FAILED"``), ``what``
    (what vkbands was doing)."""

    def __init__(self, what, result, detail=""):
        self._ctor = (what, result, detail)
        self.what, self.result = what, result
        super().__init__(f"{what}: {result}" + (f" ({detail})" if detail else ""))


class OutOfDeviceMemoryError(VulkanError, MemoryError):
    """The device (or the driver's host memory) could not hold an allocation: ``what`` names it and
    ``nbytes`` is its size (None when unknown). Also raised before recording when an array exceeds a
    device limit that cannot be split around."""

    def __init__(self, what, result="VK_ERROR_OUT_OF_DEVICE_MEMORY", nbytes=None, detail=""):
        self.nbytes = nbytes
        size = "" if nbytes is None else f"{_human(nbytes)} requested"
        VulkanError.__init__(self, what, result, "; ".join(s for s in (size, detail) if s))
        self._ctor = (what, result, nbytes, detail)


class DeviceLostError(VulkanError):
    """The GPU stopped executing (driver reset, watchdog/TDR on a long dispatch, hardware fault);
    ``what`` names the last recorded work submitted. The Context cannot be used any more."""


class LimitError(VkbandsError, ValueError):
    """Work exceeds a device limit and cannot be split around it; raised before anything is recorded.
    The message names the array, its size and the limit."""


_RESULT_NAMES = {
    "VkErrorOutOfDeviceMemory": "VK_ERROR_OUT_OF_DEVICE_MEMORY",
    "VkErrorOutOfHostMemory": "VK_ERROR_OUT_OF_HOST_MEMORY",
    "VkErrorDeviceLost": "VK_ERROR_DEVICE_LOST",
}


def _human(nbytes) -> str:
    n = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{nbytes} B"


def result_name(exc) -> str:
    """The VkResult name of an exception raised by the ``vulkan`` package (its class name otherwise)."""
    name = type(exc).__name__
    if name in _RESULT_NAMES:
        return _RESULT_NAMES[name]
    out = "VK_"
    for i, ch in enumerate(name[2:] if name.startswith("Vk") else name):
        out += ("_" if ch.isupper() and i else "") + ch.upper()
    return out


def translate(exc, what, nbytes=None):
    """The vkbands error for an exception raised by the ``vulkan`` package, or ``exc`` itself when it
    is not one. The single place where native Vulkan errors become vkbands errors."""
    import vulkan as vk
    if not isinstance(exc, vk.VkError):     # VkTimeout, VkNotReady, ...: the caller's to handle
        return exc
    name = type(exc).__name__
    if name in ("VkErrorOutOfDeviceMemory", "VkErrorOutOfHostMemory"):
        return OutOfDeviceMemoryError(what, _RESULT_NAMES[name], nbytes)
    if name == "VkErrorDeviceLost":
        return DeviceLostError(what, "VK_ERROR_DEVICE_LOST",
                               "the device was lost; close this Context and create a new one")
    return VulkanError(what, result_name(exc))


class vulkan_errors:
    """``with vulkan_errors("allocating ..."):`` re-raises ``vulkan`` package errors as vkbands errors
    (``OutOfDeviceMemoryError``, ``DeviceLostError``, ``VulkanError``) naming what was being done."""

    __slots__ = ("what", "nbytes")

    def __init__(self, what, nbytes=None):
        self.what, self.nbytes = what, nbytes

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None:
            return False
        new = translate(exc, self.what() if callable(self.what) else self.what, self.nbytes)
        if new is exc:
            return False
        raise new from exc
