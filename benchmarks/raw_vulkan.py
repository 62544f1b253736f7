"""A minimal raw-Vulkan harness: the driver's floor for the same kernels on the same device.

It takes the SPIR-V that vkbands compiles (``vkbands.engine.compile_glsl``) and the VkDevice and queue
of a vkbands :class:`~vkbands.engine.Context`, and builds everything else itself with direct ``vk.lib``
calls through cffi: descriptor-set layout, pipeline layout, shader module, pipeline, buffers and
memory, a descriptor pool and sets, a command pool, and one prerecorded command buffer per program.
``Program.submit`` is three C calls on prebuilt structs (``vkResetFences``, ``vkQueueSubmit``,
``vkWaitForFences``), so a replay costs what the driver costs and nothing of vkbands.

Synchronisation (correct under ``VK_LAYER_ENABLES=VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT
VKBANDS_VALIDATION=1``: the harness runs on the context's device, so the context's validation layer
and messenger see its calls and ``ctx.check()`` raises what they report):

- every command buffer starts with a memory barrier from all earlier commands' writes (earlier
  submissions included) to compute/transfer reads and writes, so replays and uploads are ordered;
- dependent dispatches are separated by a compute -> compute barrier (shader writes -> shader reads
  and writes: read-after-write, and write-after-write two steps later; write-after-read is covered by
  the execution dependency); copies by the transfer -> transfer equivalent;
- read-back copies end with a transfer -> host barrier before the host reads the mapped staging memory.

``Raw.close()`` (or ``with Raw(ctx) as raw:``) frees everything it created, newest first, after
waiting for the queue; the context itself is left alone (close the harness before the context).
"""
from __future__ import annotations

import struct

import numpy as np
import vulkan as vk

from vkbands.engine import compile_glsl

ffi, lib = vk.ffi, vk.lib
NULL = ffi.NULL

_COMPUTE = vk.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT
_TRANSFER = vk.VK_PIPELINE_STAGE_TRANSFER_BIT
_HOST_VISIBLE = vk.VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT
_HOST_COHERENT = vk.VK_MEMORY_PROPERTY_HOST_COHERENT_BIT
_DEVICE_LOCAL = vk.VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT
_WHOLE_SIZE = 0xFFFFFFFFFFFFFFFF
_TIMEOUT_NS = 120 * 10**9


def _check(res, what):
    if res != vk.VK_SUCCESS:
        raise RuntimeError(f"raw_vulkan: {what} returned VkResult {res}")


def _new(ctype, **fields):
    """``ffi.new("<ctype>*")`` with fields set (the caller keeps pointed-to data alive)."""
    return ffi.new(ctype + "*", fields)


class Buffer:
    """A VkBuffer with its own VkDeviceMemory (storage + transfer src/dst). ``mapped``: a NumPy uint8
    view of the whole allocation when the memory is host-visible and was asked to be mapped.
    Freed by ``Raw.close()``, or earlier by ``Raw.free(buffer)``."""

    def __init__(self, handle, memory, nbytes, mapped, release):
        self.handle, self.memory, self.nbytes, self.mapped = handle, memory, nbytes, mapped
        self._release = release


class Pipeline:
    """A compute pipeline from SPIR-V bytes: set layout (``n_bindings`` storage buffers at bindings
    0..n-1), pipeline layout (``push_size`` bytes of push constants), module, pipeline."""

    def __init__(self, set_layout, layout, module, pipeline, n_bindings, push_size):
        self.set_layout, self.layout, self.module, self.pipeline = set_layout, layout, module, pipeline
        self.n_bindings, self.push_size = n_bindings, push_size


