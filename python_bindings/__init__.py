"""vkbands: multiscale band sheets and their rollouts on the GPU, through raw Vulkan.

NumPy in, NumPy out; device arrays in, device arrays out (no readback). See README.md.
"""
from vkbands.engine import Context, DeviceArray, Recorder, ShaderCompileError, ValidationError, default_context

from .api import add, asarray

__version__ = "0.1.0"

__all__ = ["Context", "DeviceArray", "Recorder", "ShaderCompileError", "ValidationError", "default_context",
           "add", "asarray"]
