#version 450
// One level of the Haar synthesis (PyWavelets "haar", mode "periodization") along one axis of a batch.
// cD is (outer, m, inner); cA is (outer, na, inner) with na = m or m + 1 (the extra sample of an odd
// length is dropped, as pywt.waverec does); x is (outer, 2m, inner). Each invocation writes one pair:
// x0 = (cA + cD) / sqrt(2), x1 = (cA - cD) / sqrt(2).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 0) const uint LOCAL_X = 256;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer D { float d[]; };
layout(std430, binding = 2) writeonly buffer X { float x[]; };

layout(push_constant) uniform Push { uint m; uint na; uint inner; uint total; } pc;

const float S = 0.70710678118654752440;

void main() {
    uint g = flat_group_id() * LOCAL_X + gl_LocalInvocationID.x;
    if (g >= pc.total) return;
    uint j = g % pc.inner;
    uint t = g / pc.inner;
    uint i = t % pc.m;
    uint o = t / pc.m;
    float ca = a[(o * pc.na + i) * pc.inner + j];
    float cd = d[g];
    uint base = (o * 2u * pc.m + 2u * i) * pc.inner + j;
    x[base] = (ca + cd) * S;
    x[base + pc.inner] = (ca - cd) * S;
}
