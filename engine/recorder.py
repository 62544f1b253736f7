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

from . import hazards as H
from .errors import LimitError, _human, vulkan_errors
from .memory import DeviceArray, StorageImage
from .resource import Resource

_COMPUTE, _TRANSFER = H.COMPUTE, H.TRANSFER
_ALL_COMMANDS = vk.VK_PIPELINE_STAGE_ALL_COMMANDS_BIT
_MEMORY_ACCESS = vk.VK_ACCESS_MEMORY_READ_BIT | vk.VK_ACCESS_MEMORY_WRITE_BIT
_GENERAL = vk.VK_IMAGE_LAYOUT_GENERAL
_WHOLE_SIZE = 0xFFFFFFFFFFFFFFFF  # VK_WHOLE_SIZE (the binding exposes it as -1)
_COLOR_RANGE = dict(aspectMask=vk.VK_IMAGE_ASPECT_COLOR_BIT, baseMipLevel=0, levelCount=1,
                    baseArrayLayer=0, layerCount=1)

_local = threading.local()


def current():
    """The recorder the convenience API records into on this thread, or None."""
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else None


class Recorder(Resource):
    """Records commands into one command buffer; see the module docstring.

    Attributes: ``dispatch_count``, ``barrier_count`` (barriers inserted for hazards), ``submitted``,
    ``label`` (what the recording holds, for error messages).
    """

    _POOL_SETS = 64

    def __init__(self, ctx):
        ctx._require_open()
        self.ctx = ctx
        dev = ctx.device
        with vulkan_errors("creating a command buffer"):
            self.command_buffer = vk.vkAllocateCommandBuffers(dev, vk.VkCommandBufferAllocateInfo(
                commandPool=ctx.command_pool, level=vk.VK_COMMAND_BUFFER_LEVEL_PRIMARY, commandBufferCount=1))[0]
            self.fence = vk.vkCreateFence(dev, vk.VkFenceCreateInfo(), None)
        self._pools, self._sets = [], {}
        self._keepalive = []            # resources and cffi data referenced by the recording
        self._hazards = H.HazardTracker()
        self._images = {}               # image -> layout at this point of the recording
        self._names: dict[str, int] = {}
        self.dispatch_count = self.barrier_count = 0
        self.submitted = 0
        self._recording = True
        self._flight = [False]          # shared with the release function: work submitted, not waited on
        self._adopt(ctx, _recorder_release(ctx, self.command_buffer, self.fence, self._pools, self._flight),
                    waits=True)
        vk.vkBeginCommandBuffer(self.command_buffer, vk.VkCommandBufferBeginInfo())
        # Everything submitted before this recording (earlier replays included) happens-before it and
        # its writes are visible to every command here: resources start "clean" in the hazard tracker.
        self._memory_barrier(H.Barrier(_ALL_COMMANDS, _ALL_COMMANDS, vk.VK_ACCESS_MEMORY_WRITE_BIT, _MEMORY_ACCESS))

    # ------------------------------------------------------------------ hazards and barriers
    def _memory_barrier(self, b: H.Barrier):
        mb = vk.VkMemoryBarrier(srcAccessMask=b.src_access, dstAccessMask=b.dst_access)
        vk.vkCmdPipelineBarrier(self.command_buffer, b.src_stages, b.dst_stages, 0, 1, [mb], 0, None, 0, None)

    def _access(self, stage, reads=(), writes=()):
        """Declare a command's accesses; record the barrier its hazards need first (engine.hazards)."""
        b = self._hazards.access(stage, {_key(r) for r in reads}, {_key(w) for w in writes})
        if b is not None:
            self._memory_barrier(b)
            self.barrier_count += 1

    def _general(self, image: StorageImage, discard: bool = False):
        """Transition ``image`` to GENERAL (the layout every vkbands command uses) if needed."""
        old = vk.VK_IMAGE_LAYOUT_UNDEFINED if discard else self._images.get(image, image.layout)
        if old == _GENERAL:
            return
        ib = vk.VkImageMemoryBarrier(srcAccessMask=0 if discard else vk.VK_ACCESS_MEMORY_WRITE_BIT,
                                     dstAccessMask=_MEMORY_ACCESS, oldLayout=old, newLayout=_GENERAL,
                                     srcQueueFamilyIndex=vk.VK_QUEUE_FAMILY_IGNORED,
                                     dstQueueFamilyIndex=vk.VK_QUEUE_FAMILY_IGNORED, image=image.image,
                                     subresourceRange=vk.VkImageSubresourceRange(**_COLOR_RANGE))
        vk.vkCmdPipelineBarrier(self.command_buffer, _ALL_COMMANDS, _ALL_COMMANDS, 0, 0, None, 0, None, 1, [ib])
        self._hazards.reset(image.image)     # ordered after everything before, visible to everything after
        self._images[image] = _GENERAL

    def barrier(self):
        """A full compute/transfer memory barrier (only needed for accesses the recorder cannot see,
        e.g. a shader that indexes one buffer through two bindings)."""
        self._require_recording()
        both = _COMPUTE | _TRANSFER
        b = H.Barrier(both, both, H.access_of(both), H.access_of(both))
        self._memory_barrier(b)
        self._hazards.apply(b)
        self.barrier_count += 1

    # ------------------------------------------------------------------ commands
    def dispatch(self, kernel, groups, *resources, push: dict | None = None):
        """Record ``kernel`` over ``groups`` workgroups (int or (x, y, z)) with ``resources`` bound in
        binding order (DeviceArray for buffers, StorageImage for storage images) and ``push``
        constants by name. Every binding is checked against the device's limits first
        (``LimitError`` names the binding, the array, its size and the limit)."""
        self._require_recording()
        kernel._require_open()
        if len(resources) != len(kernel.bindings):
            names = [b.name or f"binding {b.binding}" for b in kernel.bindings]
            raise TypeError(f"{kernel.name} takes {len(kernel.bindings)} resources ({', '.join(names)}); "
                            f"got {len(resources)}")
        groups = (int(groups), 1, 1) if isinstance(groups, (int,)) else tuple(int(g) for g in groups) + (1,) * (3 - len(groups))
        limits = self.ctx.limits.maxComputeWorkGroupCount
        if any(g < 0 or g > limits[i] for i, g in enumerate(groups)):
            raise LimitError(f"{kernel.name}: groups={groups} exceed this device's maxComputeWorkGroupCount="
                             f"{tuple(limits)}")
        reads, writes = [], []
        for b, res in zip(kernel.bindings, resources):
            want = StorageImage if b.kind in ("storage_image", "sampled_image") else DeviceArray
            if not isinstance(res, want):
                raise TypeError(f"{kernel.name}: binding {b.binding} ({b.name or b.kind}) needs a "
                                f"{want.__name__}, got {type(res).__name__}")
            res._require_open()
            if isinstance(res, DeviceArray):
                _check_binding(self.ctx, kernel, b, res)
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
        self._names[kernel.name] = self._names.get(kernel.name, 0) + 1
        self.dispatch_count += 1

    def copy(self, src: DeviceArray, dst: DeviceArray, nbytes: int | None = None,
             src_offset: int = 0, dst_offset: int = 0):
        """Record a buffer-to-buffer copy of ``nbytes`` (default: all of ``src``); offsets in bytes,
        relative to each array (views from ``rows`` included)."""
        self._require_recording()
        nbytes = src.nbytes if nbytes is None else int(nbytes)
        if src_offset < 0 or dst_offset < 0 or src_offset + nbytes > src.nbytes or dst_offset + nbytes > dst.nbytes:
            raise ValueError(f"copy of {nbytes} bytes does not fit: src has {src.nbytes} from offset "
                             f"{src_offset}, dst has {dst.nbytes} from offset {dst_offset}")
        if nbytes == 0:
            return
        self._access(_TRANSFER, [src], [dst])
        region = vk.VkBufferCopy(srcOffset=src.offset + src_offset, dstOffset=dst.offset + dst_offset, size=nbytes)
        vk.vkCmdCopyBuffer(self.command_buffer, src.buffer, dst.buffer, 1, [region])
        self._keepalive += [src, dst]
        self._names["copy"] = self._names.get("copy", 0) + 1

    def fill(self, dst: DeviceArray, word: int):
        """Record filling all of ``dst`` with a repeated 32-bit word (every byte: arrays are allocated
        in whole words)."""
        self._require_recording()
        if dst.offset == 0 and getattr(dst, "base", None) is None:
            offset, size = 0, _WHOLE_SIZE
        else:
            if dst.offset % 4 or dst.nbytes % 4:
                raise ValueError(f"fill of a view at byte {dst.offset} of {dst.nbytes} bytes: views must "
                                 "start and end on 4-byte words")
            offset, size = dst.offset, dst.nbytes
        if size == 0:
            return
        self._access(_TRANSFER, (), [dst])
        vk.vkCmdFillBuffer(self.command_buffer, dst.buffer, offset, size, int(word) & 0xFFFFFFFF)
        self._keepalive.append(dst)

    def clear(self, image: StorageImage, value=(0.0, 0.0, 0.0, 0.0)):
        """Record clearing ``image`` to ``value`` (RGBA floats), leaving it in GENERAL layout."""
        self._require_recording()
        self._general(image, discard=True)
        self._access(_TRANSFER, (), [image])
        color = vk.VkClearColorValue(float32=list(value))
        rng = vk.VkImageSubresourceRange(**_COLOR_RANGE)
        vk.vkCmdClearColorImage(self.command_buffer, image.image, _GENERAL, color, 1, [rng])
        self._keepalive.append(image)

    def copy_image_to_buffer(self, image: StorageImage, dst: DeviceArray, y0: int = 0, rows: int | None = None):
        """Record copying rows ``y0 .. y0+rows`` (default: the whole image), tightly packed row-major,
        to the start of ``dst``."""
        self._require_recording()
        rows = image.height - y0 if rows is None else int(rows)
        need = rows * image.row_bytes
        if dst.nbytes < need:
            raise ValueError(f"destination has {dst.nbytes} bytes; {rows} rows of the image need {need}")
        self._general(image)
        self._access(_TRANSFER, [image], [dst])
        vk.vkCmdCopyImageToBuffer(self.command_buffer, image.image, _GENERAL, dst.buffer, 1,
                                  [image.copy_region(y0, rows, dst.offset)])
        self._keepalive += [image, dst]

    def copy_buffer_to_image(self, src: DeviceArray, image: StorageImage, y0: int = 0, rows: int | None = None):
        """Record copying ``src`` (rows ``y0 .. y0+rows`` of the image, default all, tightly packed
        row-major) into ``image``."""
        self._require_recording()
        rows = image.height - y0 if rows is None else int(rows)
        need = rows * image.row_bytes
        if src.nbytes < need:
            raise ValueError(f"source has {src.nbytes} bytes; {rows} rows of the image need {need}")
        self._general(image)
        self._access(_TRANSFER, [src], [image])
        vk.vkCmdCopyBufferToImage(self.command_buffer, src.buffer, image.image, _GENERAL, 1,
                                  [image.copy_region(y0, rows, src.offset)])
        self._keepalive += [image, src]

    # ------------------------------------------------------------------ descriptors
    def _descriptor_set(self, kernel, resources):
        key = (id(kernel), tuple((r.buffer, r.offset, r.nbytes) if isinstance(r, DeviceArray) else r.image
                                 for r in resources))
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
                info = vk.VkDescriptorBufferInfo(buffer=res.buffer, offset=res.offset, range=_binding_range(res))
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
        with vulkan_errors("creating a descriptor pool"):
            pool = vk.vkCreateDescriptorPool(self.ctx.device, vk.VkDescriptorPoolCreateInfo(
                maxSets=n, poolSizeCount=len(sizes), pPoolSizes=sizes), None)
        self._pools.append(pool)
        return vk.vkAllocateDescriptorSets(self.ctx.device, vk.VkDescriptorSetAllocateInfo(
            descriptorPool=pool, descriptorSetCount=1, pSetLayouts=layouts))[0]

    # ------------------------------------------------------------------ submission
    @property
    def label(self) -> str:
        """What this recording holds, e.g. ``"a recording of step_heat.comp x200, copy x2"``."""
        parts = ", ".join(f"{n} x{c}" for n, c in self._names.items()) or "no commands"
        return f"a recording of {parts}"

    def finish(self):
        """End recording (done by the first ``submit``); no more commands can be added."""
        if not self._recording:
            return
        hz = self._hazards
        if hz.write_access:  # make the writes visible to host reads and to any later work (e.g. drawing)
            self._memory_barrier(H.Barrier(hz.stages_used, vk.VK_PIPELINE_STAGE_HOST_BIT | _ALL_COMMANDS,
                                           hz.write_access, vk.VK_ACCESS_HOST_READ_BIT | _MEMORY_ACCESS))
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
        if self._flight[0]:
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
        with vulkan_errors(lambda: f"submitting {self.label}"):
            vk.vkQueueSubmit(self.ctx.queue, 1, [info], self.fence)
        self._flight[0] = True
        self.submitted += 1
        self.ctx.check()
        if wait:
            self.wait()
        return self

    replay = submit

    def wait(self):
        """Block until the last submission of this recorder finished."""
        if self._flight[0]:
            self.ctx.wait_fence(self.fence, what=self.label)
            self._flight[0] = False

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

    def _close_now(self):
        """Wait for in-flight work, free the command buffer, fence and descriptor pools."""
        self.deactivate()
        try:
            super()._close_now()
        finally:
            self._sets, self._keepalive, self._images = {}, [], {}

    def __repr__(self):
        return (f"<vkbands.Recorder dispatches={self.dispatch_count} barriers={self.barrier_count} "
                f"submitted={self.submitted}>")


