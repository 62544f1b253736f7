"""vkbands: multiscale band sheets and their rollouts on the GPU, through raw Vulkan.

NumPy in, NumPy out; device arrays in, device arrays out (no readback). See README.md.

- arrays:    ``asarray``, ``add``, ``DeviceArray``, ``Context``, ``default_context``
- errors:    ``VkbandsError``; ``OutOfDeviceMemoryError`` (a MemoryError), ``DeviceLostError``,
             ``LimitError`` (a ValueError: work over a device limit that cannot be split),
             ``VulkanError``, ``ValidationError``, ``ShaderCompileError``
- bands:     ``decompose`` -> ``Bands``, ``reconstruct``, ``energies``, ``leakage``, ``BandPlan``
- rollouts:  ``rollout`` -> ``Rollout``, ``Simulation``, ``NonFiniteError``, ``RolloutInterrupted``
             (both carry the partial result); ``Setup`` (one validated set-up: system, field, initial
             state, parameters)
- sweeps:    ``sweep`` -> ``xarray.Dataset`` (runs over parameter values and seeds, batched, resumable Zarr store);
             ``SweepInterrupted`` (Ctrl-C between chunks: finished chunks kept, the same call resumes)
- wavelets:  ``wavedec``, ``waverec``, ``wavedec2``, ``waverec2`` (PyWavelets-compatible, ``haar`` /
             ``periodization``)
- pictures:  ``render_image``, ``save_png``, ``ImageWriter``
- modules:   ``vkbands.init`` (initial states), ``vkbands.reference`` (pure-NumPy reference of the spec),
             ``vkbands.systems`` (one module per system and their registry), ``vkbands.experiments``
             (kill rates, the influence matrix by ablation, the eps sweep), ``vkbands.notebook`` (Jupyter
             displays and the live widget), ``vkbands.video`` (MP4)
"""
from vkbands.engine import (Context, DeviceArray, DeviceLostError, LimitError, OutOfDeviceMemoryError, Recorder,
                            ShaderCompileError, ValidationError, VkbandsError, VulkanError, default_context)

from . import init, reference
from .api import add, asarray
from .bands import BandPlan, Bands, decompose, energies, leakage, reconstruct
from .image import ImageWriter, render_image, save_png
from .rollout import NonFiniteError, Rollout, RolloutInterrupted, Simulation, rollout
from .setup import Setup
from .sweep import SweepInterrupted, sweep
from .wavelets import wavedec, wavedec2, waverec, waverec2

__version__ = "0.1.0"

__all__ = ["Context", "DeviceArray", "Recorder", "ShaderCompileError", "ValidationError", "default_context",
           "VkbandsError", "VulkanError", "OutOfDeviceMemoryError", "DeviceLostError", "LimitError",
           "add", "asarray", "BandPlan", "Bands", "decompose", "energies", "leakage", "reconstruct",
           "ImageWriter", "render_image", "save_png", "NonFiniteError", "Rollout", "RolloutInterrupted", "Simulation",
           "rollout", "Setup", "sweep", "SweepInterrupted", "init", "reference", "wavedec", "waverec", "wavedec2", "waverec2"]
