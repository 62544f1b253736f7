"""Recorder: the one place where GPU commands are recorded (dispatches, copies, fills, clears).

A recorder owns one command buffer. Each command declares which resources it reads and writes (for a
dispatch: reflected from the shader's ``readonly``/``writeonly`` qualifiers); the recorder inserts a
pipeline barrier only before a command that has a hazard (read-after-write, write-after-write or
write-after-read) with a command recorded since the last barrier. ``submit()`` runs the recording and
waits; calling it again replays the same command buffer with no Python work per command.

    with ctx.recorder() as rec:          # submitted once at the end of the block, then freed
        rec.dispatch(kernel, groups, a, b, c, push={"n": n})

    rec = ctx.recorder()                 # keep it to replay
    ...; rec.submit(); rec.submit(); rec.close()

While a recorder is the *current* one (inside its ``with`` block, or ``rec.activate()``), the
convenience API (``vkbands.add`` ...) records into it instead of submitting its own work.
"""
from __future__ import annotations

import threading

import vulkan as vk

from .resource import Resource
from .memory import DeviceArray, StorageImage

_COMPUTE = vk.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT
_TRANSFER = vk.VK_PIPELINE_STAGE_TRANSFER_BIT
_ALL_ACCESS = (vk.VK_ACCESS_SHADER_READ_BIT | vk.VK_ACCESS_SHADER_WRITE_BIT | vk.VK_ACCESS_TRANSFER_READ_BIT
               | vk.VK_ACCESS_TRANSFER_WRITE_BIT)
_GENERAL = vk.VK_IMAGE_LAYOUT_GENERAL
_WHOLE_SIZE = 0xFFFFFFFFFFFFFFFF  # VK_WHOLE_SIZE (the binding exposes it as -1)
_COLOR_RANGE = dict(aspectMask=vk.VK_IMAGE_ASPECT_COLOR_BIT, baseMipLevel=0, levelCount=1,
                    baseArrayLayer=0, layerCount=1)

_local = threading.local()


def _write_access(stages: int) -> int:
    """The write accesses that ``stages`` can perform (access masks must match their stages)."""
    return ((vk.VK_ACCESS_SHADER_WRITE_BIT if stages & _COMPUTE else 0)
            | (vk.VK_ACCESS_TRANSFER_WRITE_BIT if stages & _TRANSFER else 0))


def _any_access(stages: int) -> int:
    return (_write_access(stages) | (vk.VK_ACCESS_SHADER_READ_BIT if stages & _COMPUTE else 0)
            | (vk.VK_ACCESS_TRANSFER_READ_BIT if stages & _TRANSFER else 0))


def current():
    """The recorder the convenience API records into on this thread, or None."""
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else None


