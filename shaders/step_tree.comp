#version 450
// Tree (ultrametric / p-adic) diffusion, SPEC 3.1, fused: one workgroup per field, `steps` steps in
// ONE dispatch, the state held in REGISTERS in the band basis.
//
// Leaves are taken in tree order (tree_index: 1-D natural order; 2-D base-P digits of row and column
// interleaved, so a node's Q = P**DIMS children are contiguous). Invocation t owns the subtree of
// QM = Q**M leaves [t*QM, (t+1)*QM) (LOCAL_X = N / QM invocations) and holds
//   d[]  : the details of levels 0..M-1 inside its subtree (LOC = QM + QM/Q + ... + Q values),
//   up[] : the chain above it: d^(M+k) of its ancestor at level M+k (k < UP = L - M), then c.
// The chain is replicated over siblings; every copy is multiplied identically, and energies count
// each coefficient once (in the invocation whose t is divisible by Q**k).
// A step multiplies every d^(l) by rates[l] (c untouched: mass conserved): register work only, no
// barrier. The state never leaves the band basis inside a dispatch, so no round-off moves energy
// between bands: E_l(t) follows rates[l]^(2t) E_l(0) down to float32 underflow.
// Observables (every `every` steps): [E_0..E_{L-1}, E_c, mass, min, max, nonfinite] with ONE
// barrier: partials to shared memory, then invocation k sums quantity k over the workgroup.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 0) const uint LOCAL_X = 27;  // N / QM: one invocation per level-M subtree
layout(constant_id = 1) const uint P = 3;         // arity
layout(constant_id = 2) const uint DIMS = 1;
layout(constant_id = 3) const uint L = 6;         // levels
layout(constant_id = 4) const uint Q = 3;         // P**DIMS
layout(constant_id = 5) const uint N = 729;       // leaves per field
layout(constant_id = 6) const uint SIDE = 729;    // P**L (row length of a 2-D field)
layout(constant_id = 7) const uint M = 3;         // levels held inside one invocation (1..L)
layout(constant_id = 8) const uint QM = 27;       // Q**M leaves per invocation
layout(constant_id = 9) const uint LOC = 39;      // QM + QM/Q + ... + Q local details
layout(constant_id = 10) const uint UPS = 40;     // LOCAL_X + LOCAL_X/Q + ... + 1 (upper pyramid)
layout(local_size_x_id = 0) in;

const uint UP = L - M;
const uint KO = L + 5u;        // observables row
const uint RK = L + 3u;        // partials per invocation: E_0..E_{L-1}, min, max, nonfinite

layout(std430, binding = 0) buffer X { float x[]; };                   // (B, N) natural layout, in place
layout(std430, binding = 1) readonly buffer Rates { float rates[]; };  // (L)
layout(std430, binding = 2) writeonly buffer Obs { float obs[]; };     // (rows, B, L + 5)
layout(std430, binding = 3) writeonly buffer Snap { float snap[]; };   // (rows, B, N)

layout(push_constant) uniform Push {
    uint batch;          // fields
    uint steps;          // steps in this dispatch
    uint every;          // observe after step k when k % every == 0 (0: never)
    uint snap_every;     // snapshot after step k when k % snap_every == 0 (0: never)
    uint observe_first;  // 1: observables of the incoming state into row 0 first
    uint snap_first;     // 1: snapshot of the incoming state into row 0 first
} pc;

shared float sm[UPS];                 // upper pyramid of subtree means (load only)
shared float red[2u * LOCAL_X * RK];  // double-buffered partials: one barrier per observation

float d[LOC];           // local details, level 0 first
float f[LOC];           // rates of those details
float up[UP + 1u];      // ancestor details d^(M..L-1), then c
float uw[UP + 1u];      // energy weight of up[k] in this invocation (Q**(M+k) or 0)
float leaf[QM];         // scratch: leaf values of the subtree

// Natural (row-major) index of tree-order leaf position t.
uint natural_index(uint t) {
    if (DIMS == 1u) return t;
    uint r = 0u, c = 0u, m = 1u;
    for (uint k = 0u; k < L; ++k) {
        uint digit = t % Q;
        r += (digit / P) * m; c += (digit % P) * m;
        t /= Q; m *= P;
    }
    return r * SIDE + c;
}

// leaf[] <- the subtree's leaf values (top-down: offset of the chain, then local details).
void reconstruct() {
    float o = up[UP];
    for (uint k = 0u; k < UP; ++k) o += up[k];
    // level M-1 .. 0: value(level l, j) = value(level l+1, j / Q) + d^(l)[j]; written into leaf[]
    // from the top; leaf[j] at level l+1 is read before level l overwrites it (j / Q <= j).
    uint n = Q, off = LOC - Q;
    for (uint j = 0u; j < Q; ++j) leaf[j] = o + d[off + j];
    for (uint l = M - 1u; l > 0u; --l) {
        uint nn = n * Q;
        off -= nn;
        for (uint j = nn; j-- > 0u;) leaf[j] = leaf[j / Q] + d[off + j];
        n = nn;
    }
}

