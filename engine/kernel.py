"""Kernel: one compute shader -> SPIR-V + descriptor-set layout + push constants + spec constants -> pipeline.

Everything is reflected from the shader's SPIR-V (``engine.spirv``): bindings and their access
(``readonly``/``writeonly``), push-constant members by name, specialization constants by name, and the
workgroup size. The GLSL file is the single source of truth; nothing is declared twice.
"""
from __future__ import annotations

import struct

import numpy as np
import vulkan as vk

from .errors import LimitError, vulkan_errors
from .resource import Resource
from .shaders import compile_glsl, shader_path
from .spirv import reflect

# Shared with engine.graphics: reflected binding kind -> VkDescriptorType.
DESCRIPTOR_TYPES = {
    "storage_buffer": vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
    "uniform_buffer": vk.VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER,
    "storage_image": vk.VK_DESCRIPTOR_TYPE_STORAGE_IMAGE,
    "sampled_image": vk.VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER,
}


def spec_bytes(value) -> bytes:
    """The 4 bytes of a specialization constant (bool / float / signed or unsigned int)."""
    if isinstance(value, (bool, np.bool_)):
        return struct.pack("<I", int(value))
    if isinstance(value, (float, np.floating)):
        return struct.pack("<f", float(value))
    return struct.pack("<i" if int(value) < 0 else "<I", int(value))


