"""GLSL sources of vkbands (data, not code): compute shaders ``*.comp`` and graphics ``*.vert``/``*.frag``.

``SHADER_DIR`` is where they live; ``vkbands.engine.shaders`` compiles them to SPIR-V and caches by content.
"""
from pathlib import Path

SHADER_DIR = Path(__file__).resolve().parent
