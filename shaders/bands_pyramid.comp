#version 450
// One pass of the tree-Haar block-mean pyramid (SPEC §1-2), any arity P >= 2, 1-D or 2-D, batched.
//
// The input is a level-a grid A^(a) of `nb` fields, each h x w (1-D: h = 1), read from src. One
// workgroup owns one tile of T x T values (1-D: T values), T = P^K, and reduces it K levels inside
// shared memory: A^(a+1) .. A^(a+K). Along the way every thread accumulates, per level, the sum of
// squares of the detail d^(l) = A^(l) - U A^(l+1) over the nodes it handled, and (for a pass that is
// not the first) the energy partials of the previous pass for the input values it read (NPREV
// planes in pin, one value per input value = one per previous tile). A single shared-memory tree
// reduction then gives per-tile partials:
//   * not FINAL: pout[pout_off + v * ntiles + tile] = sum over the tile of d^(v)^2 (unweighted), v < NPREV + K,
//                and dst[dst_off + tile] = A^(a+K) (the tile mean: the next pass's input grid);
//   * FINAL (a + K == L): pout[pout_off + tile * (L+1) + v] = [E_0 .. E_{L-1}, E_c] with the weights
//                E_l = P^(l*DIMS) sum d^(l)^2 and E_c = P^(L*DIMS) A^(L)^2 applied here.
// WRITE_PYR additionally stores every level a+1 .. a+K into dst (the pyramid layout: level a+j of all
// nb fields contiguous, row-major, levels one after another starting at dst_off).
// Accuracy: d is formed per node from its own children (no long cancellation), each thread sums at
// most a few terms, and the cross-thread / cross-tile sums are trees.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 0) const uint LOCAL_X = 64;
layout(constant_id = 1) const uint P = 3;          // arity
layout(constant_id = 2) const uint DIMS = 2;       // 1 or 2 spatial axes
layout(constant_id = 3) const uint K = 1;          // levels reduced by this pass (>= 1)
layout(constant_id = 4) const uint NPREV = 0;      // partial planes from the previous pass (= a)
layout(constant_id = 5) const uint FINAL = 0;      // 1: this pass reaches level L: write weighted energies
layout(constant_id = 6) const uint WRITE_PYR = 0;  // 1: write all levels a+1..a+K to dst
layout(constant_id = 7) const uint C = 9;          // children per node: P^DIMS
layout(constant_id = 8) const uint T = 27;         // tile side: P^K
layout(constant_id = 9) const uint N1 = 81;        // level-(a+1) nodes per tile: (T/P)^DIMS
layout(constant_id = 10) const uint SH = 91;       // shared floats for levels a+1..a+K of one tile
layout(constant_id = 11) const uint NV = 3;        // values reduced per tile: NPREV + K (+1 if FINAL)
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer Src { float src[]; };
layout(std430, binding = 1) readonly buffer Pin { float pin[]; };
layout(std430, binding = 2) writeonly buffer Dst { float dst[]; };
layout(std430, binding = 3) writeonly buffer Pout { float pout[]; };

layout(push_constant) uniform Push {
    uint nb;          // fields processed
    uint h;           // level-a rows per field (1 for 1-D)
    uint w;           // level-a columns per field
    uint src_off;     // element offset of field 0 in src
    uint src_bstride; // elements between consecutive fields in src
    uint pin_off;     // element offset of plane 0 of the previous partials (plane stride nb*h*w)
    uint dst_off;     // element offset of level a+1 (WRITE_PYR) or of the tile means
    uint pout_off;    // element offset of the partials / energies written here
    uint L;           // total levels of the field (FINAL weights)
} pc;

shared float lev[SH];
shared float red[NV * LOCAL_X];

