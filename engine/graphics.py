"""Graphics pipelines from reflected SPIR-V: the engine's one way to build a graphics pipeline.

A :class:`GraphicsPipeline` takes a vertex and a fragment shader from ``shaders/`` and reflects both
(``engine.spirv``): descriptor bindings (set 0, merged over the two stages, each with the stages that
use it), push-constant members by name (one range for the stages that declare the block), and
specialization constants by name. Only what SPIR-V cannot say is passed in: the vertex layout
(vertex input formats are the host's choice, e.g. RGBA8 colours read as ``vec4``), blending and the
render pass. Viewport and scissor are dynamic state.

    rp = RenderPass(ctx, vk.VK_FORMAT_B8G8R8A8_UNORM)
    pipe = GraphicsPipeline(ctx, "preview.vert", "preview.frag", rp)
    dset = pipe.descriptor_set({0: (image_view, sampler)})     # from the pipeline's own pool
    vk.vkCmdPushConstants(cb, pipe.layout, pipe.push_stages, 0, pipe.push_size, pipe.pack({...}))

Objects are children of the context (closed with it, newest first) and have an idempotent ``close()``.
"""
from __future__ import annotations

import vulkan as vk

from .resource import Resource
from .kernel import Kernel, DESCRIPTOR_TYPES, spec_bytes
from .shaders import compile_glsl, shader_path
from .spirv import reflect

_STAGE_BITS = {"vertex": vk.VK_SHADER_STAGE_VERTEX_BIT, "fragment": vk.VK_SHADER_STAGE_FRAGMENT_BIT}


class RenderPass(Resource):
    """One colour attachment, one subpass: ``load`` is "clear" or "load"; ``final_layout`` is the
    attachment's layout after the pass (PRESENT_SRC_KHR for a swapchain)."""

    def __init__(self, ctx, color_format: int, final_layout: int = vk.VK_IMAGE_LAYOUT_PRESENT_SRC_KHR,
                 load: str = "clear"):
        ctx._require_open()
        self.ctx, self.format, self.final_layout = ctx, color_format, final_layout
        load_op = vk.VK_ATTACHMENT_LOAD_OP_CLEAR if load == "clear" else vk.VK_ATTACHMENT_LOAD_OP_LOAD
        initial = vk.VK_IMAGE_LAYOUT_UNDEFINED if load == "clear" else final_layout
        att = vk.VkAttachmentDescription(
            format=color_format, samples=vk.VK_SAMPLE_COUNT_1_BIT, loadOp=load_op,
            storeOp=vk.VK_ATTACHMENT_STORE_OP_STORE, stencilLoadOp=vk.VK_ATTACHMENT_LOAD_OP_DONT_CARE,
            stencilStoreOp=vk.VK_ATTACHMENT_STORE_OP_DONT_CARE, initialLayout=initial, finalLayout=final_layout)
        ref = vk.VkAttachmentReference(attachment=0, layout=vk.VK_IMAGE_LAYOUT_COLOR_ATTACHMENT_OPTIMAL)
        refs = [ref]
        sub = vk.VkSubpassDescription(pipelineBindPoint=vk.VK_PIPELINE_BIND_POINT_GRAPHICS,
                                      colorAttachmentCount=1, pColorAttachments=refs)
        # The acquire semaphore is waited at COLOR_ATTACHMENT_OUTPUT: the layout transition must wait too.
        dep = vk.VkSubpassDependency(
            srcSubpass=vk.VK_SUBPASS_EXTERNAL, dstSubpass=0,
            srcStageMask=vk.VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT,
            dstStageMask=vk.VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT,
            srcAccessMask=0,
            dstAccessMask=vk.VK_ACCESS_COLOR_ATTACHMENT_WRITE_BIT | vk.VK_ACCESS_COLOR_ATTACHMENT_READ_BIT)
        # After the pass: its colour writes are made available to what follows in the queue (a
        # screenshot's transfer read of the attachment; sampling it as a texture). The transition to
        # ``final_layout`` happens inside this dependency, ordered before its destination stages only:
        # a later barrier that changes the layout again (PRESENT_SRC -> TRANSFER_SRC for a window
        # screenshot) must name TRANSFER or FRAGMENT_SHADER among its source stages to chain after it.
        out = vk.VkSubpassDependency(
            srcSubpass=0, dstSubpass=vk.VK_SUBPASS_EXTERNAL,
            srcStageMask=vk.VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT,
            dstStageMask=vk.VK_PIPELINE_STAGE_TRANSFER_BIT | vk.VK_PIPELINE_STAGE_FRAGMENT_SHADER_BIT,
            srcAccessMask=vk.VK_ACCESS_COLOR_ATTACHMENT_WRITE_BIT,
            dstAccessMask=vk.VK_ACCESS_TRANSFER_READ_BIT | vk.VK_ACCESS_SHADER_READ_BIT)
        atts, subs, deps = [att], [sub], [dep, out]
        self.handle = vk.vkCreateRenderPass(ctx.device, vk.VkRenderPassCreateInfo(
            attachmentCount=1, pAttachments=atts, subpassCount=1, pSubpasses=subs,
            dependencyCount=len(deps), pDependencies=deps), None)
        dev, handle = ctx.device, self.handle
        self._adopt(ctx, lambda: vk.vkDestroyRenderPass(dev, handle, None))


