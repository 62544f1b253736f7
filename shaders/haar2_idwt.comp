#version 450
// One level of the 2-D Haar synthesis (PyWavelets "haar", mode "periodization") over two axes p < q
// of a batch: dp, dq, dd are (outer, m0, MID, m1, INNER) (see haar2_dwt.comp for their meaning and
// for the grid); aa is (outer, na0, MID, na1, INNER) with na = m or m + 1 (the extra sample of an odd
// length is dropped, as pywt.waverec2 does); x is (outer, 2 m0, MID, 2 m1, INNER). Each invocation
// writes one 2 x 2 block.
// VEC4 (a define; the host uses it when INNER == 1, m1 % 4 == 0 and na1 == m1): four neighbouring
// blocks per invocation with vec4 loads and stores.
// vkbands: variants VEC4   (compiled into the wheel with and without; see engine/shaders.py)
layout(constant_id = 0) const uint LOCAL_X = 64;
layout(constant_id = 1) const uint MID = 1;
layout(constant_id = 2) const uint INNER = 1;
layout(local_size_x_id = 0) in;

#ifdef VEC4
layout(std430, binding = 0) readonly buffer AA { vec4 aa[]; };
layout(std430, binding = 1) readonly buffer DP { vec4 dp[]; };
layout(std430, binding = 2) readonly buffer DQ { vec4 dq[]; };
layout(std430, binding = 3) readonly buffer DD { vec4 dd[]; };
layout(std430, binding = 4) writeonly buffer X { vec4 x[]; };
#else
layout(std430, binding = 0) readonly buffer AA { float aa[]; };
layout(std430, binding = 1) readonly buffer DP { float dp[]; };
layout(std430, binding = 2) readonly buffer DQ { float dq[]; };
layout(std430, binding = 3) readonly buffer DD { float dd[]; };
layout(std430, binding = 4) writeonly buffer X { float x[]; };
#endif

layout(push_constant) uniform Push { uint m0; uint m1; uint na0; uint na1; uint rows; } pc;

const float S = 0.70710678118654752440;

#ifdef VEC4
void main() {
    uint c4 = gl_GlobalInvocationID.x;                        // blocks 4 c4 .. 4 c4 + 3 of a row
    uint r = gl_WorkGroupID.z * gl_NumWorkGroups.y + gl_WorkGroupID.y;
    uint w4 = pc.m1 / 4u;
    if (c4 >= w4 || r >= pc.rows) return;
    uint k = r % MID, ro = r / MID;
    uint ra = ro;
    if (pc.na0 != pc.m0) {
        uint o = ro / pc.m0;
        ra = ro + o * (pc.na0 - pc.m0);
    }
    uint g = r * w4 + c4;
    vec4 a = aa[(ra * MID + k) * w4 + c4];
    vec4 p = dp[g], q = dq[g], s = dd[g];
    vec4 l0 = (a + p) * S, l1 = (a - p) * S;                 // along p
    vec4 h0 = (q + s) * S, h1 = (q - s) * S;
    vec4 e0 = (l0 + h0) * S, o0 = (l0 - h0) * S;             // along q: even / odd columns
    vec4 e1 = (l1 + h1) * S, o1 = (l1 - h1) * S;
    uint b0 = ((2u * ro) * MID + k) * 2u * w4 + 2u * c4;
    uint b1 = b0 + MID * 2u * w4;
    x[b0] = vec4(e0.x, o0.x, e0.y, o0.y);
    x[b0 + 1u] = vec4(e0.z, o0.z, e0.w, o0.w);
    x[b1] = vec4(e1.x, o1.x, e1.y, o1.y);
    x[b1 + 1u] = vec4(e1.z, o1.z, e1.w, o1.w);
}
#else
void main() {
    uint col = gl_GlobalInvocationID.x;                       // i1 * INNER + j
    uint r = gl_WorkGroupID.z * gl_NumWorkGroups.y + gl_WorkGroupID.y;
    if (col >= pc.m1 * INNER || r >= pc.rows) return;
    uint j = col % INNER, i1 = col / INNER;
    uint k = r % MID, ro = r / MID;                           // ro = o * m0 + i0
    uint ra = ro;                                             // o * na0 + i0
    if (pc.na0 != pc.m0) {
        uint o = ro / pc.m0;
        ra = ro + o * (pc.na0 - pc.m0);
    }
    uint g = r * pc.m1 * INNER + col;
    float a = aa[((ra * MID + k) * pc.na1 + i1) * INNER + j];
    float p = dp[g], q = dq[g], s = dd[g];
    float l0 = (a + p) * S, l1 = (a - p) * S;                 // along p
    float h0 = (q + s) * S, h1 = (q - s) * S;
    uint n1 = 2u * pc.m1;
    uint b0 = ((2u * ro) * MID + k) * n1 * INNER + j;         // o * 2 m0 + 2 i0 = 2 ro
    uint b1 = b0 + MID * n1 * INNER;
    uint c0 = (2u * i1) * INNER, c1 = c0 + INNER;
    x[b0 + c0] = (l0 + h0) * S;                               // along q
    x[b0 + c1] = (l0 - h0) * S;
    x[b1 + c0] = (l1 + h1) * S;
    x[b1 + c1] = (l1 - h1) * S;
}
#endif