void main() {
    const uint tid = gl_LocalInvocationID.x;
    const uint tiles_x = pc.w / T;
    const uint tiles_y = (DIMS == 2u) ? pc.h / T : 1u;
    const uint tpm = tiles_x * tiles_y;
    const uint ntiles = pc.nb * tpm;
    const uint tile = flat_group_id();
    if (tile >= ntiles) return;  // whole workgroup leaves together (uniform), before any barrier
    const uint b = tile / tpm;
    const uint t = tile - b * tpm;
    const uint ty = t / tiles_x;
    const uint tx = t - ty * tiles_x;

    float acc[NV];
    for (uint v = 0u; v < NV; ++v) acc[v] = 0.0;

    // ---- level a -> a+1, straight from global memory (each node reads its C children).
    const uint S1 = T / P;                     // level-(a+1) side of the tile
    const uint h1 = (DIMS == 2u) ? pc.h / P : 1u;
    const uint w1 = pc.w / P;
    const uint plane = pc.nb * pc.h * pc.w;
    for (uint n = tid; n < N1; n += LOCAL_X) {
        uint u = (DIMS == 2u) ? n / S1 : 0u;
        uint vv = n - u * S1;
        uint row0 = (DIMS == 2u) ? ty * T + u * P : 0u;
        uint col0 = tx * T + vv * P;
        float vals[C];
        float s = 0.0;
        for (uint c = 0u; c < C; ++c) {
            uint r = c / P, q = c - (c / P) * P;
            uint idx = (row0 + r) * pc.w + col0 + q;
            float x = src[pc.src_off + b * pc.src_bstride + idx];
            vals[c] = x;
            s += x;
            for (uint m = 0u; m < NPREV; ++m) acc[m] += pin[pc.pin_off + m * plane + b * pc.h * pc.w + idx];
        }
        float mean = s / float(C);
        float e = 0.0;
        for (uint c = 0u; c < C; ++c) { float d = vals[c] - mean; e += d * d; }
        acc[NPREV] += e;
        lev[n] = mean;
        if (WRITE_PYR != 0u)
            dst[pc.dst_off + b * h1 * w1 + ((DIMS == 2u) ? (ty * S1 + u) : 0u) * w1 + tx * S1 + vv] = mean;
    }

    // ---- levels a+2 .. a+K inside shared memory.
    uint base_in = 0u, nodes_in = N1, side_in = S1;
    uint hj = h1, wj = w1, pyr_off = pc.dst_off;
    for (uint j = 1u; j < K; ++j) {
        barrier();
        uint nodes = nodes_in / C, side = side_in / P, base_out = base_in + nodes_in;
        uint pyr_next = pyr_off + pc.nb * hj * wj;
        hj = (DIMS == 2u) ? hj / P : 1u;
        wj = wj / P;
        for (uint n = tid; n < nodes; n += LOCAL_X) {
            uint u = (DIMS == 2u) ? n / side : 0u;
            uint vv = n - u * side;
            float vals[C];
            float s = 0.0;
            for (uint c = 0u; c < C; ++c) {
                uint r = c / P, q = c - (c / P) * P;
                float x = lev[base_in + (u * P + r) * side_in + vv * P + q];
                vals[c] = x;
                s += x;
            }
            float mean = s / float(C);
            float e = 0.0;
            for (uint c = 0u; c < C; ++c) { float d = vals[c] - mean; e += d * d; }
            acc[NPREV + j] += e;
            lev[base_out + n] = mean;
            if (WRITE_PYR != 0u)
                dst[pyr_next + b * hj * wj + ((DIMS == 2u) ? (ty * side + u) : 0u) * wj + tx * side + vv] = mean;
        }
        base_in = base_out; nodes_in = nodes; side_in = side; pyr_off = pyr_next;
    }
    barrier();
    const float top = lev[base_in];  // A^(a+K) of this tile
    if (FINAL != 0u && tid == 0u) acc[NV - 1u] = top * top;
    if (FINAL == 0u && WRITE_PYR == 0u && tid == 0u) dst[pc.dst_off + tile] = top;

    // ---- one tree reduction for all NV sums.
    for (uint v = 0u; v < NV; ++v) red[v * LOCAL_X + tid] = acc[v];
    for (uint s = LOCAL_X / 2u; s > 0u; s >>= 1u) {
        barrier();
        if (tid < s)
            for (uint v = 0u; v < NV; ++v) red[v * LOCAL_X + tid] += red[v * LOCAL_X + tid + s];
    }
    barrier();
    for (uint v = tid; v < NV; v += LOCAL_X) {
        float total = red[v * LOCAL_X];
        if (FINAL != 0u) {
            // weight P^(v*DIMS) (levels) and P^(L*DIMS) (coarse, v == L)
            float wgt = 1.0;
            for (uint l = 0u; l < v; ++l) wgt *= float(C);
            pout[pc.pout_off + tile * NV + v] = total * wgt;
        } else {
            pout[pc.pout_off + v * ntiles + tile] = total;
        }
    }
}
