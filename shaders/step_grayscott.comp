#version 450
// Gray-Scott reaction-diffusion step, SPEC 3.3 (explicit Euler), state (B, 2, H, W): u then v.
//   u += dt (Du lap u - u v^2 + F (1 - u)),  v += dt (Dv lap v + u v^2 - (F + k) v)
// Same layout of work as step_heat.comp: 4 cells x RY rows per invocation, rows rolled in registers.
// Du, Dv, F, k, dt come from the member's row of a (B, 5) parameter buffer (per-member values, SPEC
// 3.2b: shared values are repeated), so a batch computes exactly what separate runs of its members do.
// u's NaN/Inf flag (observations read only v; issue 12): a step sets uflag[b] = 1.0 when a new u of
// member b is NaN/Inf (a benign race: every writer writes the same value) and never clears it. A NaN/Inf
// in u stays one (every update adds to the cell's own value), so the flag of a state equals "u is
// non-finite now". MODE 1 sets it from the state itself (no step, dst untouched): what the host records,
// after clearing the flags, when the state was written from outside.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 0) const uint LOCAL_X = 64;
layout(constant_id = 1) const uint RY = 8;
layout(constant_id = 2) const uint MODE = 0;         // 0: one step; 1: flag non-finite u of src only
layout(constant_id = 3) const uint OBS = 0;          // 1: also write v's observation levels 1-2 (grid_common.glsl)
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer Src { float src[]; };
layout(std430, binding = 0) readonly buffer Src4 { vec4 src4[]; };
layout(std430, binding = 1) writeonly buffer Dst { float dst[]; };
layout(std430, binding = 1) writeonly buffer Dst4 { vec4 dst4[]; };

layout(std430, binding = 2) readonly buffer Params { float prm[]; };   // (B, 5): Du, Dv, F, k, dt
layout(std430, binding = 3) writeonly buffer UFlag { float uflag[]; };  // (B,): u was NaN/Inf
layout(std430, binding = 4) writeonly buffer Obs { float ob[]; };       // OBS: v's level 2 + partials

layout(push_constant) uniform Push { uint H; uint W; uint batch; } pc;

#define GRID_OBS 1
#include "grid_common.glsl"

void main() {
    uint segx = (pc.W + 3u) / 4u, segy = (pc.H + RY - 1u) / RY;
    uint id = flat_group_id() * LOCAL_X + gl_LocalInvocationID.x;
    if (id >= segx * segy * pc.batch) return;
    uint sx = id % segx, rest = id / segx;
    uint sy = rest % segy, b = rest / segy;
    uint H = pc.H, W = pc.W, HW = H * W;
    float Du = prm[b * 5u], Dv = prm[b * 5u + 1u], F = prm[b * 5u + 2u], k = prm[b * 5u + 3u], dt = prm[b * 5u + 4u];
    uint bu = b * 2u * HW, bv = bu + HW, c0 = sx * 4u, r0 = sy * RY;
    uint rup = (r0 == 0u ? H - 1u : r0 - 1u) * W;
    vec4 uup = load_mid(bu + rup, c0), vup = load_mid(bv + rup, c0);
    vec4 ucur = load_mid(bu + r0 * W, c0), vcur = load_mid(bv + r0 * W, c0);
    uint rend = min(r0 + RY, H);
    if (MODE == 1u) {
        bool bad = false;
        for (uint r = r0; r < rend; ++r) {
            vec4 x = load_mid(bu + r * W, c0);      // a partial segment's extra cells are cells of its row
            bad = bad || any(isnan(x)) || any(isinf(x));
        }
        if (bad) uflag[b] = 1.0;
        return;
    }
    bool ubad = false;
    vec4 q0 = vec4(0.0), q1 = vec4(0.0), q2 = vec4(0.0);
    for (uint r = r0; r < rend; ++r) {
        uint rw = r * W, rd = (r + 1u == H) ? 0u : rw + W;
        vec4 udn = load_mid(bu + rd, c0), vdn = load_mid(bv + rd, c0);
        vec4 lu = lap4(uup, ucur, udn, load_left(bu + rw, c0), load_right(bu + rw, c0));
        vec4 lv = lap4(vup, vcur, vdn, load_left(bv + rw, c0), load_right(bv + rw, c0));
        vec4 uvv = ucur * vcur * vcur;
        precise vec4 un = ucur + dt * (Du * lu - uvv + F * (1.0 - ucur));   // precise: the OBS variant
        precise vec4 vn = vcur + dt * (Dv * lv + uvv - (F + k) * vcur);     // computes the same values
        ubad = ubad || any(isnan(un)) || any(isinf(un));
        store_seg(bu + rw, c0, un);
        store_seg(bv + rw, c0, vn);
        if (OBS != 0u) {
            uint j = (r - r0) & 3u;
            if (j == 0u) q0 = vn; else if (j == 1u) q1 = vn; else if (j == 2u) q2 = vn;
            else obs_block(b, pc.batch, r >> 2, sx, q0, q1, q2, vn);
        }
        uup = ucur; ucur = udn; vup = vcur; vcur = vdn;
    }
    if (ubad) uflag[b] = 1.0;
}