class GraphicsPipeline(Resource):
    """A graphics pipeline built from ``shaders/<vert>`` and ``shaders/<frag>``.

    Args:
        vert, frag: GLSL file names in ``shaders/`` (``.vert`` / ``.frag``).
        render_pass: a :class:`RenderPass` (or a raw VkRenderPass handle).
        vertex_stride: bytes per vertex of binding 0 (0: no vertex buffer, e.g. a quad from gl_VertexIndex).
        vertex_attributes: ``[(location, VkFormat, offset), ...]`` of binding 0.
        blend: "alpha" (SRC_ALPHA, ONE_MINUS_SRC_ALPHA; ImGui's) or None (opaque).
        topology: a VkPrimitiveTopology (default TRIANGLE_LIST).
        defines / spec: as for :class:`Kernel` (spec constants are given to both stages).
    Attributes: ``bindings`` (merged, binding order; ``binding_stages[binding]`` its stage bits),
    ``push_members``, ``push_size``, ``push_stages``, ``set_layout``, ``layout``, ``pipeline``, ``name``.
    """

    def __init__(self, ctx, vert: str, frag: str, render_pass, *, vertex_stride: int = 0,
                 vertex_attributes=(), blend: str | None = None,
                 topology: int = vk.VK_PRIMITIVE_TOPOLOGY_TRIANGLE_LIST, defines=None, spec=None,
                 max_sets: int = 16):
        ctx._require_open()
        self.ctx = ctx
        self.name = f"{shader_path(vert).name}+{shader_path(frag).name}"
        spirv = {"vertex": compile_glsl(vert, defines), "fragment": compile_glsl(frag, defines)}
        refl = {stage: reflect(code) for stage, code in spirv.items()}
        self.bindings, self.binding_stages = self._merged_bindings(refl)
        self.push_members, self.push_size, self.push_stages = self._push_range(refl)
        spec = self._checked_spec(refl, spec)
        dev = ctx.device
        self.set_layout = self.layout = self.pipeline = self._pool = None
        self._modules = []
        try:
            self._create_layouts()
            stage_infos, keep_stages = self._shader_stages(spirv, refl, spec)
            fixed, keep_fixed = _fixed_function_state(vertex_stride, vertex_attributes, topology, blend)
            info = vk.VkGraphicsPipelineCreateInfo(
                stageCount=len(stage_infos), pStages=stage_infos, **fixed, layout=self.layout,
                renderPass=getattr(render_pass, "handle", render_pass), subpass=0)
            self.pipeline = vk.vkCreateGraphicsPipelines(dev, ctx.pipeline_cache, 1, [info], None)[0]
            del keep_stages, keep_fixed   # the create-info arrays are only read during the call
            self._pool = self._descriptor_pool(max_sets)
        except BaseException:
            _pipeline_release(dev, self._pool, self.pipeline, self._modules, self.layout, self.set_layout)()
            raise
        self._adopt(ctx, _pipeline_release(dev, self._pool, self.pipeline, list(self._modules), self.layout,
                                           self.set_layout))
        ctx.check()

    # -------------------------------------------------------------- building
    def _merged_bindings(self, refl):
        """Set-0 bindings of both stages, in binding order, and the stage bits of each binding."""
        merged, stage_bits = {}, {}
        for stage, r in refl.items():
            for b in r.bindings:
                if b.set != 0:
                    raise ValueError(f"{self.name}: only descriptor set 0 is supported")
                if b.binding in merged and merged[b.binding].kind != b.kind:
                    raise ValueError(f"{self.name}: binding {b.binding} is {merged[b.binding].kind} in one "
                                     f"stage and {b.kind} in another")
                merged.setdefault(b.binding, b)
                stage_bits[b.binding] = stage_bits.get(b.binding, 0) | _STAGE_BITS[stage]
        return [merged[k] for k in sorted(merged)], stage_bits

    def _push_range(self, refl):
        """``(members by name, size, stage bits)``: one push-constant range over the stages that
        declare the block; a member must be the same in both."""
        members, size, stages = {}, 0, 0
        for stage, r in refl.items():
            if r.push_size:
                stages |= _STAGE_BITS[stage]
                size = max(size, r.push_size)
                for m in r.push:
                    old = members.get(m.name)
                    if old is not None and old != m:
                        raise ValueError(f"{self.name}: push constant {m.name!r} differs between stages")
                    members[m.name] = m
        return members, size, stages

    def _checked_spec(self, refl, spec):
        """Specialisation constants by name: every name must be declared by one of the stages."""
        spec = dict(spec or {})
        known = {nm: sid for r in refl.values() for nm, sid in r.spec_ids.items()}
        unknown = set(spec) - set(known)
        if unknown:
            raise ValueError(f"{self.name}: unknown specialization constant(s) {sorted(unknown)}; "
                             f"the shaders declare {sorted(known) or 'none'}")
        return spec

    def _create_layouts(self):
        dev = self.ctx.device
        layout_bindings = [vk.VkDescriptorSetLayoutBinding(
            binding=b.binding, descriptorType=DESCRIPTOR_TYPES[b.kind], descriptorCount=1,
            stageFlags=self.binding_stages[b.binding]) for b in self.bindings]
        self.set_layout = vk.vkCreateDescriptorSetLayout(dev, vk.VkDescriptorSetLayoutCreateInfo(
            bindingCount=len(layout_bindings), pBindings=layout_bindings), None)
        set_layouts = [self.set_layout]
        ranges = ([vk.VkPushConstantRange(stageFlags=self.push_stages, offset=0, size=self.push_size)]
                  if self.push_size else [])
        self.layout = vk.vkCreatePipelineLayout(dev, vk.VkPipelineLayoutCreateInfo(
            setLayoutCount=1, pSetLayouts=set_layouts, pushConstantRangeCount=len(ranges),
            pPushConstantRanges=ranges), None)

    def _shader_stages(self, spirv, refl, spec):
        """``(stage create infos, what they point to)``; the shader modules go to ``self._modules``."""
        keep, stage_infos = [], []
        for stage, code in spirv.items():
            module = vk.vkCreateShaderModule(self.ctx.device, vk.VkShaderModuleCreateInfo(
                codeSize=len(code), pCode=code), None)
            self._modules.append(module)
            entries, data = [], b""
            for nm, sid in refl[stage].spec_ids.items():
                entries.append(vk.VkSpecializationMapEntry(constantID=sid, offset=len(data), size=4))
                data += spec_bytes(spec.get(nm, refl[stage].spec_defaults[nm]))
            blob = vk.ffi.new("char[]", data or b"\0")
            sinfo = (vk.VkSpecializationInfo(mapEntryCount=len(entries), pMapEntries=entries,
                                             dataSize=len(data), pData=blob) if entries else None)
            keep += [entries, blob, sinfo]
            stage_infos.append(vk.VkPipelineShaderStageCreateInfo(
                stage=_STAGE_BITS[stage], module=module, pName="main", pSpecializationInfo=sinfo))
        return stage_infos, keep

    def _descriptor_pool(self, max_sets):
        """A small descriptor pool of the pipeline's own (sets are few and long-lived in a viewer)."""
        counts = {}
        for b in self.bindings:
            counts[DESCRIPTOR_TYPES[b.kind]] = counts.get(DESCRIPTOR_TYPES[b.kind], 0) + max_sets
        sizes = [vk.VkDescriptorPoolSize(type=t, descriptorCount=c) for t, c in counts.items()]
        if not sizes:
            return None
        return vk.vkCreateDescriptorPool(self.ctx.device, vk.VkDescriptorPoolCreateInfo(
            flags=vk.VK_DESCRIPTOR_POOL_CREATE_FREE_DESCRIPTOR_SET_BIT, maxSets=max_sets,
            poolSizeCount=len(sizes), pPoolSizes=sizes), None)

    # -------------------------------------------------------------- helpers
    def pack(self, values: dict | None) -> bytes:
        """Push-constant bytes from a dict of member name -> value (every member must be given)."""
        return Kernel.pack(self, values)

    def descriptor_set(self, resources: dict):
        """Allocate and write a descriptor set: ``{binding: (image_view, sampler)}`` for sampled
        images, ``{binding: image_view}`` for storage images, ``{binding: DeviceArray}`` for buffers.
        Freed by :meth:`free_set` or when the pipeline closes."""
        self._require_open()
        missing = {b.binding for b in self.bindings} - set(resources)
        if missing:
            raise ValueError(f"{self.name}: descriptor set needs bindings {sorted(missing)}")
        layouts = [self.set_layout]
        dset = vk.vkAllocateDescriptorSets(self.ctx.device, vk.VkDescriptorSetAllocateInfo(
            descriptorPool=self._pool, descriptorSetCount=1, pSetLayouts=layouts))[0]
        self.update_set(dset, resources)
        return dset

    def update_set(self, dset, resources: dict):
        """Rewrite bindings of an existing set (same forms as :meth:`descriptor_set`)."""
        writes, infos = [], []
        by_binding = {b.binding: b for b in self.bindings}
        for binding, res in resources.items():
            b = by_binding[binding]
            dtype = DESCRIPTOR_TYPES[b.kind]
            if b.kind == "sampled_image":
                view, sampler = res
                info = vk.VkDescriptorImageInfo(sampler=sampler, imageView=view,
                                                imageLayout=vk.VK_IMAGE_LAYOUT_GENERAL)
                w = vk.VkWriteDescriptorSet(dstSet=dset, dstBinding=binding, descriptorCount=1,
                                            descriptorType=dtype, pImageInfo=[info])
            elif b.kind == "storage_image":
                info = vk.VkDescriptorImageInfo(imageView=res, imageLayout=vk.VK_IMAGE_LAYOUT_GENERAL)
                w = vk.VkWriteDescriptorSet(dstSet=dset, dstBinding=binding, descriptorCount=1,
                                            descriptorType=dtype, pImageInfo=[info])
            else:
                info = vk.VkDescriptorBufferInfo(buffer=res.buffer, offset=0, range=res.nbytes)
                w = vk.VkWriteDescriptorSet(dstSet=dset, dstBinding=binding, descriptorCount=1,
                                            descriptorType=dtype, pBufferInfo=[info])
            infos.append(info)
            writes.append(w)
        if writes:
            vk.vkUpdateDescriptorSets(self.ctx.device, len(writes), writes, 0, None)

    def free_set(self, dset):
        if not self.closed and not self.ctx.closed:
            vk.vkFreeDescriptorSets(self.ctx.device, self._pool, 1, [dset])

    def __repr__(self):
        return f"<vkbands.GraphicsPipeline {self.name}>"


