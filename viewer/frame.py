"""The frame: one frame's graphics command buffer, its submission, and the captures recorded into it.

:class:`FrameGraphics` records into frame slot ``slot``'s command buffer (:class:`FrameSync`):

1. the barrier that makes the sheet pipeline's compute writes (submitted earlier on this queue)
   visible to the shaders that sample them (decided by :mod:`vkbands.viewer.barriers`);
2. the render pass into swapchain image ``index``: the preview quad, then the ImGui draw data;
3. the captures asked for since the last frame (:meth:`capture_window`, :meth:`capture_sheets`):
   copies of the swapchain image or of the sheet image into host buffers, read after the slot's fence
   (:meth:`finish`), each handed to its ``done`` callback;

and submits it, waiting on the slot's acquire semaphore and signalling the image's render-finished
semaphore and the slot's fence. Drawing offscreen (:class:`~vkbands.viewer.offscreen.OffscreenTarget`,
whose ``presents`` is False) there are no semaphores: the batch signals the slot's fence only, and the
image, left in TRANSFER_SRC_OPTIMAL by its render pass, is copied without a layout change. :meth:`abandon` gives back a frame that failed between acquire and
submit (its acquire semaphore consumed by an empty batch, its captures dropped).
"""
from __future__ import annotations

import numpy as np
import vulkan as vk

from .barriers import ATTACHMENT, COMPUTE, GRAPHICS, HOST, PRESENT, READ, TRANSFER, Barrier, CommandHazards, record_image_barrier

CLEAR_COLOUR = (0.06, 0.06, 0.07, 1.0)
SHEET_OUTPUT = "sheet pipeline output"   # everything the sheet pipeline's submissions wrote (images, buffers)


def rgba_from_swapchain(raw: np.ndarray, channels) -> np.ndarray:
    """(H, W, 4) pixels in swapchain byte order -> RGBA with opaque alpha."""
    out = np.empty_like(raw)
    out[..., 0], out[..., 1], out[..., 2] = raw[..., channels[0]], raw[..., channels[1]], raw[..., channels[2]]
    out[..., 3] = 255
    return out


class Capture:
    """A copy of an image into a host buffer, recorded into one frame's command buffer. ``kind``:
    "window" (swapchain bytes, converted to RGBA with ``channels``) or "sheets" (rgba8)."""

    def __init__(self, kind, buffer, shape, channels=(0, 1, 2), done=None):
        self.kind, self.buffer, self.shape, self.channels, self.done = kind, buffer, shape, channels, done
        self.pixels = None

    def finish(self):
        """After the frame's fence: read the copy (device writes made visible to the host first), free
        the buffer, and hand the capture to ``done``."""
        self.buffer.invalidate()
        raw = self.buffer.host_view[: int(np.prod(self.shape))].reshape(self.shape).copy()
        self.buffer.close()
        self.pixels = rgba_from_swapchain(raw, self.channels) if self.kind == "window" else raw
        if self.done is not None:
            self.done(self)
        return self.pixels

    def drop(self):
        """The frame was never submitted: free the buffer, no callback."""
        self.buffer.close()


