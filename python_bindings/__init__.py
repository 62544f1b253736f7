"""vkbands: multiscale band sheets and their rollouts on the GPU, through raw Vulkan.

NumPy in, NumPy out; device arrays in, device arrays out (no readback). See README.md.

- arrays:    ``asarray``, ``add``, ``DeviceArray``, ``Context``, ``default_context``
- bands:     ``decompose`` -> ``Bands``, ``reconstruct``, ``energies``, ``leakage``, ``BandPlan``
- rollouts:  ``rollout`` -> ``Rollout``, ``Simulation``, ``NonFiniteError``
- pictures:  ``render_image``, ``save_png``, ``ImageWriter``
- modules:   ``vkbands.init`` (initial states), ``vkbands.reference`` (pure-NumPy reference of the spec)
"""
from vkbands.engine import Context, DeviceArray, Recorder, ShaderCompileError, ValidationError, default_context

from . import init, reference
from .api import add, asarray
from .bands import BandPlan, Bands, decompose, energies, leakage, reconstruct
from .image import ImageWriter, render_image, save_png
from .rollout import NonFiniteError, Rollout, Simulation, rollout

__version__ = "0.1.0"

__all__ = ["Context", "DeviceArray", "Recorder", "ShaderCompileError", "ValidationError", "default_context",
           "add", "asarray", "BandPlan", "Bands", "decompose", "energies", "leakage", "reconstruct",
           "ImageWriter", "render_image", "save_png", "NonFiniteError", "Rollout", "Simulation", "rollout",
           "init", "reference"]
