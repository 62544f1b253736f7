"""Exception types raised by the vkbands engine."""


class VkbandsError(RuntimeError):
    """Base class of every engine error."""


class ShaderCompileError(VkbandsError):
    """glslc rejected a shader.

    Attributes: ``path`` (the GLSL file), ``line`` (1-based, or None when glslc named none),
    ``message`` (glslc's own text for the first error).
    """

    def __init__(self, path, line, message, log=""):
        self.path, self.line, self.message, self.log = str(path), line, message, log
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {message}" + (f"\n{log}" if log and log.strip() != message else ""))


class ValidationError(VkbandsError):
    """The Khronos validation layer reported an error for the call that raised this."""

    def __init__(self, messages):
        self.messages = list(messages)
        super().__init__("Vulkan validation error(s):\n" + "\n".join(self.messages))


class NoDeviceError(VkbandsError):
    """No Vulkan physical device (or none matching ``VKBANDS_DEVICE``) is available."""


class ClosedError(VkbandsError):
    """A closed object (context, array, kernel, recorder) was used."""
