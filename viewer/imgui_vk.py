"""Dear ImGui (pyimgui 2.0.0, ImGui 1.82) rendered by our own Vulkan renderer.

- Font atlas: RGBA32 from ImGui, uploaded once into an rgba8 image, sampled linearly; its texture id
  is :data:`FONT_TEXTURE_ID`. Other textures can be registered with :meth:`ImGuiRenderer.add_texture`.
- Draw data is packed by :func:`pack_draw_data` (pure NumPy, testable without a GPU): all vertex
  lists concatenated (20-byte ImDrawVert: pos f32x2, uv f32x2, col RGBA8), all index lists
  concatenated (uint32, as pyimgui builds them), and one :class:`DrawCommand` per ImDrawCmd with its
  first index, vertex offset, index count, texture id and framebuffer-space scissor rectangle.
- Per frame slot, one host-visible vertex and one index buffer, reused and grown (doubling) when a
  frame needs more.
- Pipeline ``imgui.vert``/``imgui.frag``: alpha blending SRC_ALPHA / ONE_MINUS_SRC_ALPHA, projection
  by push constants (scale = 2 / display_size, translate = -1 - display_pos * scale), scissor per
  command clamped to the framebuffer.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass

import imgui
import numpy as np
import vulkan as vk

from vkbands.engine.graphics import GraphicsPipeline, Sampler

FONT_TEXTURE_ID = 1
VERTEX_SIZE = 20
assert imgui.VERTEX_SIZE == VERTEX_SIZE and imgui.INDEX_SIZE == 4, "this renderer expects pyimgui 2.0.0's layout"
VERTEX_DTYPE = np.dtype([("pos", "<f4", 2), ("uv", "<f4", 2), ("col", "<u4")])


@dataclass(frozen=True)
class DrawCommand:
    texture_id: int
    first_index: int       # into the concatenated index array
    vertex_offset: int     # added to every index (start of its draw list's vertices)
    count: int             # number of indices
    scissor: tuple         # (x, y, width, height) in framebuffer pixels, clamped, non-empty


@dataclass
class PackedDrawData:
    vertices: np.ndarray   # (n,) VERTEX_DTYPE
    indices: np.ndarray    # (m,) uint32
    commands: list
    scale: tuple           # push constants
    translate: tuple
    fb_size: tuple         # framebuffer (width, height)


def _read(ptr: int, nbytes: int) -> bytes:
    return ctypes.string_at(ptr, nbytes) if nbytes else b""


def pack_draw_data(draw_data, fb_size=None) -> PackedDrawData:
    """Pack ImGui's draw data into one vertex array, one uint32 index array and draw commands.

    ``fb_size``: framebuffer size in pixels (default display_size * framebuffer_scale).
    """
    dpos = (draw_data.display_pos.x, draw_data.display_pos.y)
    dsize = (draw_data.display_size.x, draw_data.display_size.y)
    fbs = (draw_data.frame_buffer_scale.x, draw_data.frame_buffer_scale.y)
    if fb_size is None:
        fb_size = (int(dsize[0] * fbs[0]), int(dsize[1] * fbs[1]))
    fw, fh = int(fb_size[0]), int(fb_size[1])
    verts, idxs, cmds = [], [], []
    v_base = i_base = 0
    for cl in draw_data.commands_lists:
        nv, ni = cl.vtx_buffer_size, cl.idx_buffer_size
        verts.append(np.frombuffer(_read(cl.vtx_buffer_data, nv * VERTEX_SIZE), VERTEX_DTYPE))
        idxs.append(np.frombuffer(_read(cl.idx_buffer_data, ni * 4), np.uint32))
        offset = 0
        for c in cl.commands:
            r = c.clip_rect
            x0 = max(int((r.x - dpos[0]) * fbs[0]), 0)
            y0 = max(int((r.y - dpos[1]) * fbs[1]), 0)
            x1 = min(int((r.z - dpos[0]) * fbs[0]), fw)
            y1 = min(int((r.w - dpos[1]) * fbs[1]), fh)
            if c.elem_count and x1 > x0 and y1 > y0:
                cmds.append(DrawCommand(int(c.texture_id), i_base + offset, v_base, int(c.elem_count),
                                        (x0, y0, x1 - x0, y1 - y0)))
            offset += c.elem_count
        v_base += nv
        i_base += ni
    scale = (2.0 / dsize[0], 2.0 / dsize[1]) if dsize[0] and dsize[1] else (0.0, 0.0)
    translate = (-1.0 - dpos[0] * scale[0], -1.0 - dpos[1] * scale[1])
    vertices = np.concatenate(verts) if verts else np.empty(0, VERTEX_DTYPE)
    indices = np.concatenate(idxs) if idxs else np.empty(0, np.uint32)
    return PackedDrawData(vertices, indices, cmds, scale, translate, (fw, fh))


def upload_image(ctx, image, pixels: np.ndarray):
    """Copy ``pixels`` ((H, W, 4) uint8) into an rgba8 StorageImage (``StorageImage.upload``)."""
    image.upload(np.asarray(pixels, np.uint8).reshape(image.shape))


class _Buffers:
    """One frame slot's vertex and index buffers (host-visible, grown by doubling, reused)."""

    def __init__(self):
        self.vbuf = self.ibuf = None

    def ensure(self, ctx, vbytes: int, ibytes: int):
        if self.vbuf is None or self.vbuf.nbytes < vbytes:
            if self.vbuf is not None:
                self.vbuf.close()
            size = max(vbytes, 64 << 10, 0 if self.vbuf is None else 2 * self.vbuf.nbytes)
            self.vbuf = ctx.empty((size,), np.uint8, host=True)
        if self.ibuf is None or self.ibuf.nbytes < ibytes:
            if self.ibuf is not None:
                self.ibuf.close()
            size = max(ibytes, 32 << 10, 0 if self.ibuf is None else 2 * self.ibuf.nbytes)
            self.ibuf = ctx.empty((size,), np.uint8, host=True)

    def close(self):
        for b in (self.vbuf, self.ibuf):
            if b is not None:
                b.close()
        self.vbuf = self.ibuf = None


