#version 450
// Per-field mass (sum), min, max and NaN/Inf flag of fields (F, n), in two passes:
//   PASS 1 (default): workgroup g of field f reduces its slice of CHUNK values -> part[f, g, 0..3]
//   FINAL (defined):  one workgroup per field reduces its G partials -> out[row, f, 0..3]
// min/max skip non-finite values; the flag is 1.0 when any value is NaN/Inf.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 0) const uint LOCAL_X = 256;
layout(constant_id = 1) const uint PER_INVOCATION = 16;
layout(local_size_x_id = 0) in;

#ifdef FINAL
layout(std430, binding = 0) readonly buffer Part { vec4 part[]; };   // (F, G) of (sum, min, max, flag)
layout(std430, binding = 1) writeonly buffer Out { vec4 outv[]; };  // (rows, F) of (sum, min, max, flag)
layout(push_constant) uniform Push { uint fields; uint groups; uint row; } pc;
#else
layout(std430, binding = 0) readonly buffer X { float x[]; };       // (F, n)
layout(std430, binding = 1) writeonly buffer Part { vec4 part[]; }; // (F, G)
layout(push_constant) uniform Push { uint fields; uint n; uint groups; } pc;
#endif

shared vec4 red[LOCAL_X];

vec4 combine(vec4 a, vec4 b) { return vec4(a.x + b.x, min(a.y, b.y), max(a.z, b.z), max(a.w, b.w)); }

void main() {
    uint g = flat_group_id(), tid = gl_LocalInvocationID.x;
#ifdef FINAL
    uint f = g;
    if (f >= pc.fields) return;
    vec4 acc = vec4(0.0, 1.0 / 0.0, -1.0 / 0.0, 0.0);
    for (uint i = tid; i < pc.groups; i += LOCAL_X) acc = combine(acc, part[f * pc.groups + i]);
#else
    uint f = g / pc.groups, gi = g % pc.groups;
    if (f >= pc.fields) return;
    uint chunk = LOCAL_X * PER_INVOCATION;
    uint start = gi * chunk, base = f * pc.n;
    float s = 0.0, mn = 1.0 / 0.0, mx = -1.0 / 0.0, bad = 0.0;
    for (uint k = 0u; k < PER_INVOCATION; ++k) {
        uint i = start + k * LOCAL_X + tid;
        if (i < pc.n) {
            float v = x[base + i];
            if (isnan(v) || isinf(v)) bad = 1.0;
            else { s += v; mn = min(mn, v); mx = max(mx, v); }
        }
    }
    vec4 acc = vec4(s, mn, mx, bad);
#endif
    red[tid] = acc;
    barrier();
    for (uint st = LOCAL_X / 2u; st > 0u; st >>= 1u) {
        if (tid < st) red[tid] = combine(red[tid], red[tid + st]);
        barrier();
    }
    if (tid == 0u) {
#ifdef FINAL
        outv[pc.row * pc.fields + f] = red[0];
#else
        part[f * pc.groups + gi] = red[0];
#endif
    }
}