class Sampler(Resource):
    """A VkSampler: ``filter`` "nearest" or "linear"; ``address`` "clamp" (to edge) or "border"
    (transparent black outside [0, 1])."""

    def __init__(self, ctx, filter: str = "nearest", address: str = "clamp"):
        ctx._require_open()
        self.ctx = ctx
        f = {"nearest": vk.VK_FILTER_NEAREST, "linear": vk.VK_FILTER_LINEAR}[filter]
        a = {"clamp": vk.VK_SAMPLER_ADDRESS_MODE_CLAMP_TO_EDGE,
             "border": vk.VK_SAMPLER_ADDRESS_MODE_CLAMP_TO_BORDER}[address]
        self.handle = vk.vkCreateSampler(ctx.device, vk.VkSamplerCreateInfo(
            magFilter=f, minFilter=f, mipmapMode=vk.VK_SAMPLER_MIPMAP_MODE_NEAREST,
            addressModeU=a, addressModeV=a, addressModeW=a, maxLod=0.0,
            borderColor=vk.VK_BORDER_COLOR_FLOAT_TRANSPARENT_BLACK), None)
        dev, handle = ctx.device, self.handle
        self._adopt(ctx, lambda: vk.vkDestroySampler(dev, handle, None))


_RGBA = (vk.VK_COLOR_COMPONENT_R_BIT | vk.VK_COLOR_COMPONENT_G_BIT | vk.VK_COLOR_COMPONENT_B_BIT
         | vk.VK_COLOR_COMPONENT_A_BIT)


