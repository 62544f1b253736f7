#version 450
// One level of the 2-D Haar analysis (PyWavelets "haar", mode "periodization") over two axes p < q
// of a batch. The input is read as (outer, n0, MID, n1, INNER), p of length n0 and q of length n1;
// the four outputs are (outer, m0, MID, m1, INNER) with m = ceil(n / 2). MID and INNER (the products
// of the axes between p and q and after q) are specialization constants: they do not change from
// level to level, and for the default axes (-2, -1) both are 1, so no division is left.
// Grid: x over the output columns (i1, j), y and z over the output rows r = (o * m0 + i0) * MID + k.
// Each invocation transforms one 2 x 2 block: rows (along q) first, then columns (along p), which is
// the separable transform. Outputs: aa; dp (detail along p, approximation along q); dq (approximation
// along p, detail along q); dd. An odd length is extended by repeating its last sample, as PyWavelets
// does with periodization.
// VEC4 (a define; the host uses it when INNER == 1 and m1 % 4 == 0): each invocation transforms four
// neighbouring blocks with vec4 loads and stores (x over groups of four output columns).
// vkbands: variants VEC4   (compiled into the wheel with and without; see engine/shaders.py)
layout(constant_id = 0) const uint LOCAL_X = 64;
layout(constant_id = 1) const uint MID = 1;
layout(constant_id = 2) const uint INNER = 1;
layout(local_size_x_id = 0) in;

#ifdef VEC4
layout(std430, binding = 0) readonly buffer X { vec4 x[]; };
layout(std430, binding = 1) writeonly buffer AA { vec4 aa[]; };
layout(std430, binding = 2) writeonly buffer DP { vec4 dp[]; };
layout(std430, binding = 3) writeonly buffer DQ { vec4 dq[]; };
layout(std430, binding = 4) writeonly buffer DD { vec4 dd[]; };
#else
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer AA { float aa[]; };
layout(std430, binding = 2) writeonly buffer DP { float dp[]; };
layout(std430, binding = 3) writeonly buffer DQ { float dq[]; };
layout(std430, binding = 4) writeonly buffer DD { float dd[]; };
#endif

layout(push_constant) uniform Push { uint n0; uint n1; uint m0; uint m1; uint rows; } pc;

const float S = 0.70710678118654752440;

#ifdef VEC4
void main() {
    uint c4 = gl_GlobalInvocationID.x;                        // output columns 4 c4 .. 4 c4 + 3
    uint r = gl_WorkGroupID.z * gl_NumWorkGroups.y + gl_WorkGroupID.y;
    uint w4 = pc.m1 / 4u;
    if (c4 >= w4 || r >= pc.rows) return;
    uint k = r % MID, ro = r / MID;
    uint top, bot;
    if (pc.n0 == 2u * pc.m0) {
        top = 2u * ro;
        bot = top + 1u;
    } else {
        uint o = ro / pc.m0, i0 = ro - o * pc.m0;
        top = o * pc.n0 + 2u * i0;
        bot = o * pc.n0 + min(2u * i0 + 1u, pc.n0 - 1u);
    }
    uint b0 = (top * MID + k) * 2u * w4 + 2u * c4, b1 = (bot * MID + k) * 2u * w4 + 2u * c4;
    vec4 p0 = x[b0], p1 = x[b0 + 1u], q0 = x[b1], q1 = x[b1 + 1u];
    vec4 e0 = vec4(p0.xz, p1.xz), o0 = vec4(p0.yw, p1.yw);    // even / odd columns of the top row
    vec4 e1 = vec4(q0.xz, q1.xz), o1 = vec4(q0.yw, q1.yw);
    vec4 l0 = (e0 + o0) * S, h0 = (e0 - o0) * S;              // along q
    vec4 l1 = (e1 + o1) * S, h1 = (e1 - o1) * S;
    uint g = r * w4 + c4;
    aa[g] = (l0 + l1) * S;                                    // along p
    dp[g] = (l0 - l1) * S;
    dq[g] = (h0 + h1) * S;
    dd[g] = (h0 - h1) * S;
}
#else
void main() {
    uint col = gl_GlobalInvocationID.x;                       // i1 * INNER + j
    uint r = gl_WorkGroupID.z * gl_NumWorkGroups.y + gl_WorkGroupID.y;
    if (col >= pc.m1 * INNER || r >= pc.rows) return;
    uint j = col % INNER, i1 = col / INNER;
    uint k = r % MID, ro = r / MID;                           // ro = o * m0 + i0
    uint top, bot;                                            // o * n0 + the two input rows
    if (pc.n0 == 2u * pc.m0) {
        top = 2u * ro;
        bot = top + 1u;
    } else {
        uint o = ro / pc.m0, i0 = ro - o * pc.m0;
        top = o * pc.n0 + 2u * i0;
        bot = o * pc.n0 + min(2u * i0 + 1u, pc.n0 - 1u);
    }
    uint c0 = 2u * i1, c1 = min(c0 + 1u, pc.n1 - 1u);
    uint b0 = (top * MID + k) * pc.n1 * INNER + j, b1 = (bot * MID + k) * pc.n1 * INNER + j;
    float x00 = x[b0 + c0 * INNER], x01 = x[b0 + c1 * INNER];
    float x10 = x[b1 + c0 * INNER], x11 = x[b1 + c1 * INNER];
    float l0 = (x00 + x01) * S, h0 = (x00 - x01) * S;         // along q
    float l1 = (x10 + x11) * S, h1 = (x10 - x11) * S;
    uint g = r * pc.m1 * INNER + col;
    aa[g] = (l0 + l1) * S;                                    // along p
    dp[g] = (l0 - l1) * S;
    dq[g] = (h0 + h1) * S;
    dd[g] = (h0 - h1) * S;
}
#endif
