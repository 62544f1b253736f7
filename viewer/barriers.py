"""Pipeline barriers of the viewer's graphics command buffers, decided by :mod:`vkbands.engine.hazards`.

The compute work's barriers come from the Recorder. A frame's command buffer declares its accesses
to a :class:`CommandHazards` (an engine ``HazardTracker``), which records the global memory barrier a
hazard needs and nothing otherwise; layout transitions of swapchain images are image barriers whose
stages and access masks are ``hazards.Barrier`` values. This module is the only place in the viewer
that builds a ``VkMemoryBarrier`` or ``VkImageMemoryBarrier``.
"""
from __future__ import annotations

import vulkan as vk

from vkbands.engine.hazards import ATTACHMENT, COMPUTE, GRAPHICS, HOST, READ, TRANSFER, WRITE, Barrier, HazardTracker

__all__ = ["ATTACHMENT", "COMPUTE", "GRAPHICS", "HOST", "PRESENT", "READ", "TRANSFER", "WRITE", "Barrier",
           "CommandHazards", "record_memory_barrier", "record_image_barrier"]

# Nothing later in the command buffer waits (the presentation engine waits on a semaphore instead).
PRESENT = vk.VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT

_COLOR = vk.VkImageSubresourceRange(aspectMask=vk.VK_IMAGE_ASPECT_COLOR_BIT, baseMipLevel=0, levelCount=1,
                                    baseArrayLayer=0, layerCount=1)


def record_memory_barrier(cb, b: Barrier):
    """Record ``b`` as one global memory barrier into ``cb``."""
    mb = vk.VkMemoryBarrier(srcAccessMask=b.src_access, dstAccessMask=b.dst_access)
    vk.vkCmdPipelineBarrier(cb, b.src_stages, b.dst_stages, 0, 1, [mb], 0, None, 0, None)


def record_image_barrier(cb, image, b: Barrier, old_layout, new_layout):
    """Record ``b`` as an image memory barrier of (the colour subresource of) ``image`` that also moves
    it from ``old_layout`` to ``new_layout``."""
    ib = vk.VkImageMemoryBarrier(
        srcAccessMask=b.src_access, dstAccessMask=b.dst_access, oldLayout=old_layout, newLayout=new_layout,
        srcQueueFamilyIndex=vk.VK_QUEUE_FAMILY_IGNORED, dstQueueFamilyIndex=vk.VK_QUEUE_FAMILY_IGNORED,
        image=image, subresourceRange=_COLOR)
    vk.vkCmdPipelineBarrier(cb, b.src_stages, b.dst_stages, 0, 0, None, 0, None, 1, [ib])


class CommandHazards:
    """The accesses of one command buffer ``cb`` and the barriers they need (see the module docstring).
    Resources are any hashable keys."""

    def __init__(self, cb):
        self.cb = cb
        self._tracker = HazardTracker()
        self.barriers: list[Barrier] = []     # recorded so far (tests and debugging)

    def written_before(self, stages: int, *resources):
        """``resources`` were written at ``stages`` by work submitted earlier on this queue."""
        self._tracker.access(stages, writes=resources)

    def use(self, stage: int, reads=(), writes=()):
        """A command at ``stage`` reads ``reads`` and writes ``writes``: record the barrier its hazards
        need first (none when there is no hazard)."""
        b = self._tracker.access(stage, reads, writes)
        if b is not None:
            record_memory_barrier(self.cb, b)
            self.barriers.append(b)