def _blend_attachment(blend):
    """The blend of the colour attachment: "alpha" (SRC_ALPHA, ONE_MINUS_SRC_ALPHA; ImGui's) or None (opaque)."""
    if blend == "alpha":
        return vk.VkPipelineColorBlendAttachmentState(
            blendEnable=vk.VK_TRUE, srcColorBlendFactor=vk.VK_BLEND_FACTOR_SRC_ALPHA,
            dstColorBlendFactor=vk.VK_BLEND_FACTOR_ONE_MINUS_SRC_ALPHA, colorBlendOp=vk.VK_BLEND_OP_ADD,
            srcAlphaBlendFactor=vk.VK_BLEND_FACTOR_ONE,
            dstAlphaBlendFactor=vk.VK_BLEND_FACTOR_ONE_MINUS_SRC_ALPHA, alphaBlendOp=vk.VK_BLEND_OP_ADD,
            colorWriteMask=_RGBA)
    if blend is None:
        return vk.VkPipelineColorBlendAttachmentState(blendEnable=vk.VK_FALSE, colorWriteMask=_RGBA)
    raise ValueError(f"blend={blend!r}: allowed values are 'alpha' and None")


def _fixed_function_state(vertex_stride, vertex_attributes, topology, blend):
    """``(create-info fields, what they point to)``: vertex input (binding 0), topology, one dynamic
    viewport and scissor, filled polygons without culling, one sample, the blend of one attachment."""
    vertex_bindings = [vk.VkVertexInputBindingDescription(
        binding=0, stride=int(vertex_stride), inputRate=vk.VK_VERTEX_INPUT_RATE_VERTEX)] if vertex_stride else []
    attributes = [vk.VkVertexInputAttributeDescription(location=loc, binding=0, format=fmt, offset=off)
                  for loc, fmt, off in vertex_attributes]
    vertex_input = vk.VkPipelineVertexInputStateCreateInfo(
        vertexBindingDescriptionCount=len(vertex_bindings), pVertexBindingDescriptions=vertex_bindings or None,
        vertexAttributeDescriptionCount=len(attributes), pVertexAttributeDescriptions=attributes or None)
    attachments = [_blend_attachment(blend)]
    dynamic_states = [vk.VK_DYNAMIC_STATE_VIEWPORT, vk.VK_DYNAMIC_STATE_SCISSOR]
    fields = dict(
        pVertexInputState=vertex_input,
        pInputAssemblyState=vk.VkPipelineInputAssemblyStateCreateInfo(topology=topology),
        pViewportState=vk.VkPipelineViewportStateCreateInfo(viewportCount=1, scissorCount=1),
        pRasterizationState=vk.VkPipelineRasterizationStateCreateInfo(
            polygonMode=vk.VK_POLYGON_MODE_FILL, cullMode=vk.VK_CULL_MODE_NONE,
            frontFace=vk.VK_FRONT_FACE_COUNTER_CLOCKWISE, lineWidth=1.0),
        pMultisampleState=vk.VkPipelineMultisampleStateCreateInfo(rasterizationSamples=vk.VK_SAMPLE_COUNT_1_BIT),
        pColorBlendState=vk.VkPipelineColorBlendStateCreateInfo(attachmentCount=1, pAttachments=attachments),
        pDynamicState=vk.VkPipelineDynamicStateCreateInfo(dynamicStateCount=2, pDynamicStates=dynamic_states))
    return fields, [vertex_bindings, attributes, attachments, dynamic_states]


def _pipeline_release(dev, pool, pipeline, modules, layout, set_layout):
    """Frees a GraphicsPipeline's handles (any of them may be None when creation failed part-way)."""
    def release():
        if pool is not None:
            vk.vkDestroyDescriptorPool(dev, pool, None)
        if pipeline is not None:
            vk.vkDestroyPipeline(dev, pipeline, None)
        for m in modules:
            vk.vkDestroyShaderModule(dev, m, None)
        if layout is not None:
            vk.vkDestroyPipelineLayout(dev, layout, None)
        if set_layout is not None:
            vk.vkDestroyDescriptorSetLayout(dev, set_layout, None)
    return release
