#version 450
// Band-coupled (nonlinear) tree operator, SPEC 3.2, fused: one workgroup per field, `steps` steps in
// one dispatch, leaves and their block means in shared memory (tree order, see tree_common.glsl).
// Per leaf v with X_b = A^(b)(v) - A^(b+1)(v) (leaf-resolution band b), Y_b = rates[b] X_b and
// drive_b = phi(X_b) |Y_b|:
//   x'(v) = c + sum_b x_b'(v) = c + sum_b (Y_b + eps * w_b * drive_b),   w_b = sum_{b' != b} C[b', b]
// (the coupling sum regrouped by source band: O(L) work per leaf). eps = 0 is tree diffusion.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 0) const uint LOCAL_X = 64;
layout(constant_id = 1) const uint P = 3;
layout(constant_id = 2) const uint DIMS = 1;
layout(constant_id = 3) const uint L = 6;
layout(constant_id = 4) const uint Q = 3;
layout(constant_id = 5) const uint N = 729;
layout(constant_id = 6) const uint PYR = 1093;
layout(constant_id = 7) const uint SIDE = 729;
layout(constant_id = 8) const uint PHI = 0;      // 0 tanh, 1 sign, 2 square
layout(local_size_x_id = 0) in;

shared float pyr[PYR];      // A^(0) (the leaves) .. A^(L)
shared float lam[L];
shared float wcol[L];
#include "tree_common.glsl"

layout(std430, binding = 0) buffer X { float x[]; };                   // (B, N) natural layout, in place
layout(std430, binding = 1) readonly buffer Params { float params[]; };// rates (L), then w (L)
layout(std430, binding = 2) writeonly buffer Obs { float obs[]; };     // (rows, B, L + 5)
layout(std430, binding = 3) writeonly buffer Snap { float snap[]; };   // (rows, B, N)

layout(push_constant) uniform Push {
    uint batch;
    uint steps;
    uint every;
    uint snap_every;
    uint observe_first;
    uint snap_first;
    float eps;
    uint row0;           // first observables / snapshot rows of this dispatch
    uint srow0;
    uint k0;             // steps already done in this chunk: observe after local step k when (k0 + k) % every == 0
} pc;

float phi(float v) {
    if (PHI == 0u) return tanh(v);
    if (PHI == 1u) return sign(v);
    return v * v;
}

// Needs the means of the current leaves (after build_means); ends with a barrier.
void observe(uint row, uint b) {
    uint tid = gl_LocalInvocationID.x;
    uint n = N;
    float w = 1.0;
    for (uint l = 0u; l < L; ++l) {
        float s = 0.0;
        for (uint j = tid; j < n; j += LOCAL_X) {
            float d = pyr[offs[l] + j] - pyr[offs[l + 1u] + j / Q];
            s += d * d;
        }
        red[tid * RK + l] = s * w;
        n /= Q; w *= float(Q);
    }
    float mn = 1.0 / 0.0, mx = -1.0 / 0.0, bad = 0.0;
    for (uint t = tid; t < N; t += LOCAL_X) {
        float v = pyr[t];
        if (nonfinite(v)) bad = 1.0; else { mn = min(mn, v); mx = max(mx, v); }
    }
    red[tid * RK + L] = mn; red[tid * RK + L + 1u] = mx; red[tid * RK + L + 2u] = bad;
    reduce_red();
    if (tid == 0u) {
        uint o = (row * pc.batch + b) * KO;
        float c = pyr[offs[L]];
        for (uint l = 0u; l < L; ++l) obs[o + l] = red[l];
        obs[o + L] = float(N) * c * c;
        obs[o + L + 1u] = float(N) * c;
        obs[o + L + 2u] = red[L];
        obs[o + L + 3u] = red[L + 1u];
        obs[o + L + 4u] = red[L + 2u];
    }
    barrier();
}

void snapshot(uint row, uint b) {
    for (uint i = gl_LocalInvocationID.x; i < N; i += LOCAL_X)
        snap[(row * pc.batch + b) * N + i] = pyr[tree_index(i)];
}

void main() {
    uint b = flat_group_id();
    if (b >= pc.batch) return;
    uint tid = gl_LocalInvocationID.x;
    init_offsets();
    for (uint l = tid; l < L; l += LOCAL_X) { lam[l] = params[l]; wcol[l] = params[L + l]; }
    for (uint i = tid; i < N; i += LOCAL_X) pyr[tree_index(i)] = x[b * N + i];
    barrier();
    build_means();
    uint orow = pc.row0, srow = pc.srow0;
    if (pc.observe_first != 0u) observe(orow++, b);
    if (pc.snap_first != 0u) snapshot(srow++, b);
    float eps = pc.eps;
    for (uint k = 1u; k <= pc.steps; ++k) {
        float c = pyr[offs[L]];
        for (uint t = tid; t < N; t += LOCAL_X) {
            float acc = c;
            float lo = pyr[t];              // A^(0)(v): only this invocation touches leaf t here
            uint tt = t;
            for (uint l = 0u; l < L; ++l) {
                tt /= Q;
                float hi = pyr[offs[l + 1u] + tt];
                float xb = lo - hi;
                float yb = lam[l] * xb;
                acc += yb + eps * wcol[l] * phi(xb) * abs(yb);
                lo = hi;
            }
            pyr[t] = acc;
        }
        barrier();
        build_means();
        uint g = pc.k0 + k;
        bool ob = pc.every != 0u && g % pc.every == 0u;
        bool sn = pc.snap_every != 0u && g % pc.snap_every == 0u;
        if (ob) observe(orow++, b);
        if (sn) { snapshot(srow++, b); barrier(); }   // snapshot reads leaves other invocations own
    }
    for (uint i = tid; i < N; i += LOCAL_X) x[b * N + i] = pyr[tree_index(i)];
}
