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
from .kernel import Kernel, _DESCRIPTOR_TYPES, _spec_bytes
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
        stages = [("vertex", vert), ("fragment", frag)]
        spirv = {st: compile_glsl(src, defines) for st, src in stages}
        refl = {st: reflect(code) for st, code in spirv.items()}
        # ---- bindings merged over stages
        merged, stage_bits = {}, {}
        for st, r in refl.items():
            for b in r.bindings:
                if b.set != 0:
                    raise ValueError(f"{self.name}: only descriptor set 0 is supported")
                if b.binding in merged and merged[b.binding].kind != b.kind:
                    raise ValueError(f"{self.name}: binding {b.binding} is {merged[b.binding].kind} in one "
                                     f"stage and {b.kind} in another")
                merged.setdefault(b.binding, b)
                stage_bits[b.binding] = stage_bits.get(b.binding, 0) | _STAGE_BITS[st]
        self.bindings = [merged[k] for k in sorted(merged)]
        self.binding_stages = stage_bits
        # ---- push constants: one range over the stages that declare the block
        self.push_members, self.push_size, self.push_stages = {}, 0, 0
        for st, r in refl.items():
            if r.push_size:
                self.push_stages |= _STAGE_BITS[st]
                self.push_size = max(self.push_size, r.push_size)
                for m in r.push:
                    old = self.push_members.get(m.name)
                    if old is not None and old != m:
                        raise ValueError(f"{self.name}: push constant {m.name!r} differs between stages")
                    self.push_members[m.name] = m
        # ---- spec constants by name (both stages)
        spec = dict(spec or {})
        known = {nm: sid for r in refl.values() for nm, sid in r.spec_ids.items()}
        unknown = set(spec) - set(known)
        if unknown:
            raise ValueError(f"{self.name}: unknown specialization constant(s) {sorted(unknown)}; "
                             f"the shaders declare {sorted(known) or 'none'}")
        dev = ctx.device
        self.set_layout = self.layout = self.pipeline = self._pool = None
        self._modules = []
        try:
            lb = [vk.VkDescriptorSetLayoutBinding(binding=b.binding, descriptorType=_DESCRIPTOR_TYPES[b.kind],
                                                  descriptorCount=1, stageFlags=stage_bits[b.binding])
                  for b in self.bindings]
            self.set_layout = vk.vkCreateDescriptorSetLayout(
                dev, vk.VkDescriptorSetLayoutCreateInfo(bindingCount=len(lb), pBindings=lb), None)
            set_layouts = [self.set_layout]
            ranges = ([vk.VkPushConstantRange(stageFlags=self.push_stages, offset=0, size=self.push_size)]
                      if self.push_size else [])
            self.layout = vk.vkCreatePipelineLayout(dev, vk.VkPipelineLayoutCreateInfo(
                setLayoutCount=1, pSetLayouts=set_layouts, pushConstantRangeCount=len(ranges),
                pPushConstantRanges=ranges), None)
            keep, stage_infos = [], []
            for st, _src in stages:
                code = spirv[st]
                module = vk.vkCreateShaderModule(dev, vk.VkShaderModuleCreateInfo(codeSize=len(code), pCode=code),
                                                 None)
                self._modules.append(module)
                entries, data = [], b""
                for nm, sid in refl[st].spec_ids.items():
                    entries.append(vk.VkSpecializationMapEntry(constantID=sid, offset=len(data), size=4))
                    data += _spec_bytes(spec.get(nm, refl[st].spec_defaults[nm]))
                blob = vk.ffi.new("char[]", data or b"\0")
                sinfo = (vk.VkSpecializationInfo(mapEntryCount=len(entries), pMapEntries=entries,
                                                 dataSize=len(data), pData=blob) if entries else None)
                keep += [entries, blob, sinfo]
                stage_infos.append(vk.VkPipelineShaderStageCreateInfo(
                    stage=_STAGE_BITS[st], module=module, pName="main", pSpecializationInfo=sinfo))
            vb = [vk.VkVertexInputBindingDescription(binding=0, stride=int(vertex_stride),
                                                     inputRate=vk.VK_VERTEX_INPUT_RATE_VERTEX)] if vertex_stride else []
            va = [vk.VkVertexInputAttributeDescription(location=loc, binding=0, format=fmt, offset=off)
                  for loc, fmt, off in vertex_attributes]
            vin = vk.VkPipelineVertexInputStateCreateInfo(
                vertexBindingDescriptionCount=len(vb), pVertexBindingDescriptions=vb or None,
                vertexAttributeDescriptionCount=len(va), pVertexAttributeDescriptions=va or None)
            ia = vk.VkPipelineInputAssemblyStateCreateInfo(topology=topology)
            vp = vk.VkPipelineViewportStateCreateInfo(viewportCount=1, scissorCount=1)
            rs = vk.VkPipelineRasterizationStateCreateInfo(
                polygonMode=vk.VK_POLYGON_MODE_FILL, cullMode=vk.VK_CULL_MODE_NONE,
                frontFace=vk.VK_FRONT_FACE_COUNTER_CLOCKWISE, lineWidth=1.0)
            ms = vk.VkPipelineMultisampleStateCreateInfo(rasterizationSamples=vk.VK_SAMPLE_COUNT_1_BIT)
            rgba = (vk.VK_COLOR_COMPONENT_R_BIT | vk.VK_COLOR_COMPONENT_G_BIT | vk.VK_COLOR_COMPONENT_B_BIT
                    | vk.VK_COLOR_COMPONENT_A_BIT)
            if blend == "alpha":
                att = vk.VkPipelineColorBlendAttachmentState(
                    blendEnable=vk.VK_TRUE, srcColorBlendFactor=vk.VK_BLEND_FACTOR_SRC_ALPHA,
                    dstColorBlendFactor=vk.VK_BLEND_FACTOR_ONE_MINUS_SRC_ALPHA, colorBlendOp=vk.VK_BLEND_OP_ADD,
                    srcAlphaBlendFactor=vk.VK_BLEND_FACTOR_ONE,
                    dstAlphaBlendFactor=vk.VK_BLEND_FACTOR_ONE_MINUS_SRC_ALPHA, alphaBlendOp=vk.VK_BLEND_OP_ADD,
                    colorWriteMask=rgba)
            elif blend is None:
                att = vk.VkPipelineColorBlendAttachmentState(blendEnable=vk.VK_FALSE, colorWriteMask=rgba)
            else:
                raise ValueError(f"blend={blend!r}: allowed values are 'alpha' and None")
            atts = [att]
            cb = vk.VkPipelineColorBlendStateCreateInfo(attachmentCount=1, pAttachments=atts)
            dyn_states = [vk.VK_DYNAMIC_STATE_VIEWPORT, vk.VK_DYNAMIC_STATE_SCISSOR]
            dyn = vk.VkPipelineDynamicStateCreateInfo(dynamicStateCount=2, pDynamicStates=dyn_states)
            rp = getattr(render_pass, "handle", render_pass)
            info = vk.VkGraphicsPipelineCreateInfo(
                stageCount=len(stage_infos), pStages=stage_infos, pVertexInputState=vin, pInputAssemblyState=ia,
                pViewportState=vp, pRasterizationState=rs, pMultisampleState=ms, pColorBlendState=cb,
                pDynamicState=dyn, layout=self.layout, renderPass=rp, subpass=0)
            self.pipeline = vk.vkCreateGraphicsPipelines(dev, ctx.pipeline_cache, 1, [info], None)[0]
            del keep
            # A small descriptor pool of the pipeline's own (sets are few and long-lived in a viewer).
            counts = {}
            for b in self.bindings:
                counts[_DESCRIPTOR_TYPES[b.kind]] = counts.get(_DESCRIPTOR_TYPES[b.kind], 0) + max_sets
            sizes = [vk.VkDescriptorPoolSize(type=t, descriptorCount=c) for t, c in counts.items()]
            if sizes:
                self._pool = vk.vkCreateDescriptorPool(dev, vk.VkDescriptorPoolCreateInfo(
                    flags=vk.VK_DESCRIPTOR_POOL_CREATE_FREE_DESCRIPTOR_SET_BIT, maxSets=max_sets,
                    poolSizeCount=len(sizes), pPoolSizes=sizes), None)
        except BaseException:
            _pipeline_release(dev, self._pool, self.pipeline, self._modules, self.layout, self.set_layout)()
            raise
        self._adopt(ctx, _pipeline_release(dev, self._pool, self.pipeline, list(self._modules), self.layout,
                                           self.set_layout))
        ctx.check()

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
            dtype = _DESCRIPTOR_TYPES[b.kind]
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
