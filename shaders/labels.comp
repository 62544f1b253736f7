#version 450
// Text of a labelled picture (vkbands.labels): bitmap-font glyphs drawn over an rgba8 image.
//
// One invocation per glyph row (FONT_H * k image rows per glyph; it writes the up to FONT_W * k pixels
// of its row that the glyph sets, in the TEXT colour), so the text lies on what write_image.comp left
// there (the background of the label margins). Glyphs never overlap the panels.
//
// items[i] = (x, y, code, shift): code < 128 is an ASCII character (font rows[(code - 32) * 10 + row],
// bit 5 = left column); code with bit 31 set is character `pos = code & 0xff` of number slot
// `j = (code >> 8) & 0xffff`, formatted by label_numbers.comp into chars[] (per slot: length, then
// MAXC characters). shift = first | count << 16 | align << 30: the glyph moves left by the characters
// that numbers first .. first + count - 1 (those before it on its line) left unused of their reserved
// width (reserved[j]); a number's own glyphs move right by all (align 1, right) or half (align 2,
// centre) of its own unused characters.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 0) const uint LOCAL_X = 64;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer Font { uint rows[]; };
layout(std430, binding = 1) readonly buffer Items { uvec4 items[]; };
layout(std430, binding = 2) readonly buffer Nums { uvec4 nums[]; };
layout(std430, binding = 3) readonly buffer Chars { uint chars[]; };
layout(rgba8, binding = 4) writeonly uniform image2D img;

layout(push_constant) uniform Push {
    uint n_items;
    uint k;          // glyph scale
    uint colour;     // rgba8, packed little-endian
} pc;

const uint FONT_W = 6u, FONT_H = 10u, MAXC = 24u;

uint unused(uint j) {
    uint len = chars[j * (MAXC + 1u)];
    return nums[j].z > len ? nums[j].z - len : 0u;
}

void main() {
    uint cell_rows = FONT_H * pc.k;
    uint i = flat_group_id() * LOCAL_X + gl_LocalInvocationID.x;
    if (i >= pc.n_items * cell_rows) return;
    uint it = i / cell_rows, py = i % cell_rows;
    uvec4 item = items[it];
    uint code = item.z;
    int shift = 0;
    if ((code & 0x80000000u) != 0u) {
        uint j = (code >> 8) & 0xffffu, pos = code & 0xffu;
        code = pos < MAXC ? chars[j * (MAXC + 1u) + 1u + pos] : 32u;
        uint spare = unused(j);
        uint align = item.w >> 30;
        if (align == 1u) shift += int(spare);
        else if (align == 2u) shift += int(spare) / 2;
    }
    if (code <= 32u || code > 126u) return;
    uint first = item.w & 0xffffu, count = (item.w >> 16) & 0x3fffu;
    for (uint q = 0u; q < count; q++) shift -= int(unused(first + q));
    uint row = rows[(code - 32u) * FONT_H + py / pc.k];
    if (row == 0u) return;
    vec4 colour = unpackUnorm4x8(pc.colour);
    ivec2 size = imageSize(img);
    int y = int(item.y + py);
    int x0 = int(item.x) + shift * int(FONT_W * pc.k);
    if (y < 0 || y >= size.y) return;
    for (uint px = 0u; px < FONT_W * pc.k; px++) {
        int x = x0 + int(px);
        if (((row >> (FONT_W - 1u - px / pc.k)) & 1u) != 0u && x >= 0 && x < size.x) imageStore(img, ivec2(x, y), colour);
    }
}