class FrameGraphics:
    """The graphics side of every frame (see the module docstring). ``on_error(text)``: reports a
    capture that cannot be made (a surface whose images cannot be copied)."""

    def __init__(self, ctx, swapchain, sync, preview, gui, on_error=None):
        self.ctx, self.swapchain, self.sync, self.preview, self.gui = ctx, swapchain, sync, preview, gui
        self.on_error = on_error
        self._wanted: list = []                             # (kind, done) for the next recorded frame
        self._captures: list[list[Capture]] = [[] for _ in range(sync.n)]
        self.last_barriers: list[Barrier] = []              # of the last recorded frame (tests)

    @property
    def presents(self) -> bool:
        """Whether frames go to a swapchain (False: an offscreen target)."""
        return getattr(self.swapchain, "presents", True)

    # ------------------------------------------------------------------ captures
    def capture_window(self, done):
        """Copy the next recorded frame's swapchain image (sheet grid and panel, exactly what is
        presented); ``done(capture)`` gets its RGBA ``pixels`` after the frame finished."""
        self._wanted.append(("window", done))

    def capture_sheets(self, done):
        """Copy the storage image the next recorded frame samples (the sheet grid); as above."""
        self._wanted.append(("sheets", done))

    @property
    def pending_captures(self) -> int:
        """Captures recorded into frames not yet finished."""
        return sum(len(c) for c in self._captures)

    def finish(self, slot: int):
        """After slot ``slot``'s fence: finish the captures its last frame made (all of them, even
        when a ``done`` callback raises; then the first error is raised)."""
        caps, self._captures[slot] = self._captures[slot], []
        failed = None
        for i, cap in enumerate(caps):
            try:
                cap.finish()
            except Exception as e:      # noqa: BLE001 — finish (and free) the others, then raise
                failed = failed or e
            except BaseException:       # an interrupt: free the rest, no more callbacks
                for rest in caps[i + 1:]:
                    rest.drop()
                raise
        if failed is not None:
            raise failed

    # ------------------------------------------------------------------ the command buffer
    def submit(self, slot: int, index: int, draw_data, area):
        """Record slot ``slot``'s command buffer for swapchain image ``index`` (preview in ``area``,
        then ``draw_data``, then the captures) and submit it."""
        sync = self.sync
        cb = self.record(slot, index, draw_data, area)
        vk.vkResetFences(self.ctx.device, 1, [sync.fences[slot]])
        cbs = [cb]
        if self.presents:
            waits, stages = [sync.acquired[slot]], [ATTACHMENT]   # the image is written from here on
            signals = [self.swapchain.render_done[index]]
            info = vk.VkSubmitInfo(waitSemaphoreCount=1, pWaitSemaphores=waits, pWaitDstStageMask=stages,
                                   commandBufferCount=1, pCommandBuffers=cbs, signalSemaphoreCount=1,
                                   pSignalSemaphores=signals)
        else:                       # offscreen: nothing acquired, nothing presented
            info = vk.VkSubmitInfo(commandBufferCount=1, pCommandBuffers=cbs)
        vk.vkQueueSubmit(self.ctx.queue, 1, [info], sync.fences[slot])
        sync.frame_submitted(slot)

    def record(self, slot: int, index: int, draw_data, area):
        """Record slot ``slot``'s command buffer (see the module docstring). Returns it."""
        cb = self.sync.command_buffers[slot]
        vk.vkResetCommandBuffer(cb, 0)
        vk.vkBeginCommandBuffer(cb, vk.VkCommandBufferBeginInfo(flags=vk.VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT))
        hazards = CommandHazards(cb)
        # The sheet pipeline's compute and transfer writes (its storage images) reach the shaders
        # that sample them: one global barrier before the render pass.
        hazards.written_before(COMPUTE | TRANSFER, SHEET_OUTPUT)
        hazards.use(GRAPHICS, reads=[SHEET_OUTPUT])
        self._draw(cb, slot, index, draw_data, area)
        self._record_captures(cb, slot, index, hazards)
        vk.vkEndCommandBuffer(cb)
        self.last_barriers = hazards.barriers
        return cb

    def _draw(self, cb, slot, index, draw_data, area):
        fw, fh = self.swapchain.extent
        clears = [vk.VkClearValue(color=vk.VkClearColorValue(float32=list(CLEAR_COLOUR)))]
        rp = vk.VkRenderPassBeginInfo(renderPass=self.swapchain.render_pass.handle,
                                      framebuffer=self.swapchain.framebuffers[index],
                                      renderArea=vk.VkRect2D(offset=vk.VkOffset2D(x=0, y=0),
                                                             extent=vk.VkExtent2D(width=fw, height=fh)),
                                      clearValueCount=1, pClearValues=clears)
        vk.vkCmdBeginRenderPass(cb, rp, vk.VK_SUBPASS_CONTENTS_INLINE)
        self.preview.record(cb, slot, (fw, fh), area)
        self.gui.record(cb, slot, draw_data, (fw, fh))
        vk.vkCmdEndRenderPass(cb)

    def _record_captures(self, cb, slot, index, hazards):
        wanted, self._wanted = self._wanted, []
        caps = self._captures[slot]
        for kind, done in wanted:
            if kind == "window" and not self.swapchain.can_capture:
                if self.on_error is not None:
                    self.on_error("this surface does not allow copies from its images; no window screenshot")
                continue
            copy = self._copy_window if kind == "window" else self._copy_sheets
            caps.append(copy(cb, index, hazards, done))
        if caps:   # the copies reach the host (read after the fence)
            hazards.use(HOST, reads=[id(cap.buffer) for cap in caps])

    def _copy_sheets(self, cb, index, hazards, done):
        image = self.preview.image
        buf = self.ctx.empty((image.nbytes,), np.uint8, host=True)
        hazards.use(TRANSFER, reads=[SHEET_OUTPUT], writes=[id(buf)])
        vk.vkCmdCopyImageToBuffer(cb, image.image, vk.VK_IMAGE_LAYOUT_GENERAL, buf.buffer, 1, [image.copy_region()])
        return Capture("sheets", buf, (image.height, image.width, 4), done=done)

    def _copy_window(self, cb, index, hazards, done):
        fw, fh = self.swapchain.extent
        buf = self.ctx.empty((fw * fh * 4,), np.uint8, host=True)
        hazards.use(TRANSFER, writes=[id(buf)])
        img = self.swapchain.images[index]
        region = vk.VkBufferImageCopy(
            bufferOffset=0, bufferRowLength=0, bufferImageHeight=0,
            imageSubresource=vk.VkImageSubresourceLayers(aspectMask=vk.VK_IMAGE_ASPECT_COLOR_BIT, mipLevel=0,
                                                         baseArrayLayer=0, layerCount=1),
            imageOffset=vk.VkOffset3D(x=0, y=0, z=0), imageExtent=vk.VkExtent3D(width=fw, height=fh, depth=1))
        if not self.presents:
            # Offscreen: the render pass left the image in TRANSFER_SRC_OPTIMAL, and its subpass ->
            # EXTERNAL dependency made the colour writes visible to TRANSFER reads: copy at once.
            vk.vkCmdCopyImageToBuffer(cb, img, vk.VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL, buf.buffer, 1, [region])
            return Capture("window", buf, (fh, fw, 4), self.swapchain.channels, done)
        # The render pass ends with its subpass -> EXTERNAL dependency (colour writes made available
        # and visible to TRANSFER reads) during which the attachment goes to its final layout,
        # PRESENT_SRC. That transition is ordered only before the dependency's destination stages,
        # so this barrier's source stage must be TRANSFER (one of them) to chain after it; a source
        # stage of COLOR_ATTACHMENT_OUTPUT would leave the two layout transitions unordered.
        record_image_barrier(cb, img, Barrier(TRANSFER, TRANSFER, 0, READ[TRANSFER]),
                             vk.VK_IMAGE_LAYOUT_PRESENT_SRC_KHR, vk.VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL)
        vk.vkCmdCopyImageToBuffer(cb, img, vk.VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL, buf.buffer, 1, [region])
        record_image_barrier(cb, img, Barrier(TRANSFER, PRESENT, READ[TRANSFER], 0),
                             vk.VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL, vk.VK_IMAGE_LAYOUT_PRESENT_SRC_KHR)
        return Capture("window", buf, (fh, fw, 4), self.swapchain.channels, done)

    # ------------------------------------------------------------------ a failed frame
    def abandon(self, slot: int):
        """An exception came between acquire and submit: submit an empty batch that waits on the
        acquire semaphore (unsignalling it) and signals the slot's fence (which may have been reset),
        and drop the captures recorded into the unsubmitted command buffer. The caller recreates the
        swapchain (the acquired image was never presented; recreation gives it back)."""
        sync = self.sync
        caps, self._captures[slot] = self._captures[slot], []
        for cap in caps:
            cap.drop()
        try:
            vk.vkResetFences(self.ctx.device, 1, [sync.fences[slot]])
            waits, stages = [sync.acquired[slot]], [vk.VK_PIPELINE_STAGE_ALL_COMMANDS_BIT]
            info = (vk.VkSubmitInfo(waitSemaphoreCount=1, pWaitSemaphores=waits, pWaitDstStageMask=stages)
                    if self.presents else vk.VkSubmitInfo())
            vk.vkQueueSubmit(self.ctx.queue, 1, [info], sync.fences[slot])
            sync.frame_submitted(slot)
        except vk.VkError:
            pass     # e.g. a lost device: the original exception is the one to report

    def close(self):
        """Drop what was asked for or recorded and never finished (their host buffers freed)."""
        self._wanted = []
        for slot in range(len(self._captures)):
            caps, self._captures[slot] = self._captures[slot], []
            for cap in caps:
                cap.drop()