class Recorder(Resource):
    """Records commands into one command buffer; see the module docstring.

    Attributes: ``dispatch_count``, ``barrier_count`` (barriers inserted for hazards), ``submitted``.
    """

    _POOL_SETS = 64

    def __init__(self, ctx):
        ctx._require_open()
        self.ctx = ctx
        dev = ctx.device
        self.command_buffer = vk.vkAllocateCommandBuffers(dev, vk.VkCommandBufferAllocateInfo(
            commandPool=ctx.command_pool, level=vk.VK_COMMAND_BUFFER_LEVEL_PRIMARY, commandBufferCount=1))[0]
        self.fence = vk.vkCreateFence(dev, vk.VkFenceCreateInfo(), None)
        self._pools, self._sets = [], {}
        self._keepalive = []            # resources and cffi data referenced by the recording
        self._written, self._read = set(), set()
        self._pending_stages = 0
        self._stages_used, self._wrote = 0, False
        self._images = {}               # image -> layout at this point of the recording
        self.dispatch_count = self.barrier_count = 0
        self.submitted = 0
        self._recording, self._in_flight = True, False
        self._adopt(ctx)
        vk.vkBeginCommandBuffer(self.command_buffer, vk.VkCommandBufferBeginInfo())
        # Everything submitted before this recording (earlier replays included) happens-before it.
        self._memory_barrier(vk.VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, _COMPUTE | _TRANSFER,
                             vk.VK_ACCESS_MEMORY_WRITE_BIT, _ALL_ACCESS)

    # ------------------------------------------------------------------ hazards and barriers
    def _memory_barrier(self, src_stage, dst_stage, src_access, dst_access):
        mb = vk.VkMemoryBarrier(srcAccessMask=src_access, dstAccessMask=dst_access)
        vk.vkCmdPipelineBarrier(self.command_buffer, src_stage, dst_stage, 0, 1, [mb], 0, None, 0, None)

    def _access(self, stage, reads=(), writes=()):
        """Declare a command's accesses; insert a barrier first if it conflicts with pending ones."""
        reads, writes = {_key(r) for r in reads}, {_key(w) for w in writes}
        if (reads | writes) & self._written or writes & self._read:
            self._memory_barrier(self._pending_stages, stage, _write_access(self._pending_stages),
                                 _any_access(stage))
            self.barrier_count += 1
            self._written, self._read, self._pending_stages = set(), set(), 0
        self._written |= writes
        self._read |= reads
        self._pending_stages |= stage
        self._stages_used |= stage
        self._wrote = self._wrote or bool(writes)

    def _general(self, image: StorageImage, discard: bool = False):
        """Transition ``image`` to GENERAL (the layout every vkbands command uses) if needed."""
        old = vk.VK_IMAGE_LAYOUT_UNDEFINED if discard else self._images.get(image, image.layout)
        if old == _GENERAL:
            return
        ib = vk.VkImageMemoryBarrier(srcAccessMask=0 if discard else vk.VK_ACCESS_MEMORY_WRITE_BIT,
                                     dstAccessMask=_ALL_ACCESS, oldLayout=old, newLayout=_GENERAL,
                                     srcQueueFamilyIndex=vk.VK_QUEUE_FAMILY_IGNORED,
                                     dstQueueFamilyIndex=vk.VK_QUEUE_FAMILY_IGNORED, image=image.image,
                                     subresourceRange=vk.VkImageSubresourceRange(**_COLOR_RANGE))
        vk.vkCmdPipelineBarrier(self.command_buffer, vk.VK_PIPELINE_STAGE_ALL_COMMANDS_BIT,
                                _COMPUTE | _TRANSFER, 0, 0, None, 0, None, 1, [ib])
        self._images[image] = _GENERAL

    def barrier(self):
        """A full compute/transfer memory barrier (only needed for accesses the recorder cannot see,
        e.g. a shader that indexes one buffer through two bindings)."""
        self._require_recording()
        self._memory_barrier(_COMPUTE | _TRANSFER, _COMPUTE | _TRANSFER, _write_access(_COMPUTE | _TRANSFER),
                             _ALL_ACCESS)
        self.barrier_count += 1
        self._written, self._read, self._pending_stages = set(), set(), 0

    # ------------------------------------------------------------------ commands
    def dispatch(self, kernel, groups, *resources, push: dict | None = None):
        """Record ``kernel`` over ``groups`` workgroups (int or (x, y, z)) with ``resources`` bound in
        binding order (DeviceArray for buffers, StorageImage for storage images) and ``push``
        constants by name."""
        self._require_recording()
        kernel._require_open()
        if len(resources) != len(kernel.bindings):
            names = [b.name or f"binding {b.binding}" for b in kernel.bindings]
            raise TypeError(f"{kernel.name} takes {len(kernel.bindings)} resources ({', '.join(names)}); "
                            f"got {len(resources)}")
        groups = (int(groups), 1, 1) if isinstance(groups, (int,)) else tuple(int(g) for g in groups) + (1,) * (3 - len(groups))
        limits = self.ctx.limits.maxComputeWorkGroupCount
        if any(g < 0 or g > limits[i] for i, g in enumerate(groups)):
            raise ValueError(f"{kernel.name}: groups={groups} exceed this device's maxComputeWorkGroupCount="
                             f"{tuple(limits)}")
        reads, writes = [], []
        for b, res in zip(kernel.bindings, resources):
            want = StorageImage if b.kind in ("storage_image", "sampled_image") else DeviceArray
            if not isinstance(res, want):
                raise TypeError(f"{kernel.name}: binding {b.binding} ({b.name or b.kind}) needs a "
                                f"{want.__name__}, got {type(res).__name__}")
            res._require_open()
            if isinstance(res, StorageImage):
                self._general(res)
            if b.readable:
                reads.append(res)
            if b.writable:
                writes.append(res)
        dset = self._descriptor_set(kernel, resources)
        data = kernel.pack(push) if kernel.push_size else None
        if groups[0] * groups[1] * groups[2] == 0:
            return
        self._access(_COMPUTE, reads, writes)
        cb = self.command_buffer
        vk.vkCmdBindPipeline(cb, vk.VK_PIPELINE_BIND_POINT_COMPUTE, kernel.pipeline)
        vk.vkCmdBindDescriptorSets(cb, vk.VK_PIPELINE_BIND_POINT_COMPUTE, kernel.layout, 0, 1, [dset], 0, None)
        if data is not None:
            blob = vk.ffi.new("char[]", data)
            self._keepalive.append(blob)
            vk.vkCmdPushConstants(cb, kernel.layout, vk.VK_SHADER_STAGE_COMPUTE_BIT, 0, len(data), blob)
        vk.vkCmdDispatch(cb, *groups)
        self._keepalive.append(kernel)
        self.dispatch_count += 1

    def copy(self, src: DeviceArray, dst: DeviceArray, nbytes: int | None = None,
             src_offset: int = 0, dst_offset: int = 0):
        """Record a buffer-to-buffer copy of ``nbytes`` (default: all of ``src``)."""
        self._require_recording()
        nbytes = src.nbytes if nbytes is None else int(nbytes)
        if src_offset + nbytes > src.nbytes or dst_offset + nbytes > dst.nbytes:
            raise ValueError(f"copy of {nbytes} bytes does not fit: src has {src.nbytes} from offset "
                             f"{src_offset}, dst has {dst.nbytes} from offset {dst_offset}")
        if nbytes == 0:
            return
        self._access(_TRANSFER, [src], [dst])
        region = vk.VkBufferCopy(srcOffset=src_offset, dstOffset=dst_offset, size=nbytes)
        vk.vkCmdCopyBuffer(self.command_buffer, src.buffer, dst.buffer, 1, [region])

    def fill(self, dst: DeviceArray, word: int):
        """Record filling all of ``dst`` with a repeated 32-bit word."""
        self._require_recording()
        self._access(_TRANSFER, (), [dst])
        vk.vkCmdFillBuffer(self.command_buffer, dst.buffer, 0, _WHOLE_SIZE, int(word) & 0xFFFFFFFF)

    def clear(self, image: StorageImage, value=(0.0, 0.0, 0.0, 0.0)):
        """Record clearing ``image`` to ``value`` (RGBA floats), leaving it in GENERAL layout."""
        self._require_recording()
        self._general(image, discard=True)
        self._access(_TRANSFER, (), [image])
        color = vk.VkClearColorValue(float32=list(value))
        rng = vk.VkImageSubresourceRange(**_COLOR_RANGE)
        vk.vkCmdClearColorImage(self.command_buffer, image.image, _GENERAL, color, 1, [rng])

    def copy_image_to_buffer(self, image: StorageImage, dst: DeviceArray):
        """Record copying the whole image, tightly packed row-major, into ``dst``."""
        self._require_recording()
        if dst.nbytes < image.nbytes:
            raise ValueError(f"destination has {dst.nbytes} bytes; the image needs {image.nbytes}")
        self._general(image)
        self._access(_TRANSFER, [image], [dst])
        vk.vkCmdCopyImageToBuffer(self.command_buffer, image.image, _GENERAL, dst.buffer, 1, [image.copy_region()])

    def copy_buffer_to_image(self, src: DeviceArray, image: StorageImage):
        """Record copying ``src`` (the whole image, tightly packed row-major) into ``image``."""
        self._require_recording()
        if src.nbytes < image.nbytes:
            raise ValueError(f"source has {src.nbytes} bytes; the image needs {image.nbytes}")
        self._general(image)
        self._access(_TRANSFER, [src], [image])
        vk.vkCmdCopyBufferToImage(self.command_buffer, src.buffer, image.image, _GENERAL, 1, [image.copy_region()])

    # ------------------------------------------------------------------ descriptors
    def _descriptor_set(self, kernel, resources):
        key = (id(kernel), tuple(id(r.buffer if isinstance(r, DeviceArray) else r.image) for r in resources))
        dset = self._sets.get(key)
        if dset is not None:
            return dset
        dset = self._allocate_set(kernel)
        writes, infos = [], []
        for b, res in zip(kernel.bindings, resources):
            if isinstance(res, StorageImage):
                info = vk.VkDescriptorImageInfo(imageView=res.view, imageLayout=_GENERAL)
                w = vk.VkWriteDescriptorSet(dstSet=dset, dstBinding=b.binding, descriptorCount=1,
                                            descriptorType=vk.VK_DESCRIPTOR_TYPE_STORAGE_IMAGE, pImageInfo=[info])
            else:
                info = vk.VkDescriptorBufferInfo(buffer=res.buffer, offset=0, range=_WHOLE_SIZE)
                dtype = (vk.VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER if b.kind == "uniform_buffer"
                         else vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER)
                w = vk.VkWriteDescriptorSet(dstSet=dset, dstBinding=b.binding, descriptorCount=1,
                                            descriptorType=dtype, pBufferInfo=[info])
            infos.append(info)
            writes.append(w)
        if writes:
            vk.vkUpdateDescriptorSets(self.ctx.device, len(writes), writes, 0, None)
        self._sets[key] = dset
        self._keepalive.extend(resources)
        return dset

    def _allocate_set(self, kernel):
        layouts = [kernel.set_layout]
        for pool in reversed(self._pools[-1:]):
            try:
                return vk.vkAllocateDescriptorSets(self.ctx.device, vk.VkDescriptorSetAllocateInfo(
                    descriptorPool=pool, descriptorSetCount=1, pSetLayouts=layouts))[0]
            except (vk.VkErrorOutOfPoolMemory, vk.VkErrorFragmentedPool):
                pass
        n = self._POOL_SETS * (2 ** len(self._pools))
        sizes = [vk.VkDescriptorPoolSize(type=t, descriptorCount=n * c) for t, c in (
            (vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 8), (vk.VK_DESCRIPTOR_TYPE_STORAGE_IMAGE, 2),
            (vk.VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER, 2), (vk.VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER, 2))]
        pool = vk.vkCreateDescriptorPool(self.ctx.device, vk.VkDescriptorPoolCreateInfo(
            maxSets=n, poolSizeCount=len(sizes), pPoolSizes=sizes), None)
        self._pools.append(pool)
        return vk.vkAllocateDescriptorSets(self.ctx.device, vk.VkDescriptorSetAllocateInfo(
            descriptorPool=pool, descriptorSetCount=1, pSetLayouts=layouts))[0]

    # ------------------------------------------------------------------ submission
    def finish(self):
        """End recording (done by the first ``submit``); no more commands can be added."""
        if not self._recording:
            return
        if self._wrote:  # make the writes visible to host reads and to any later work (e.g. drawing)
            self._memory_barrier(self._stages_used, vk.VK_PIPELINE_STAGE_HOST_BIT | vk.VK_PIPELINE_STAGE_ALL_COMMANDS_BIT,
                                 _write_access(self._stages_used),
                                 vk.VK_ACCESS_HOST_READ_BIT | vk.VK_ACCESS_MEMORY_READ_BIT | vk.VK_ACCESS_MEMORY_WRITE_BIT)
        for image, layout in self._images.items():
            image.layout = layout
        vk.vkEndCommandBuffer(self.command_buffer)
        self._recording = False
        self._cbs = [self.command_buffer]
        self._submit_info = vk.VkSubmitInfo(commandBufferCount=1, pCommandBuffers=self._cbs)
        self.ctx.check()

    def submit(self, wait: bool = True, wait_semaphores=(), wait_stages=(), signal_semaphores=()):
        """Run the recording (finishing it first); ``wait=False`` returns at once (then ``wait()``).
        Semaphores let the viewer chain this work with presentation."""
        self._require_open()
        self.finish()
        if self._in_flight:
            self.wait()
        vk.vkResetFences(self.ctx.device, 1, [self.fence])
        if wait_semaphores or signal_semaphores:
            ws, st, ss = list(wait_semaphores), list(wait_stages), list(signal_semaphores)
            info = vk.VkSubmitInfo(waitSemaphoreCount=len(ws), pWaitSemaphores=ws or None,
                                   pWaitDstStageMask=st or None, commandBufferCount=1,
                                   pCommandBuffers=self._cbs, signalSemaphoreCount=len(ss),
                                   pSignalSemaphores=ss or None)
        else:
            info = self._submit_info
        vk.vkQueueSubmit(self.ctx.queue, 1, [info], self.fence)
        self._in_flight = True
        self.submitted += 1
        self.ctx.check()
        if wait:
            self.wait()
        return self

    replay = submit

    def wait(self):
        """Block until the last submission of this recorder finished."""
        if self._in_flight:
            self.ctx.wait_fence(self.fence)
            self._in_flight = False

    # ------------------------------------------------------------------ current-recorder stack
    def activate(self):
        _local.__dict__.setdefault("stack", []).append(self)
        return self

    def deactivate(self):
        stack = getattr(_local, "stack", [])
        if self in stack:
            stack.remove(self)

    def __enter__(self):
        return self.activate()

    def __exit__(self, exc_type, *exc):
        self.deactivate()
        try:
            if exc_type is None and self._recording:
                self.submit()
        finally:
            self.close()

    # ------------------------------------------------------------------ lifetime
    def _require_recording(self):
        self._require_open()
        if not self._recording:
            raise RuntimeError("this Recorder was already submitted; record into a new one")

    def close(self):
        """Wait for in-flight work, free the command buffer, fence and descriptor pools (idempotent)."""
        self.deactivate()
        super().close()
        self._pools, self._sets, self._keepalive, self._images = [], {}, [], {}

    def _destroy(self):
        try:
            self.wait()
        finally:
            dev = self.ctx.device
            for pool in self._pools:
                vk.vkDestroyDescriptorPool(dev, pool, None)
            vk.vkFreeCommandBuffers(dev, self.ctx.command_pool, 1, [self.command_buffer])
            vk.vkDestroyFence(dev, self.fence, None)

    def __repr__(self):
        return (f"<vkbands.Recorder dispatches={self.dispatch_count} barriers={self.barrier_count} "
                f"submitted={self.submitted}>")


def _key(res):
    return res.buffer if isinstance(res, DeviceArray) else res.image