void observe(uint row, uint b, uint parity) {
    uint tid = gl_LocalInvocationID.x;
    uint base = (parity * LOCAL_X + tid) * RK;
    uint n = QM, off = 0u;
    float w = 1.0;
    for (uint l = 0u; l < M; ++l) {
        float s = 0.0;
        for (uint j = 0u; j < n; ++j) s += d[off + j] * d[off + j];
        red[base + l] = s * w;
        off += n; n /= Q; w *= float(Q);
    }
    for (uint k = 0u; k < UP; ++k) red[base + M + k] = up[k] * up[k] * uw[k];
    reconstruct();
    float mn = 1.0 / 0.0, mx = -1.0 / 0.0, bad = 0.0;
    for (uint j = 0u; j < QM; ++j) {
        float v = leaf[j];
        if (isnan(v) || isinf(v)) bad = 1.0; else { mn = min(mn, v); mx = max(mx, v); }
    }
    red[base + L] = mn; red[base + L + 1u] = mx; red[base + L + 2u] = bad;
    barrier();
    uint o = (row * pc.batch + b) * KO;
    for (uint k = tid; k < RK; k += LOCAL_X) {
        uint r0 = parity * LOCAL_X * RK + k;
        float acc = red[r0];
        for (uint i = 1u; i < LOCAL_X; ++i) {
            float v = red[r0 + i * RK];
            acc = k < L ? acc + v : k == L ? min(acc, v) : max(acc, v);
        }
        float c = up[UP];
        if (k < L) obs[o + k] = acc;
        else if (k == L) obs[o + L + 2u] = acc;
        else if (k == L + 1u) obs[o + L + 3u] = acc;
        else obs[o + L + 4u] = max(acc, (isnan(c) || isinf(c)) ? 1.0 : 0.0);
    }
    if (tid == 0u) {
        float c = up[UP];
        obs[o + L] = float(N) * c * c;
        obs[o + L + 1u] = float(N) * c;
    }
}

void write_leaves(uint b, uint row, bool to_snap) {
    reconstruct();
    uint t0 = gl_LocalInvocationID.x * QM;
    for (uint j = 0u; j < QM; ++j) {
        uint i = natural_index(t0 + j);
        if (to_snap) snap[(row * pc.batch + b) * N + i] = leaf[j];
        else x[b * N + i] = leaf[j];
    }
}

void main() {
    uint b = flat_group_id();
    if (b >= pc.batch) return;            // uniform over the workgroup
    uint tid = gl_LocalInvocationID.x;
    // load the subtree, local block means bottom-up into d[] (level l at its offset), subtree mean
    uint t0 = tid * QM;
    for (uint j = 0u; j < QM; ++j) d[j] = x[b * N + natural_index(t0 + j)];
    const float invq = 1.0 / float(Q);
    uint n = QM, off = 0u;
    float mean = 0.0;
    for (uint l = 0u; l < M; ++l) {
        uint nn = n / Q;
        if (l + 1u < M) {
            for (uint j = 0u; j < nn; ++j) {
                float s = 0.0;
                for (uint c = 0u; c < Q; ++c) s += d[off + j * Q + c];
                d[off + n + j] = s * invq;
            }
        } else {
            float s = 0.0;
            for (uint c = 0u; c < Q; ++c) s += d[off + c];
            mean = s * invq;
        }
        off += n; n = nn;
    }
    // details in place, finest first: d^(l)[j] = A^(l)[j] - A^(l+1)[j / Q]
    n = QM; off = 0u;
    for (uint l = 0u; l < M; ++l) {
        float fl = rates[l];
        for (uint j = 0u; j < n; ++j) {
            float parent = (l + 1u < M) ? d[off + n + j / Q] : mean;
            d[off + j] -= parent;
            f[off + j] = fl;
        }
        off += n; n /= Q;
    }
    // upper pyramid of subtree means in shared memory -> this invocation's chain of details
    sm[tid] = mean;
    barrier();
    uint so = 0u;
    n = LOCAL_X;
    for (uint k = 0u; k < UP; ++k) {
        uint nn = n / Q;
        for (uint j = tid; j < nn; j += LOCAL_X) {
            float s = 0.0;
            for (uint c = 0u; c < Q; ++c) s += sm[so + j * Q + c];
            sm[so + n + j] = s * invq;
        }
        so += n; n = nn;
        barrier();
    }
    so = 0u; n = LOCAL_X;
    uint node = tid, qk = 1u;
    for (uint k = 0u; k < UP; ++k) {
        up[k] = sm[so + node] - sm[so + n + node / Q];
        uw[k] = (tid % qk == 0u) ? float(QM * qk) : 0.0;
        so += n; n /= Q; node /= Q; qk *= Q;
    }
    up[UP] = sm[UPS - 1u];
    uw[UP] = 0.0;
    float fu[UP + 1u];
    for (uint k = 0u; k < UP; ++k) fu[k] = rates[M + k];
    fu[UP] = 1.0;

    uint orow = 0u, srow = 0u, parity = 0u;
    if (pc.observe_first != 0u) { observe(orow++, b, parity); parity ^= 1u; }
    if (pc.snap_first != 0u) write_leaves(b, srow++, true);
    // Steps run in tight register-only runs up to the next observation or snapshot.
    uint k = 0u;
    while (k < pc.steps) {
        uint stop = pc.steps;
        if (pc.every != 0u) stop = min(stop, (k / pc.every + 1u) * pc.every);
        if (pc.snap_every != 0u) stop = min(stop, (k / pc.snap_every + 1u) * pc.snap_every);
        for (; k < stop; ++k) {
            for (uint i = 0u; i < LOC; ++i) d[i] *= f[i];
            for (uint i = 0u; i < UP; ++i) up[i] *= fu[i];
        }
        if (pc.every != 0u && k % pc.every == 0u) { observe(orow++, b, parity); parity ^= 1u; }
        if (pc.snap_every != 0u && k % pc.snap_every == 0u) write_leaves(b, srow++, true);
    }
    if (pc.steps > 0u) write_leaves(b, 0u, false);   // an observe-only dispatch leaves x bit-exact
}