def _recorder_release(ctx, command_buffer, fence, pools, flight):
    """The release function of a Recorder: waits for its own work, then frees its handles."""
    device, command_pool = ctx.device, ctx.command_pool

    def release():
        try:
            if flight[0]:
                vk.vkWaitForFences(device, 1, [fence], vk.VK_TRUE, 120 * 10**9)
                flight[0] = False
        finally:
            for pool in pools:
                vk.vkDestroyDescriptorPool(device, pool, None)
            vk.vkFreeCommandBuffers(device, command_pool, 1, [command_buffer])
            vk.vkDestroyFence(device, fence, None)
    return release


def _binding_range(res: DeviceArray) -> int:
    """The descriptor range of an array: the whole buffer, or a view's own bytes (rounded up to a
    whole word, within its buffer)."""
    if res.offset == 0 and getattr(res, "base", None) is None:
        return _WHOLE_SIZE
    return max(4, -(-res.nbytes // 4) * 4)


def _check_binding(ctx, kernel, b, res: DeviceArray):
    """Refuse, before recording, a binding the device cannot address (maxStorageBufferRange /
    maxUniformBufferRange, offset alignment)."""
    uniform = b.kind == "uniform_buffer"
    limit = int(ctx.limits.maxUniformBufferRange) if uniform else ctx.max_storage_buffer_range
    size = max(res.nbytes, 4)
    name = b.name or f"binding {b.binding}"
    if size > limit:
        raise LimitError(f"{kernel.name}: {name} would bind an array of shape {res.shape} {res.dtype} "
                         f"({_human(size)}, {size} bytes), over this device's "
                         f"{'maxUniformBufferRange' if uniform else 'maxStorageBufferRange'} of "
                         f"{_human(limit)} ({limit} bytes); split the batch into smaller parts")
    align = int(ctx.limits.minUniformBufferOffsetAlignment) if uniform else ctx.min_storage_buffer_offset_alignment
    if res.offset % align:
        raise LimitError(f"{kernel.name}: {name} is bound at byte offset {res.offset}, not a multiple of this "
                         f"device's min{'Uniform' if uniform else 'Storage'}BufferOffsetAlignment={align}")


def _key(res):
    return res.buffer if isinstance(res, DeviceArray) else res.image