class Raw:
    """The harness on one vkbands Context's device and queue (see the module docstring)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.dev, self.queue = ctx.device, ctx.queue
        self._free = []                      # destroy callbacks, run newest first by close()
        self._keep = []                      # cffi data referenced by recorded command buffers
        self._closed = False
        props = ffi.new("VkPhysicalDeviceMemoryProperties*")
        lib.vkGetPhysicalDeviceMemoryProperties(ctx.physical_device, props)
        self._mem = props
        dprops = ffi.new("VkPhysicalDeviceProperties*")
        lib.vkGetPhysicalDeviceProperties(ctx.physical_device, dprops)
        self.max_groups_x = int(dprops.limits.maxComputeWorkGroupCount[0])
        p = ffi.new("VkCommandPool*")
        _check(lib.vkCreateCommandPool(self.dev, _new(
            "VkCommandPoolCreateInfo", sType=vk.VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
            queueFamilyIndex=ctx.queue_family), NULL, p), "vkCreateCommandPool")
        self.command_pool = p[0]
        self._free.append(lambda h=p[0]: lib.vkDestroyCommandPool(self.dev, h, NULL))
        f = ffi.new("VkFence*")
        _check(lib.vkCreateFence(self.dev, _new("VkFenceCreateInfo", sType=vk.VK_STRUCTURE_TYPE_FENCE_CREATE_INFO),
                                 NULL, f), "vkCreateFence")
        self.fence = f                       # VkFence[1]: passed as is to reset/submit/wait
        self._free.append(lambda h=f[0]: lib.vkDestroyFence(self.dev, h, NULL))
        self._desc_pool = None
        self._staging = None
        self._check_layer()

    # ---------------------------------------------------------------- helpers
    def _check_layer(self):
        """Raise what the context's validation layer reported about this harness's calls."""
        self.ctx.check()

    def _memory_type(self, bits, required, preferred=0):
        best, score = None, -1
        for i in range(self._mem.memoryTypeCount):
            flags = self._mem.memoryTypes[i].propertyFlags
            if bits & (1 << i) and flags & required == required:
                s = bin(flags & preferred).count("1")
                if s > score:
                    best, score = i, s
        if best is None:
            raise MemoryError(f"raw_vulkan: no memory type with flags {required:#x}")
        return best

    def groups(self, n_groups):
        """Spread ``n_groups`` workgroups over (x, y) as ``Kernel.grid`` does (shaders use flat_group_id())."""
        if n_groups <= self.max_groups_x:
            return (n_groups, 1, 1)
        gy = -(-n_groups // self.max_groups_x)
        return (-(-n_groups // gy), gy, 1)

    # ---------------------------------------------------------------- objects
    def buffer(self, nbytes, host=False):
        """A storage/transfer buffer; ``host=True``: host-visible coherent memory, kept mapped.
        Otherwise device-local memory (on unified devices the same memory anyway)."""
        info = _new("VkBufferCreateInfo", sType=vk.VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, size=max(int(nbytes), 16),
                    usage=(vk.VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | vk.VK_BUFFER_USAGE_TRANSFER_SRC_BIT
                           | vk.VK_BUFFER_USAGE_TRANSFER_DST_BIT),
                    sharingMode=vk.VK_SHARING_MODE_EXCLUSIVE)
        b = ffi.new("VkBuffer*")
        _check(lib.vkCreateBuffer(self.dev, info, NULL, b), "vkCreateBuffer")
        m = ffi.new("VkDeviceMemory*")
        mapped = None

        def release(dev=self.dev, b=b, m=m):
            if mapped is not None:
                lib.vkUnmapMemory(dev, m[0])
            lib.vkDestroyBuffer(dev, b[0], NULL)
            if m[0] != NULL:
                lib.vkFreeMemory(dev, m[0], NULL)
        self._free.append(release)
        req = ffi.new("VkMemoryRequirements*")
        lib.vkGetBufferMemoryRequirements(self.dev, b[0], req)
        mtype = (self._memory_type(req.memoryTypeBits, _HOST_VISIBLE | _HOST_COHERENT) if host
                 else self._memory_type(req.memoryTypeBits, _DEVICE_LOCAL))
        _check(lib.vkAllocateMemory(self.dev, _new("VkMemoryAllocateInfo", sType=vk.VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                                                   allocationSize=req.size, memoryTypeIndex=mtype), NULL, m),
               "vkAllocateMemory")
        _check(lib.vkBindBufferMemory(self.dev, b[0], m[0], 0), "vkBindBufferMemory")
        if host:
            pp = ffi.new("void**")
            _check(lib.vkMapMemory(self.dev, m[0], 0, req.size, 0, pp), "vkMapMemory")
            mapped = np.frombuffer(ffi.buffer(pp[0], int(req.size)), np.uint8)
        self._check_layer()
        return Buffer(b[0], m[0], int(nbytes), mapped, release)

    def free(self, buf: Buffer):
        """Free ``buf`` now (no GPU work may still use it)."""
        if buf._release in self._free:
            self._free.remove(buf._release)
            buf.mapped = None
            buf._release()

    def pipeline(self, spirv: bytes, n_bindings: int, push_size: int, spec: dict | None = None):
        """A compute pipeline; ``spec``: {constant_id: int or float} specialisation constants."""
        dev = self.dev
        binds = ffi.new("VkDescriptorSetLayoutBinding[]", [
            dict(binding=i, descriptorType=vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, descriptorCount=1,
                 stageFlags=vk.VK_SHADER_STAGE_COMPUTE_BIT) for i in range(n_bindings)])
        sl = ffi.new("VkDescriptorSetLayout*")
        _check(lib.vkCreateDescriptorSetLayout(dev, _new(
            "VkDescriptorSetLayoutCreateInfo", sType=vk.VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
            bindingCount=n_bindings, pBindings=binds), NULL, sl), "vkCreateDescriptorSetLayout")
        self._free.append(lambda h=sl[0]: lib.vkDestroyDescriptorSetLayout(dev, h, NULL))
        rng = ffi.new("VkPushConstantRange*", dict(stageFlags=vk.VK_SHADER_STAGE_COMPUTE_BIT, offset=0,
                                                   size=push_size))
        pl = ffi.new("VkPipelineLayout*")
        _check(lib.vkCreatePipelineLayout(dev, _new(
            "VkPipelineLayoutCreateInfo", sType=vk.VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO, setLayoutCount=1,
            pSetLayouts=sl, pushConstantRangeCount=1 if push_size else 0, pPushConstantRanges=rng if push_size else NULL),
            NULL, pl), "vkCreatePipelineLayout")
        self._free.append(lambda h=pl[0]: lib.vkDestroyPipelineLayout(dev, h, NULL))
        code = ffi.new("char[]", spirv)
        mod = ffi.new("VkShaderModule*")
        _check(lib.vkCreateShaderModule(dev, _new(
            "VkShaderModuleCreateInfo", sType=vk.VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, codeSize=len(spirv),
            pCode=ffi.cast("uint32_t*", code)), NULL, mod), "vkCreateShaderModule")
        self._free.append(lambda h=mod[0]: lib.vkDestroyShaderModule(dev, h, NULL))
        spec = dict(spec or {})
        data = b"".join(struct.pack("<f" if isinstance(v, float) else "<I", v) for v in spec.values())
        entries = ffi.new("VkSpecializationMapEntry[]", [dict(constantID=cid, offset=4 * i, size=4)
                                                         for i, cid in enumerate(spec)] or 1)
        blob = ffi.new("char[]", data or b"\0")
        spec_info = ffi.new("VkSpecializationInfo*", dict(mapEntryCount=len(spec), pMapEntries=entries,
                                                          dataSize=len(data), pData=blob))
        name = ffi.new("char[]", b"main")
        info = _new("VkComputePipelineCreateInfo", sType=vk.VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
                    stage=dict(sType=vk.VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                               stage=vk.VK_SHADER_STAGE_COMPUTE_BIT, module=mod[0], pName=name,
                               pSpecializationInfo=spec_info if spec else NULL),
                    layout=pl[0])
        pipe = ffi.new("VkPipeline*")
        _check(lib.vkCreateComputePipelines(dev, NULL, 1, info, NULL, pipe), "vkCreateComputePipelines")
        self._free.append(lambda h=pipe[0]: lib.vkDestroyPipeline(dev, h, NULL))
        self._check_layer()
        return Pipeline(sl, pl[0], mod[0], pipe[0], n_bindings, push_size)

    def descriptor_set(self, pipe: Pipeline, *buffers: Buffer):
        """A descriptor set of ``pipe``'s layout with ``buffers`` bound at bindings 0.. (whole buffers)."""
        if len(buffers) != pipe.n_bindings:
            raise TypeError(f"pipeline has {pipe.n_bindings} bindings, got {len(buffers)} buffers")
        if self._desc_pool is None:
            sizes = ffi.new("VkDescriptorPoolSize*", dict(type=vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                                          descriptorCount=256))
            dp = ffi.new("VkDescriptorPool*")
            _check(lib.vkCreateDescriptorPool(self.dev, _new(
                "VkDescriptorPoolCreateInfo", sType=vk.VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO, maxSets=64,
                poolSizeCount=1, pPoolSizes=sizes), NULL, dp), "vkCreateDescriptorPool")
            self._desc_pool = dp[0]
            self._free.append(lambda h=dp[0]: lib.vkDestroyDescriptorPool(self.dev, h, NULL))
        ds = ffi.new("VkDescriptorSet*")
        _check(lib.vkAllocateDescriptorSets(self.dev, _new(
            "VkDescriptorSetAllocateInfo", sType=vk.VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
            descriptorPool=self._desc_pool, descriptorSetCount=1, pSetLayouts=pipe.set_layout), ds),
            "vkAllocateDescriptorSets")
        infos = ffi.new("VkDescriptorBufferInfo[]", [dict(buffer=b.handle, offset=0, range=_WHOLE_SIZE) for b in buffers])
        writes = ffi.new("VkWriteDescriptorSet[]", [
            dict(sType=vk.VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET, dstSet=ds[0], dstBinding=i, descriptorCount=1,
                 descriptorType=vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, pBufferInfo=infos + i)
            for i in range(len(buffers))])
        lib.vkUpdateDescriptorSets(self.dev, len(buffers), writes, 0, NULL)
        self._check_layer()
        return ds                             # VkDescriptorSet[1] (freed with the pool)

    def program(self):
        """A new :class:`Program` (one primary command buffer, recording)."""
        return Program(self)

    # ---------------------------------------------------------------- host <-> device (not timed)
    def _staging_for(self, nbytes):
        if self._staging is None or self._staging.nbytes < nbytes:
            if self._staging is not None:
                self.free(self._staging)
            self._staging = self.buffer(nbytes, host=True)
        return self._staging

    def upload(self, buf: Buffer, data: np.ndarray):
        """Copy ``data`` (its bytes) into ``buf`` through a mapped staging buffer and a one-off copy."""
        raw = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        st = self._staging_for(raw.nbytes)
        st.mapped[: raw.nbytes] = raw                       # coherent: the submit makes it visible
        prog = self.program()
        prog.copy(st, buf, raw.nbytes)
        prog.end()
        prog.submit()

    def download(self, buf: Buffer, dtype=np.float32, shape=None) -> np.ndarray:
        """A NumPy copy of ``buf`` (through the staging buffer, transfer -> host barrier before reading)."""
        st = self._staging_for(buf.nbytes)
        prog = self.program()
        prog.copy(buf, st, buf.nbytes)
        prog.barrier(_TRANSFER, vk.VK_ACCESS_TRANSFER_WRITE_BIT, vk.VK_PIPELINE_STAGE_HOST_BIT,
                     vk.VK_ACCESS_HOST_READ_BIT)
        prog.end()
        prog.submit()
        out = st.mapped[: buf.nbytes].view(dtype).copy()
        return out if shape is None else out.reshape(shape)

    # ---------------------------------------------------------------- lifetime
    def close(self):
        if self._closed:
            return
        self._closed = True
        try:
            _check(lib.vkQueueWaitIdle(self.queue), "vkQueueWaitIdle")
        finally:
            for f in reversed(self._free):
                f()
            self._free, self._keep = [], []
            self._check_layer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Program:
    """One prerecorded primary command buffer. Record with :meth:`dispatch`, :meth:`copy` and the
    barriers, :meth:`end` it, then :meth:`submit` (replays: no recording work, three C calls)."""

    def __init__(self, raw: Raw):
        self.raw = raw
        cb = ffi.new("VkCommandBuffer*")
        _check(lib.vkAllocateCommandBuffers(raw.dev, _new(
            "VkCommandBufferAllocateInfo", sType=vk.VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
            commandPool=raw.command_pool, level=vk.VK_COMMAND_BUFFER_LEVEL_PRIMARY, commandBufferCount=1), cb),
            "vkAllocateCommandBuffers")
        raw._free.append(lambda h=cb: lib.vkFreeCommandBuffers(raw.dev, raw.command_pool, 1, h))
        self.cb = cb                          # VkCommandBuffer[1]: pCommandBuffers of the submit
        self.dispatches = self.barriers = 0
        _check(lib.vkBeginCommandBuffer(cb[0], _new("VkCommandBufferBeginInfo",
                                                    sType=vk.VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO)),
               "vkBeginCommandBuffer")
        # Everything submitted earlier (uploads, earlier replays of this program) happens-before this.
        self.barrier(vk.VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, vk.VK_ACCESS_MEMORY_WRITE_BIT, _COMPUTE | _TRANSFER,
                     vk.VK_ACCESS_SHADER_READ_BIT | vk.VK_ACCESS_SHADER_WRITE_BIT | vk.VK_ACCESS_TRANSFER_READ_BIT
                     | vk.VK_ACCESS_TRANSFER_WRITE_BIT, count=False)
        self._submit = None

    def barrier(self, src_stage, src_access, dst_stage, dst_access, count=True):
        mb = _new("VkMemoryBarrier", sType=vk.VK_STRUCTURE_TYPE_MEMORY_BARRIER, srcAccessMask=src_access,
                  dstAccessMask=dst_access)
        lib.vkCmdPipelineBarrier(self.cb[0], src_stage, dst_stage, 0, 1, mb, 0, NULL, 0, NULL)
        self.barriers += bool(count)

    def compute_barrier(self):
        """Between dependent dispatches: shader writes -> shader reads and writes."""
        self.barrier(_COMPUTE, vk.VK_ACCESS_SHADER_WRITE_BIT, _COMPUTE,
                     vk.VK_ACCESS_SHADER_READ_BIT | vk.VK_ACCESS_SHADER_WRITE_BIT)

    def transfer_barrier(self):
        """Between dependent copies: transfer writes -> transfer reads and writes."""
        self.barrier(_TRANSFER, vk.VK_ACCESS_TRANSFER_WRITE_BIT, _TRANSFER,
                     vk.VK_ACCESS_TRANSFER_READ_BIT | vk.VK_ACCESS_TRANSFER_WRITE_BIT)

    def dispatch(self, pipe: Pipeline, dset, groups, push: bytes = b""):
        cb = self.cb[0]
        lib.vkCmdBindPipeline(cb, vk.VK_PIPELINE_BIND_POINT_COMPUTE, pipe.pipeline)
        lib.vkCmdBindDescriptorSets(cb, vk.VK_PIPELINE_BIND_POINT_COMPUTE, pipe.layout, 0, 1, dset, 0, NULL)
        if push:
            blob = ffi.new("char[]", push)
            self.raw._keep.append(blob)
            lib.vkCmdPushConstants(cb, pipe.layout, vk.VK_SHADER_STAGE_COMPUTE_BIT, 0, len(push), blob)
        gx, gy, gz = (tuple(groups) + (1, 1))[:3] if not isinstance(groups, int) else (groups, 1, 1)
        lib.vkCmdDispatch(cb, gx, gy, gz)
        self.dispatches += 1

    def copy(self, src: Buffer, dst: Buffer, nbytes: int):
        region = ffi.new("VkBufferCopy*", dict(srcOffset=0, dstOffset=0, size=int(nbytes)))
        lib.vkCmdCopyBuffer(self.cb[0], src.handle, dst.handle, 1, region)

    def end(self):
        _check(lib.vkEndCommandBuffer(self.cb[0]), "vkEndCommandBuffer")
        self._submit = _new("VkSubmitInfo", sType=vk.VK_STRUCTURE_TYPE_SUBMIT_INFO, commandBufferCount=1,
                            pCommandBuffers=self.cb)
        self.raw._check_layer()
        return self

    def submit(self):
        """Run the command buffer and wait for it: vkResetFences, vkQueueSubmit, vkWaitForFences."""
        raw = self.raw
        _check(lib.vkResetFences(raw.dev, 1, raw.fence), "vkResetFences")
        _check(lib.vkQueueSubmit(raw.queue, 1, self._submit, raw.fence[0]), "vkQueueSubmit")
        _check(lib.vkWaitForFences(raw.dev, 1, raw.fence, vk.VK_TRUE, _TIMEOUT_NS), "vkWaitForFences")


