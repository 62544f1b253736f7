#version 450
// One level of the Haar analysis (PyWavelets "haar", mode "periodization") along one axis of a batch.
// The array is read as (outer, n, inner) with the transform axis of length n in the middle, so any
// axis works without a transpose; cA and cD are (outer, m, inner) with m = ceil(n / 2). Each
// invocation transforms one pair: cA = (x0 + x1) / sqrt(2), cD = (x0 - x1) / sqrt(2). An odd n is
// extended by repeating its last sample, as PyWavelets does with periodization.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 0) const uint LOCAL_X = 256;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer A { float a[]; };
layout(std430, binding = 2) writeonly buffer D { float d[]; };

layout(push_constant) uniform Push { uint n; uint m; uint inner; uint total; } pc;

const float S = 0.70710678118654752440;

void main() {
    uint g = flat_group_id() * LOCAL_X + gl_LocalInvocationID.x;
    if (g >= pc.total) return;
    uint j = g % pc.inner;
    uint t = g / pc.inner;
    uint i = t % pc.m;
    uint o = t / pc.m;
    uint base = o * pc.n * pc.inner + j;
    float x0 = x[base + (2u * i) * pc.inner];
    float x1 = x[base + min(2u * i + 1u, pc.n - 1u) * pc.inner];
    a[g] = (x0 + x1) * S;
    d[g] = (x0 - x1) * S;
}
