"""vkbands.engine: the Vulkan runtime (knows nothing about bands or diffusion).

- :class:`Context` — instance, device, queue, validation; factories for everything below.
- :class:`DeviceArray` — the one buffer type; :class:`StorageImage` — rgba8 / r32f images.
- :class:`Kernel` — a compute shader from ``shaders/`` with reflected bindings and push constants.
- :class:`Recorder` — records dispatches/copies with automatic barriers; submit and replay.
- :class:`GraphicsPipeline`, :class:`RenderPass`, :class:`Sampler` — the viewer's graphics objects.
"""
from .context import Context, choose_device, default_context, describe_devices, validation_error_count, validation_warning_count
from .errors import (ClosedError, DeviceLostError, LimitError, NoDeviceError, OutOfDeviceMemoryError,
                     ShaderCompileError, ValidationError, VkbandsError, VulkanError)
from .graphics import GraphicsPipeline, RenderPass, Sampler
from .kernel import Kernel
from .memory import DeviceArray, StorageImage, as_host_array
from .recorder import Recorder, current
from .shaders import compile_glsl

__all__ = ["Context", "default_context", "describe_devices", "choose_device", "validation_error_count", "validation_warning_count", "DeviceArray", "StorageImage",
           "as_host_array", "GraphicsPipeline", "RenderPass", "Sampler", "Kernel", "Recorder", "current", "compile_glsl", "VkbandsError",
           "ShaderCompileError", "ValidationError", "NoDeviceError", "ClosedError", "VulkanError",
           "OutOfDeviceMemoryError", "DeviceLostError", "LimitError"]
