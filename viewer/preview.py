"""The sheet-grid preview: a textured quad (``preview.vert``/``preview.frag``) sampling the storage
image in GENERAL layout through a nearest sampler.

Placement (:func:`place`): the image is fitted into the preview area with its aspect preserved; when
it fits at least once, the scale is an integer (every texel a whole block of screen pixels, so a
screenshot equals the picture exactly) and the position is whole pixels. ``zoom`` multiplies the
scale (integer zoom steps keep that property) and ``pan`` shifts it in pixels.

Placement works on the *logical* size of the picture (the full-resolution sheet grid,
``logical_size``); when the sheet pipeline resampled the panels to the size they are shown at, the (smaller)
image is drawn 1:1, centred where the full-resolution one would be.
"""
from __future__ import annotations

import math

import vulkan as vk

from vkbands.engine.graphics import GraphicsPipeline, Sampler


def place(area, image_size, zoom: float = 1.0, pan=(0.0, 0.0)):
    """Pixel rectangle ``(x0, y0, width, height)`` of an image of ``image_size=(W, H)`` inside
    ``area=(x, y, w, h)``; also returns the scale (screen pixels per texel)."""
    ax, ay, aw, ah = area
    W, H = image_size
    fit = min(aw / W, ah / H) if W and H else 1.0
    base = math.floor(fit) if fit >= 1 else fit
    s = base * zoom
    if s >= 1:
        s = max(1, round(s)) if abs(s - round(s)) < 1e-6 else s
    w, h = W * s, H * s
    x0 = round(ax + (aw - w) / 2 + pan[0])
    y0 = round(ay + (ah - h) / 2 + pan[1])
    return (x0, y0, w, h), s


class Preview:
    """The quad that shows the sheet grid. ``frames``: frame slots; each has its own descriptor set,
    rewritten only by that slot's own frame (after its fence), never while another frame that may
    still be running has it bound."""

    def __init__(self, ctx, render_pass, frames: int = 2):
        self.ctx = ctx
        self.pipeline = GraphicsPipeline(ctx, "preview.vert", "preview.frag", render_pass,
                                         topology=vk.VK_PRIMITIVE_TOPOLOGY_TRIANGLE_STRIP)
        self.sampler = Sampler(ctx, "nearest", "border")
        self._sets = [None] * frames     # per frame slot
        self._shown = [None] * frames    # the image each slot's set samples
        self._image = None
        self.zoom, self.pan = 1.0, [0.0, 0.0]
        self.rect = None
        self.logical_size = None   # (W, H) the image stands for (the full-resolution grid); default its own

    @property
    def image(self):
        """The StorageImage drawn from the next recorded frame on."""
        return self._image

    def set_image(self, image):
        """Sample ``image`` (a StorageImage in GENERAL layout) from the next recorded frame on. No
        Vulkan call: each slot's descriptor set is pointed at it when that slot records a frame."""
        self._image = image

    def _slot_set(self, slot: int):
        """Slot ``slot``'s descriptor set, pointed at the current image (the caller has waited for
        the slot's previous frame, the only one that bound this set)."""
        if self._shown[slot] is not self._image:
            res = {0: (self._image.view, self.sampler.handle)}
            if self._sets[slot] is None:
                self._sets[slot] = self.pipeline.descriptor_set(res)
            else:
                self.pipeline.update_set(self._sets[slot], res)
            self._shown[slot] = self._image
        return self._sets[slot]

    def _size(self):
        return self.logical_size or (self._image.width, self._image.height)

    def placement(self, area):
        """Where the picture goes in ``area``: ``((x0, y0, width, height), scale)`` (see :func:`place`)."""
        return place(area, self._size(), self.zoom, self.pan)

    def reset_view(self):
        self.zoom, self.pan = 1.0, [0.0, 0.0]

    def pan_by(self, dx: float, dy: float):
        """Shift the picture by (dx, dy) screen pixels."""
        self.pan = [self.pan[0] + dx, self.pan[1] + dy]

    def zoom_at(self, steps: float, cursor, area):
        """Zoom by 2**(steps/2) keeping the image point under ``cursor`` fixed."""
        if self._image is None:
            return
        (x0, y0, w, h), _ = place(area, self._size(), self.zoom, self.pan)
        factor = 2.0 ** (steps / 2)
        new_zoom = min(max(self.zoom * factor, 1 / 16), 64.0)
        factor = new_zoom / self.zoom
        cx, cy = cursor
        # keep (cursor - x0) / w fixed: new x0 = cx - (cx - x0) * factor
        nx0, ny0 = cx - (cx - x0) * factor, cy - (cy - y0) * factor
        (bx, by, _, _), _ = place(area, self._size(), new_zoom, (0, 0))
        self.zoom = new_zoom
        self.pan = [nx0 - bx, ny0 - by]

    def record(self, cb, slot: int, fb_size, area):
        """Draw the quad into ``area`` (x, y, w, h) of a framebuffer of ``fb_size`` (inside a render
        pass) for a frame of slot ``slot``, whose previous frame has finished."""
        if self._image is None or area[2] <= 0 or area[3] <= 0:
            return
        fw, fh = fb_size
        (x0, y0, w, h), _ = place(area, self._size(), self.zoom, self.pan)
        iw, ih = self._image.width, self._image.height
        if iw <= w and ih <= h and (iw, ih) != self._size():
            # a picture resampled to the size shown: draw it 1:1 (exact pixels), centred on its place
            x0, y0, w, h = round(x0 + (w - iw) / 2), round(y0 + (h - ih) / 2), iw, ih
        self.rect = (x0, y0, w, h)
        p = self.pipeline
        vk.vkCmdBindPipeline(cb, vk.VK_PIPELINE_BIND_POINT_GRAPHICS, p.pipeline)
        dset = self._slot_set(slot)
        vk.vkCmdBindDescriptorSets(cb, vk.VK_PIPELINE_BIND_POINT_GRAPHICS, p.layout, 0, 1, [dset], 0, None)
        vk.vkCmdSetViewport(cb, 0, 1, [vk.VkViewport(x=0, y=0, width=fw, height=fh, minDepth=0, maxDepth=1)])
        ax, ay, aw, ah = (int(v) for v in area)
        sx0, sy0 = max(ax, 0), max(ay, 0)
        sx1, sy1 = min(ax + aw, fw), min(ay + ah, fh)
        if sx1 <= sx0 or sy1 <= sy0:
            return
        vk.vkCmdSetScissor(cb, 0, 1, [vk.VkRect2D(offset=vk.VkOffset2D(x=sx0, y=sy0),
                                                  extent=vk.VkExtent2D(width=sx1 - sx0, height=sy1 - sy0))])
        rect = (2 * x0 / fw - 1, 2 * y0 / fh - 1, 2 * (x0 + w) / fw - 1, 2 * (y0 + h) / fh - 1)
        data = p.pack({"rect": rect, "uv_rect": (0.0, 0.0, 1.0, 1.0)})
        vk.vkCmdPushConstants(cb, p.layout, p.push_stages, 0, len(data), vk.ffi.new("char[]", data))
        vk.vkCmdDraw(cb, 4, 1, 0, 0)

    def close(self):
        self.sampler.close()
        self.pipeline.close()
        self._sets = [None] * len(self._sets)
        self._shown = [None] * len(self._shown)
        self._image = None