# ----------------------------------------------------------------------------- the benchmarks' kernels
class RawAdd:
    """``add.comp`` (c = a + b, float32) with the spec the add bench uses: one dispatch per program,
    or a chain of ``n`` dependent tiny dispatches (ping-pong, compute barriers between)."""

    def __init__(self, raw: Raw, vec_per_invocation=4, local_x=256):
        self.raw, self.local_x, self.vpi = raw, local_x, vec_per_invocation
        # constant_id 0 = LOCAL_X, 1 = VEC_PER_INVOCATION (shaders/add.comp); push: uint n
        self.pipe = raw.pipeline(compile_glsl("add.comp"), 3, 4, {0: local_x, 1: vec_per_invocation})

    def groups(self, n):
        return self.raw.groups(max(1, -(-n // (self.local_x * self.vpi * 4))))

    def program(self, a: Buffer, b: Buffer, c: Buffer, n: int) -> Program:
        prog = self.raw.program()
        prog.dispatch(self.pipe, self.raw.descriptor_set(self.pipe, a, b, c), self.groups(n), struct.pack("<I", n))
        return prog.end()

    def call(self, a: Buffer, b: Buffer, n: int) -> Buffer:
        """What a convenience ``add(a, b)`` costs at the floor: allocate the output, take a descriptor
        set (from a pool reset per call), record a command buffer, submit, wait, free the command
        buffer. Returns the new output (free it with ``raw.free``)."""
        raw = self.raw
        c = raw.buffer(4 * n)
        if getattr(self, "_pool", None) is None:
            sizes = ffi.new("VkDescriptorPoolSize*", dict(type=vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, descriptorCount=3))
            dp = ffi.new("VkDescriptorPool*")
            _check(lib.vkCreateDescriptorPool(raw.dev, _new(
                "VkDescriptorPoolCreateInfo", sType=vk.VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO, maxSets=1,
                poolSizeCount=1, pPoolSizes=sizes), NULL, dp), "vkCreateDescriptorPool")
            self._pool = dp[0]
            raw._free.append(lambda h=dp[0]: lib.vkDestroyDescriptorPool(raw.dev, h, NULL))
            self._set_info = _new("VkDescriptorSetAllocateInfo", sType=vk.VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                                  descriptorPool=dp[0], descriptorSetCount=1, pSetLayouts=self.pipe.set_layout)
            self._set = ffi.new("VkDescriptorSet*")
            self._infos = ffi.new("VkDescriptorBufferInfo[3]")
            self._writes = ffi.new("VkWriteDescriptorSet[3]", [
                dict(sType=vk.VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET, dstBinding=i, descriptorCount=1,
                     descriptorType=vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, pBufferInfo=self._infos + i) for i in range(3)])
            self._cb_info = _new("VkCommandBufferAllocateInfo", sType=vk.VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                 commandPool=raw.command_pool, level=vk.VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                 commandBufferCount=1)
            self._begin = _new("VkCommandBufferBeginInfo", sType=vk.VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                               flags=vk.VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT)
            self._barrier = _new("VkMemoryBarrier", sType=vk.VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                                 srcAccessMask=vk.VK_ACCESS_MEMORY_WRITE_BIT,
                                 dstAccessMask=vk.VK_ACCESS_SHADER_READ_BIT | vk.VK_ACCESS_SHADER_WRITE_BIT)
        dev = raw.dev
        _check(lib.vkResetDescriptorPool(dev, self._pool, 0), "vkResetDescriptorPool")
        _check(lib.vkAllocateDescriptorSets(dev, self._set_info, self._set), "vkAllocateDescriptorSets")
        for i, buf in enumerate((a, b, c)):
            self._infos[i].buffer, self._infos[i].offset, self._infos[i].range = buf.handle, 0, _WHOLE_SIZE
            self._writes[i].dstSet = self._set[0]
        lib.vkUpdateDescriptorSets(dev, 3, self._writes, 0, NULL)
        cb = ffi.new("VkCommandBuffer*")
        _check(lib.vkAllocateCommandBuffers(dev, self._cb_info, cb), "vkAllocateCommandBuffers")
        _check(lib.vkBeginCommandBuffer(cb[0], self._begin), "vkBeginCommandBuffer")
        lib.vkCmdPipelineBarrier(cb[0], vk.VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, _COMPUTE, 0, 1, self._barrier,
                                 0, NULL, 0, NULL)
        lib.vkCmdBindPipeline(cb[0], vk.VK_PIPELINE_BIND_POINT_COMPUTE, self.pipe.pipeline)
        lib.vkCmdBindDescriptorSets(cb[0], vk.VK_PIPELINE_BIND_POINT_COMPUTE, self.pipe.layout, 0, 1, self._set, 0, NULL)
        push = ffi.new("uint32_t*", n)
        lib.vkCmdPushConstants(cb[0], self.pipe.layout, vk.VK_SHADER_STAGE_COMPUTE_BIT, 0, 4, push)
        lib.vkCmdDispatch(cb[0], *self.groups(n))
        _check(lib.vkEndCommandBuffer(cb[0]), "vkEndCommandBuffer")
        submit = _new("VkSubmitInfo", sType=vk.VK_STRUCTURE_TYPE_SUBMIT_INFO, commandBufferCount=1, pCommandBuffers=cb)
        _check(lib.vkResetFences(dev, 1, raw.fence), "vkResetFences")
        _check(lib.vkQueueSubmit(raw.queue, 1, submit, raw.fence[0]), "vkQueueSubmit")
        _check(lib.vkWaitForFences(dev, 1, raw.fence, vk.VK_TRUE, _TIMEOUT_NS), "vkWaitForFences")
        lib.vkFreeCommandBuffers(dev, raw.command_pool, 1, cb)
        return c

    def chain(self, x: Buffer, y: Buffer, one: Buffer, n: int, dispatches: int) -> Program:
        """``dispatches`` dependent adds: y = x + one, x = y + one, ... (barrier between each)."""
        raw = self.raw
        sets = (raw.descriptor_set(self.pipe, x, one, y), raw.descriptor_set(self.pipe, y, one, x))
        prog = raw.program()
        push = struct.pack("<I", n)
        for i in range(dispatches):
            if i:
                prog.compute_barrier()
            prog.dispatch(self.pipe, sets[i % 2], 1, push)
        return prog.end()


class RawHeat:
    """``step_heat.comp`` as ``vkbands.systems`` dispatches it (spec LOCAL_X / RY, ``ALIGNED`` when
    W % 4 == 0; push H, W, batch; alpha per member in the Params buffer, the Obs buffer unused by an
    unobserved step) on two ping-pong buffers ``a`` (the state) and ``b``."""

    def __init__(self, raw: Raw, H, W, alpha, batch=1):
        from vkbands.systems._grid import _GRID_LOCAL, _GRID_RY   # the engine's launch shape, kept in step
        self.raw, self.H, self.W, self.alpha, self.batch = raw, int(H), int(W), float(alpha), int(batch)
        defines = {"ALIGNED": 1} if W % 4 == 0 else None
        # constant_id 0 = LOCAL_X, 1 = RY (shaders/step_heat.comp); push: uint H, W, batch; bindings:
        # 0 Src, 1 Dst, 2 Params (B floats: alpha per member), 3 Obs (observed steps only: a dummy here)
        self.pipe = raw.pipeline(compile_glsl("step_heat.comp", defines), 4, 12, {0: _GRID_LOCAL, 1: _GRID_RY})
        inv = (-(-W // 4)) * (-(-H // _GRID_RY)) * self.batch
        self.grid = raw.groups(-(-inv // _GRID_LOCAL))
        self.nbytes = 4 * self.H * self.W * self.batch
        self.a, self.b = raw.buffer(self.nbytes), raw.buffer(self.nbytes)
        self.params, self.obs = raw.buffer(4 * self.batch), raw.buffer(16)
        raw.upload(self.params, np.full(self.batch, self.alpha, np.float32))
        self._sets = (raw.descriptor_set(self.pipe, self.a, self.b, self.params, self.obs),
                      raw.descriptor_set(self.pipe, self.b, self.a, self.params, self.obs))
        self._push = struct.pack("<III", self.H, self.W, self.batch)

    def program(self, steps: int) -> Program:
        """``steps`` (even: the result lands in ``a``) dependent steps with a barrier between each."""
        if steps % 2:
            raise ValueError("steps must be even (ping-pong ends in the state buffer)")
        prog = self.raw.program()
        for s in range(steps):
            if s:
                prog.compute_barrier()
            prog.dispatch(self.pipe, self._sets[s % 2], self.grid, self._push)
        return prog.end()

    def set(self, u):
        self.raw.upload(self.a, np.asarray(u, np.float32))

    def get(self):
        return self.raw.download(self.a, np.float32, (self.batch, self.H, self.W) if self.batch > 1 else (self.H, self.W))


def copy_program(raw: Raw, src: Buffer, dst: Buffer, copies: int) -> Program:
    """``copies`` dependent whole-buffer copies src -> dst -> src ... (transfer barrier between each):
    a plain device-to-device copy, the bandwidth yardstick."""
    prog = raw.program()
    for i in range(copies):
        if i:
            prog.transfer_barrier()
        s, d = (src, dst) if i % 2 == 0 else (dst, src)
        prog.copy(s, d, src.nbytes)
    return prog.end()
