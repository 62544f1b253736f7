#version 450
// Heat step, SPEC 3.3: dst = src + alpha * lap(src), periodic 5-point Laplacian, fields (B, H, W).
// One invocation: 4 cells x RY rows (rolling up/centre/down rows in registers: each row is loaded
// once per invocation, plus one row above and below). Ping-pong: the host alternates src/dst.
// alpha is read from the member's row of a (B, 1) parameter buffer (per-member values, SPEC 3.2b:
// shared values are repeated), so a batch computes exactly what separate runs of its members do.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 0) const uint LOCAL_X = 64;
layout(constant_id = 1) const uint RY = 8;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer Src { float src[]; };
layout(std430, binding = 0) readonly buffer Src4 { vec4 src4[]; };
layout(std430, binding = 1) writeonly buffer Dst { float dst[]; };
layout(std430, binding = 1) writeonly buffer Dst4 { vec4 dst4[]; };

layout(std430, binding = 2) readonly buffer Params { float prm[]; };   // (B, 1): alpha

layout(push_constant) uniform Push { uint H; uint W; uint batch; } pc;

#include "grid_common.glsl"

void main() {
    uint segx = (pc.W + 3u) / 4u, segy = (pc.H + RY - 1u) / RY;
    uint id = flat_group_id() * LOCAL_X + gl_LocalInvocationID.x;
    if (id >= segx * segy * pc.batch) return;
    uint sx = id % segx, rest = id / segx;
    uint sy = rest % segy, b = rest / segy;
    uint base = b * pc.H * pc.W, c0 = sx * 4u, r0 = sy * RY;
    uint H = pc.H, W = pc.W;
    float alpha = prm[b];
    vec4 up = load_mid(base + (r0 == 0u ? H - 1u : r0 - 1u) * W, c0);
    vec4 cur = load_mid(base + r0 * W, c0);
    uint rend = min(r0 + RY, H);
    for (uint r = r0; r < rend; ++r) {
        uint row = base + r * W;
        vec4 down = load_mid(base + ((r + 1u == H) ? 0u : row - base + W), c0);
        vec4 l4 = lap4(up, cur, down, load_left(row, c0), load_right(row, c0));
        store_seg(row, c0, cur + alpha * l4);
        up = cur; cur = down;
    }
}