class ImGuiRenderer:
    """Renders ImGui draw data into a render pass (``render_pass``) of the viewer.

    ``frames``: number of frame slots (each gets its own vertex/index buffers; a slot is only reused
    after its fence signalled). Call :meth:`record` inside the render pass.
    """

    def __init__(self, ctx, render_pass, frames: int = 2):
        self.ctx = ctx
        self.pipeline = GraphicsPipeline(
            ctx, "imgui.vert", "imgui.frag", render_pass, vertex_stride=VERTEX_SIZE, blend="alpha",
            vertex_attributes=[(0, vk.VK_FORMAT_R32G32_SFLOAT, imgui.VERTEX_BUFFER_POS_OFFSET),
                               (1, vk.VK_FORMAT_R32G32_SFLOAT, imgui.VERTEX_BUFFER_UV_OFFSET),
                               (2, vk.VK_FORMAT_R8G8B8A8_UNORM, imgui.VERTEX_BUFFER_COL_OFFSET)])
        self.sampler = Sampler(ctx, "linear", "clamp")
        self.buffers = [_Buffers() for _ in range(frames)]
        self.textures: dict[int, object] = {}
        self.font_image = None
        self.last_packed = None
        self.upload_fonts()

    def upload_fonts(self):
        io = imgui.get_io()
        w, h, pixels = io.fonts.get_tex_data_as_rgba32()
        if self.font_image is not None:
            self.font_image.close()
        self.font_image = self.ctx.image(h, w, "rgba8")
        upload_image(self.ctx, self.font_image, np.frombuffer(pixels, np.uint8).reshape(h, w, 4))
        self.add_texture(FONT_TEXTURE_ID, self.font_image.view, self.sampler.handle)
        io.fonts.texture_id = FONT_TEXTURE_ID
        io.fonts.clear_tex_data()

    def add_texture(self, texture_id: int, view, sampler):
        """Make ``texture_id`` (as given to imgui.image) sample ``view`` with ``sampler``. Rewrites the
        texture's descriptor set: call only while no frame in flight draws it (the viewer idles the
        device first, at start-up and on restart)."""
        old = self.textures.get(texture_id)
        if old is not None:
            self.pipeline.update_set(old, {0: (view, sampler)})
        else:
            self.textures[texture_id] = self.pipeline.descriptor_set({0: (view, sampler)})

    def record(self, cb, slot: int, draw_data, fb_size) -> PackedDrawData:
        """Upload this frame's draw data into slot ``slot``'s buffers and record its draws into ``cb``
        (inside a render pass). Returns the packing (tests compare it with ImGui's draw lists)."""
        packed = pack_draw_data(draw_data, fb_size)
        self.last_packed = packed
        if not packed.commands:
            return packed
        bufs = self.buffers[slot]
        vbytes, ibytes = packed.vertices.nbytes, packed.indices.nbytes
        bufs.ensure(self.ctx, vbytes, ibytes)
        bufs.vbuf.host_view[:vbytes] = packed.vertices.view(np.uint8)
        bufs.ibuf.host_view[:ibytes] = packed.indices.view(np.uint8)
        bufs.vbuf.flush()        # host writes -> device (a no-op on coherent memory)
        bufs.ibuf.flush()
        p = self.pipeline
        vk.vkCmdBindPipeline(cb, vk.VK_PIPELINE_BIND_POINT_GRAPHICS, p.pipeline)
        vk.vkCmdBindVertexBuffers(cb, 0, 1, [bufs.vbuf.buffer], [0])
        vk.vkCmdBindIndexBuffer(cb, bufs.ibuf.buffer, 0, vk.VK_INDEX_TYPE_UINT32)
        fw, fh = packed.fb_size
        vk.vkCmdSetViewport(cb, 0, 1, [vk.VkViewport(x=0, y=0, width=fw, height=fh, minDepth=0, maxDepth=1)])
        data = p.pack({"scale": packed.scale, "translate": packed.translate})
        vk.vkCmdPushConstants(cb, p.layout, p.push_stages, 0, len(data), vk.ffi.new("char[]", data))
        bound = None
        for c in packed.commands:
            dset = self.textures.get(c.texture_id)
            if dset is None:
                raise KeyError(f"ImGui texture id {c.texture_id} was never registered (add_texture)")
            if c.texture_id != bound:
                vk.vkCmdBindDescriptorSets(cb, vk.VK_PIPELINE_BIND_POINT_GRAPHICS, p.layout, 0, 1, [dset], 0, None)
                bound = c.texture_id
            x, y, w, h = c.scissor
            vk.vkCmdSetScissor(cb, 0, 1, [vk.VkRect2D(offset=vk.VkOffset2D(x=x, y=y),
                                                      extent=vk.VkExtent2D(width=w, height=h))])
            vk.vkCmdDrawIndexed(cb, c.count, 1, c.first_index, c.vertex_offset, 0)
        return packed

    def close(self):
        for b in self.buffers:
            b.close()
        self.buffers = []
        if self.font_image is not None:
            self.font_image.close()
            self.font_image = None
        self.sampler.close()
        self.pipeline.close()
        self.textures = {}