class Kernel(Resource):
    """A compute pipeline built from ``shaders/<shader>``.

    Args:
        shader: file name in ``shaders/`` (or a path), e.g. ``"add.comp"``.
        defines: GLSL ``#define`` values (change the SPIR-V; compiled and cached per set).
        spec: specialization-constant values by GLSL name (e.g. ``{"LOCAL_X": 128}``).
        subgroup_size: require this subgroup size with full subgroups (VK_EXT_subgroup_size_control;
            the workgroup's x size must be a multiple of it). Only where ``ctx.subgroup_size_control``
            and ``ctx.min_subgroup_size <= subgroup_size <= ctx.max_subgroup_size``.
    Attributes: ``bindings`` (reflected, in binding order), ``push_members``, ``push_size``,
    ``local_size`` (ints, after specialization), ``name``.
    """

    def __init__(self, ctx, shader, defines=None, spec=None, stage_flags=vk.VK_SHADER_STAGE_COMPUTE_BIT,
                 subgroup_size: int | None = None):
        ctx._require_open()
        self.ctx = ctx
        self.name = shader_path(shader).name
        self.spirv = compile_glsl(shader, defines)
        refl = self.reflection = reflect(self.spirv)
        if any(b.set != 0 for b in refl.bindings):
            raise ValueError(f"{self.name}: only descriptor set 0 is supported")
        spec = dict(spec or {})
        unknown = set(spec) - set(refl.spec_ids)
        if unknown:
            raise ValueError(f"{self.name}: unknown specialization constant(s) {sorted(unknown)}; "
                             f"the shader declares {sorted(refl.spec_ids) or 'none'}")
        self.spec = {**refl.spec_defaults, **spec}
        self.local_size = tuple(int(self.spec[x]) if isinstance(x, str) else int(x) for x in refl.local_size)
        if int(np.prod(self.local_size)) > ctx.limits.maxComputeWorkGroupInvocations:
            raise ValueError(f"{self.name}: workgroup size {self.local_size} exceeds this device's "
                             f"maxComputeWorkGroupInvocations={ctx.limits.maxComputeWorkGroupInvocations}")
        required, flags = self._subgroup_request(ctx, subgroup_size)
        self.bindings = refl.bindings
        self.push_members = {m.name: m for m in refl.push}
        self.push_size = refl.push_size
        dev = ctx.device
        # Descriptor-set layout and pipeline layout (locals keep cffi arrays alive until the create returns).
        lb = [vk.VkDescriptorSetLayoutBinding(binding=b.binding, descriptorType=DESCRIPTOR_TYPES[b.kind],
                                              descriptorCount=1, stageFlags=stage_flags) for b in self.bindings]
        self.set_layout = vk.vkCreateDescriptorSetLayout(
            dev, vk.VkDescriptorSetLayoutCreateInfo(bindingCount=len(lb), pBindings=lb), None)
        set_layouts = [self.set_layout]
        ranges = ([vk.VkPushConstantRange(stageFlags=stage_flags, offset=0, size=self.push_size)]
                  if self.push_size else [])
        self.layout = vk.vkCreatePipelineLayout(dev, vk.VkPipelineLayoutCreateInfo(
            setLayoutCount=1, pSetLayouts=set_layouts, pushConstantRangeCount=len(ranges),
            pPushConstantRanges=ranges), None)
        code = self.spirv
        with vulkan_errors(f"creating the shader module of {self.name}"):
            self.module = vk.vkCreateShaderModule(dev, vk.VkShaderModuleCreateInfo(codeSize=len(code), pCode=code), None)
        entries, data = [], b""
        for nm, sid in refl.spec_ids.items():
            entries.append(vk.VkSpecializationMapEntry(constantID=sid, offset=len(data), size=4))
            data += spec_bytes(self.spec[nm])
        blob = vk.ffi.new("char[]", data or b"\0")
        spec_info = vk.VkSpecializationInfo(mapEntryCount=len(entries), pMapEntries=entries,
                                            dataSize=len(data), pData=blob) if entries else None
        stage = vk.VkPipelineShaderStageCreateInfo(pNext=required, flags=flags, stage=vk.VK_SHADER_STAGE_COMPUTE_BIT,
                                                   module=self.module, pName="main", pSpecializationInfo=spec_info)
        pinfo = vk.VkComputePipelineCreateInfo(stage=stage, layout=self.layout)
        try:
            with vulkan_errors(f"creating the pipeline of {self.name}"):
                self.pipeline = vk.vkCreateComputePipelines(dev, ctx.pipeline_cache, 1, [pinfo], None)[0]
        except BaseException:
            vk.vkDestroyShaderModule(dev, self.module, None)
            vk.vkDestroyPipelineLayout(dev, self.layout, None)
            vk.vkDestroyDescriptorSetLayout(dev, self.set_layout, None)
            raise
        self.subgroup_size = subgroup_size
        self._adopt(ctx, _kernel_release(dev, self.pipeline, self.module, self.layout, self.set_layout))
        ctx.check()

    def _subgroup_request(self, ctx, size):
        """(pNext struct, stage flags) requiring ``size``-wide full subgroups, or (None, 0)."""
        if size is None:
            return None, 0
        size = int(size)
        if not ctx.subgroup_size_control or not ctx.min_subgroup_size <= size <= ctx.max_subgroup_size:
            raise ValueError(f"{self.name}: subgroup_size={size} cannot be required on this device "
                             f"(subgroup size control: {ctx.subgroup_size_control}, sizes "
                             f"{ctx.min_subgroup_size}..{ctx.max_subgroup_size})")
        if self.local_size[0] % size:
            raise ValueError(f"{self.name}: workgroup x size {self.local_size[0]} is not a multiple of the "
                             f"required subgroup size {size}")
        req = vk.VkPipelineShaderStageRequiredSubgroupSizeCreateInfo(requiredSubgroupSize=size)
        return req, vk.VK_PIPELINE_SHADER_STAGE_CREATE_REQUIRE_FULL_SUBGROUPS_BIT_EXT

    # -------------------------------------------------------------- helpers for dispatching
    def pack(self, values: dict | None) -> bytes:
        """Push-constant bytes from a dict of member name -> value (every member must be given)."""
        values = dict(values or {})
        missing = set(self.push_members) - set(values)
        unknown = set(values) - set(self.push_members)
        if missing or unknown:
            raise ValueError(f"{self.name}: push constants need exactly {sorted(self.push_members)}; "
                             f"missing {sorted(missing)}, unknown {sorted(unknown)}")
        buf = bytearray(self.push_size)
        for nm, m in self.push_members.items():
            v = np.ravel(np.asarray(values[nm]))
            if v.size != m.count:
                raise ValueError(f"{self.name}: push constant {nm!r} needs {m.count} value(s), got {v.size}")
            struct.pack_into(f"<{m.count}{m.fmt}", buf, m.offset,
                             *(float(x) if m.fmt == "f" else int(x) for x in v))
        return bytes(buf)

    def groups(self, x: int, y: int = 1, z: int = 1) -> tuple[int, int, int]:
        """Workgroup counts covering ``(x, y, z)`` invocations (ceil-division by the local size)."""
        lx, ly, lz = self.local_size
        return (-(-int(x) // lx), -(-int(y) // ly), -(-int(z) // lz))

    def grid(self, n_groups: int) -> tuple[int, int, int]:
        """Spread ``n_groups`` workgroups over (x, y) within maxComputeWorkGroupCount; shaders recover
        the flat index with ``flat_group_id()`` from ``common.glsl`` and skip ids >= n_groups."""
        n_groups = int(n_groups)
        max_x = int(self.ctx.limits.maxComputeWorkGroupCount[0])
        max_y = int(self.ctx.limits.maxComputeWorkGroupCount[1])
        if n_groups <= max_x:
            return (n_groups, 1, 1)
        gy = -(-n_groups // max_x)
        if gy > max_y:
            raise LimitError(f"{self.name}: {n_groups} workgroups exceed this device's "
                             f"maxComputeWorkGroupCount x*y = {max_x}*{max_y}")
        return (-(-n_groups // gy), gy, 1)

    def __repr__(self):
        return f"<vkbands.Kernel {self.name} local_size={self.local_size}>"


def _kernel_release(device, pipeline, module, layout, set_layout):
    def release():
        vk.vkDestroyPipeline(device, pipeline, None)
        vk.vkDestroyShaderModule(device, module, None)
        vk.vkDestroyPipelineLayout(device, layout, None)
        vk.vkDestroyDescriptorSetLayout(device, set_layout, None)
    return release
