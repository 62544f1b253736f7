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
layout(constant_id = 2) const uint OBS = 0;          // 1: also write the observation's levels 1-2 (grid_common.glsl)
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer Src { float src[]; };
layout(std430, binding = 0) readonly buffer Src4 { vec4 src4[]; };
layout(std430, binding = 1) writeonly buffer Dst { float dst[]; };
layout(std430, binding = 1) writeonly buffer Dst4 { vec4 dst4[]; };

layout(std430, binding = 2) readonly buffer Params { float prm[]; };   // (B, 1): alpha
layout(std430, binding = 3) writeonly buffer Obs { float ob[]; };      // OBS: level 2 + partials

layout(push_constant) uniform Push { uint H; uint W; uint batch; } pc;

#define GRID_OBS 1
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
    vec4 q0 = vec4(0.0), q1 = vec4(0.0), q2 = vec4(0.0);
    for (uint r = r0; r < rend; ++r) {
        uint row = base + r * W;
        vec4 down = load_mid(base + ((r + 1u == H) ? 0u : row - base + W), c0);
        vec4 l4 = lap4(up, cur, down, load_left(row, c0), load_right(row, c0));
        precise vec4 nv = cur + alpha * l4;     // precise: the OBS variant computes the same values
        store_seg(row, c0, nv);
        if (OBS != 0u) {
            uint j = (r - r0) & 3u;
            if (j == 0u) q0 = nv; else if (j == 1u) q1 = nv; else if (j == 2u) q2 = nv;
            else obs_block(b, pc.batch, r >> 2, sx, q0, q1, q2, nv);
        }
        up = cur; cur = down;
    }
}
