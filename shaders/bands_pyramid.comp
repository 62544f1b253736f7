#version 450
// One pass of the tree-Haar block-mean pyramid (SPEC §1-2), any arity P >= 2, 1-D or 2-D, batched.
//
// The input is a level-a grid A^(a) of `nb` fields, each h x w (1-D: h = 1), read from src. One
// workgroup owns one tile of T x T values (1-D: T values), T = P^K, and reduces it K levels:
//   * the first M levels privately: each invocation loads a micro-tile of SM x SM values (SM = P^M;
//     1-D: SM values) and builds its levels a+1..a+M in registers (no barrier, no shared memory);
//   * levels a+M+1..a+K in shared memory, one barrier per level.
// Along the way every invocation accumulates, per level l, the sum of squares of the detail
// d^(l) = A^(l) - U A^(l+1) over the nodes it handled (d is formed per node from its own children:
// no long cancellation) and, for a pass after the first, the energy partials of the previous pass for
// the input values it read (NPREV planes in pin, one value per input value = per previous tile).
// A shared-memory reduction in two short stages then gives per-tile results:
//   * not FINAL: pout[pout_off + v * ntiles + tile] = sum over the tile of d^(v)^2 (unweighted),
//                v < NPREV + K, and dst[dst_off + tile] = A^(a+K) (the next pass's input grid);
//   * FINAL (a + K == L): pout[pout_off + tile * (L+1) + v] = [E_0 .. E_{L-1}, E_c] with the weights
//                E_l = P^(l*DIMS) sum d^(l)^2 and E_c = P^(L*DIMS) A^(L)^2 applied here.
// WRITE_PYR: also store every level a+1..a+K into dst (levels layout, see bands_common.glsl, level
//            a+1 at dst_off). WRITE_BANDS: store d^(a..a+K-1) (own resolution) and, in the FINAL
//            pass, the coarse A^(L) into bands (levels layout, level a at bands_off).
// STATS (a define): the same passes also give the field statistics of SPEC §5, so an observation
//            reads the field once: the first pass (NPREV == 0) takes min / max of the finite leaves
//            it loads and a NaN/Inf flag; later passes read them back from pin (planes NPREV ..
//            NPREV+2) and every pass reduces them with the sums (3 more values per tile: planes
//            NV .. NV+2 of pout when not FINAL). The FINAL pass writes
//            st[stats_off + tile * 4 + 0..3] = [mass, min, max, nonfinite] with mass = P^(L*DIMS) *
//            A^(L) (the coarse mean times the leaves under it: a tree sum, NaN/Inf when the field is).
// PAIRS (a define; even P, a pass reading the leaves with src_off and src_bstride even): micro-tile
//            rows are loaded as vec2 (adjacent invocations then read adjacent 8-byte pairs;
//            lavapipe: energies of 1024^2, p = 2, 6.75 -> 6.59 ms, an observation 7.8 -> 7.15 ms).
// vkbands: variants STATS PAIRS   (every subset is compiled into the wheel; see engine/shaders.py)
// Means, details and energy sums are `precise` (SPIR-V NoContraction: no fused multiply-add, no
// reassociation): the variants compile to different pipelines, and the energies of a STATS pass
// (record_observables) must equal those of a plain one (record_energies) bit for bit on GPUs too.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 0) const uint LOCAL_X = 64;     // = LPT * TPW
layout(constant_id = 1) const uint P = 3;            // arity
layout(constant_id = 2) const uint DIMS = 2;         // 1 or 2 spatial axes
layout(constant_id = 3) const uint K = 1;            // levels reduced by this pass (>= 1)
layout(constant_id = 4) const uint M = 1;            // of which in registers (1 <= M <= K)
layout(constant_id = 5) const uint NPREV = 0;        // partial planes from the previous pass (= a)
layout(constant_id = 6) const uint FINAL = 0;        // 1: this pass reaches level L
layout(constant_id = 7) const uint WRITE_PYR = 0;    // 1: write levels a+1..a+K to dst
layout(constant_id = 8) const uint WRITE_BANDS = 0;  // 1: write d^(a..a+K-1) (and c) to bands
layout(constant_id = 9) const uint C = 9;            // children per node: P^DIMS
layout(constant_id = 10) const uint T = 27;          // tile side: P^K
layout(constant_id = 11) const uint SM = 3;          // micro-tile side: P^M
layout(constant_id = 12) const uint CM = 9;          // values per micro-tile: SM^DIMS
layout(constant_id = 13) const uint NM = 81;         // micro-tiles per tile: (T/SM)^DIMS
layout(constant_id = 14) const uint SH = 91;         // shared floats: nodes of levels a+M..a+K per tile
layout(constant_id = 15) const uint NV = 3;          // values reduced per tile: NPREV + K (+1 if FINAL)
layout(constant_id = 16) const uint LPT = 64;        // invocations per tile (power of two)
layout(constant_id = 17) const uint TPW = 1;         // tiles per workgroup, side by side: LOCAL_X = LPT * TPW
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer Src { float src[]; };
layout(std430, binding = 0) readonly buffer Src2 { vec2 src2[]; };   // PAIRS: the same buffer
layout(std430, binding = 1) readonly buffer Pin { float pin[]; };
layout(std430, binding = 2) writeonly buffer Dst { float dst[]; };
layout(std430, binding = 3) writeonly buffer Pout { float pout[]; };
layout(std430, binding = 4) writeonly buffer Bands { float bands[]; };
#ifdef STATS
layout(std430, binding = 5) writeonly buffer Stats { float st[]; };
const uint NS = 3u;                                  // min, max, nonfinite flag
#else
const uint NS = 0u;
#endif
const uint NR = NV + NS;                             // values reduced per tile

layout(push_constant) uniform Push {
    uint nb;          // fields processed
    uint h;           // level-a rows per field (1 for 1-D)
    uint w;           // level-a columns per field
    uint src_off;     // element offset of field 0 in src
    uint src_bstride; // elements between consecutive fields in src
    uint pin_off;     // element offset of plane 0 of the previous partials (plane stride nb*h*w)
    uint dst_off;     // element offset of level a+1 (WRITE_PYR) or of the tile means
    uint pout_off;    // element offset of the partials / energies written here
    uint bands_off;   // element offset of level a in bands (WRITE_BANDS)
    uint L;           // total levels of the field
#ifdef STATS
    uint stats_off;   // element offset of this pass's [mass, min, max, nonfinite] rows in st (FINAL)
#endif
} pc;

const uint R1 = (LPT < 8u) ? LPT : 8u;               // reduction: chunks per value
shared float lev[TPW * SH];
shared float red[TPW * NR * LPT];
shared float red2[TPW * NR * R1];

// Reduction of value v: the sums (v < NV), min (v == NV), max (min/max and the 0/1 flag).
float combine(uint v, float a, float b) { return v < NV ? a + b : (v == NV ? min(a, b) : max(a, b)); }

void main() {
    const uint lid = gl_LocalInvocationID.x;
    const uint slot = lid / LPT;                 // which of the workgroup's tiles
    const uint tid = lid - slot * LPT;           // invocation within the tile
    const uint tiles_x = pc.w / T;
    const uint tiles_y = (DIMS == 2u) ? pc.h / T : 1u;
    const uint tpm = tiles_x * tiles_y;
    const uint ntiles = pc.nb * tpm;
    const uint tile0 = flat_group_id() * TPW;
    if (tile0 >= ntiles) return;  // whole workgroup leaves together (uniform), before any barrier
    const bool live = tile0 + slot < ntiles;  // invocations of a missing tile only take part in barriers
    const uint tile = live ? tile0 + slot : tile0;
    const uint LB = slot * SH;                  // this tile's shared levels
    const uint RB = slot * NR * LPT;            // this tile's reduction slots
    const uint b = tile / tpm;
    const uint t = tile - b * tpm;
    const uint ty = t / tiles_x;
    const uint tx = t - ty * tiles_x;
    const uint plane = pc.nb * pc.h * pc.w;

    precise float acc[NR];
    for (uint v = 0u; v < NV; ++v) acc[v] = 0.0;
#ifdef STATS
    acc[NV] = uintBitsToFloat(0x7f800000u);        // min of no values: +Inf
    acc[NV + 1u] = uintBitsToFloat(0xff800000u);   // max of no values: -Inf
    acc[NV + 2u] = 0.0;                            // nonfinite flag
#endif

    // ---- levels a+1 .. a+M in registers, one micro-tile per iteration.
    const uint SMT = T / SM;  // micro-tiles per tile side
    for (uint n = tid; n < (live ? NM : 0u); n += LPT) {
        uint mu = (DIMS == 2u) ? n / SMT : 0u;
        uint mv = n - mu * SMT;
        uint row = (DIMS == 2u) ? ty * T + mu * SM : 0u;   // micro-tile origin at the current level
        uint col = tx * T + mv * SM;
        float v[CM];
        for (uint c = 0u; c < CM; ++c) {
            uint r = (DIMS == 2u) ? c / SM : 0u;
            uint q = c - r * SM;
            uint idx = (row + r) * pc.w + col + q;
#ifdef PAIRS
            if ((c & 1u) == 0u) {     // even P: leaves c, c+1 are adjacent, the pair 8-byte aligned
                vec2 t2 = src2[(pc.src_off + b * pc.src_bstride + idx) >> 1];
                v[c] = t2.x; v[c + 1u] = t2.y;
            }
#else
            v[c] = src[pc.src_off + b * pc.src_bstride + idx];
#endif
            for (uint m = 0u; m < NPREV; ++m) acc[m] += pin[pc.pin_off + m * plane + b * pc.h * pc.w + idx];
#ifdef STATS
            if (NPREV == 0u) {        // leaves: branch-free; an ordered compare is false for NaN
                bool ok = abs(v[c]) <= 3.40282347e38;
                acc[NV] = min(acc[NV], ok ? v[c] : acc[NV]);
                acc[NV + 1u] = max(acc[NV + 1u], ok ? v[c] : acc[NV + 1u]);
                acc[NV + 2u] = ok ? acc[NV + 2u] : 1.0;
            } else {                  // the previous pass's per-tile statistics
                uint pi = pc.pin_off + NPREV * plane + b * pc.h * pc.w + idx;
                acc[NV] = min(acc[NV], pin[pi]);
                acc[NV + 1u] = max(acc[NV + 1u], pin[pi + plane]);
                acc[NV + 2u] = max(acc[NV + 2u], pin[pi + 2u * plane]);
            }
#endif
        }
        uint side = SM, hj = pc.h, wj = pc.w, boff = pc.bands_off, poff = pc.dst_off;
        for (uint j = 0u; j < M; ++j) {
            uint ns = side / P;
            uint hn = (DIMS == 2u) ? hj / P : 1u, wn = wj / P;
            for (uint nn = 0u; nn < ((DIMS == 2u) ? ns * ns : ns); ++nn) {
                uint u = (DIMS == 2u) ? nn / ns : 0u;
                uint vv = nn - u * ns;
                precise float s = 0.0;
                for (uint c = 0u; c < C; ++c) {
                    uint r = c / P, q = c - (c / P) * P;
                    s += v[(u * P + r) * side + vv * P + q];
                }
                precise float mean = s / float(C);
                precise float e = 0.0;
                for (uint c = 0u; c < C; ++c) {
                    uint r = c / P, q = c - (c / P) * P;
                    precise float d = v[(u * P + r) * side + vv * P + q] - mean;
                    e += d * d;
                    if (WRITE_BANDS != 0u)
                        bands[boff + (b * hj + row + u * P + r) * wj + col + vv * P + q] = d;
                }
                acc[NPREV + j] += e;
                v[u * ns + vv] = mean;   // in place: children of later nodes sit at larger indices
                if (WRITE_PYR != 0u)
                    dst[poff + (b * hn + row / P + u) * wn + col / P + vv] = mean;
            }
            boff += pc.nb * hj * wj;
            poff += pc.nb * hn * wn;
            hj = hn; wj = wn; side = ns;
            row /= P; col /= P;
        }
        lev[LB + n] = v[0];
    }

    // ---- levels a+M+1 .. a+K in shared memory.
    uint base_in = 0u, nodes_in = NM, side_in = SMT;
    uint hj = pc.h, wj = pc.w, boff = pc.bands_off, poff = pc.dst_off;
    for (uint j = 0u; j < M; ++j) {          // level a+M bookkeeping
        uint hn = (DIMS == 2u) ? hj / P : 1u, wn = wj / P;
        boff += pc.nb * hj * wj;
        poff += pc.nb * hn * wn;
        hj = hn; wj = wn;
    }
    uint org = T / SM;                        // tile side at the current level
    for (uint j = M; j < K; ++j) {
        barrier();
        uint nodes = nodes_in / C, side = side_in / P, base_out = base_in + nodes_in;
        uint hn = (DIMS == 2u) ? hj / P : 1u, wn = wj / P;
        uint row0 = (DIMS == 2u) ? ty * org : 0u, col0 = tx * org;
        for (uint n = tid; n < (live ? nodes : 0u); n += LPT) {
            uint u = (DIMS == 2u) ? n / side : 0u;
            uint vv = n - u * side;
            float vals[C];
            precise float s = 0.0;
            for (uint c = 0u; c < C; ++c) {
                uint r = c / P, q = c - (c / P) * P;
                float x = lev[LB + base_in + (u * P + r) * side_in + vv * P + q];
                vals[c] = x;
                s += x;
            }
            precise float mean = s / float(C);
            precise float e = 0.0;
            for (uint c = 0u; c < C; ++c) {
                uint r = c / P, q = c - (c / P) * P;
                precise float d = vals[c] - mean;
                e += d * d;
                if (WRITE_BANDS != 0u)
                    bands[boff + (b * hj + row0 + u * P + r) * wj + col0 + vv * P + q] = d;
            }
            acc[NPREV + j] += e;
            lev[LB + base_out + n] = mean;
            if (WRITE_PYR != 0u)
                dst[poff + (b * hn + row0 / P + u) * wn + col0 / P + vv] = mean;
        }
        boff += pc.nb * hj * wj;
        poff += pc.nb * hn * wn;
        hj = hn; wj = wn; org /= P;
        base_in = base_out; nodes_in = nodes; side_in = side;
    }
    barrier();
    if (tid == 0u && live) {
        const float top = lev[LB + base_in];  // A^(a+K) of this tile
        if (FINAL != 0u) acc[NV - 1u] = top * top;
        if (FINAL != 0u && WRITE_BANDS != 0u) bands[boff + tile] = top;
#ifdef STATS
        if (FINAL != 0u) {
            float leaves = 1.0;   // P^(L*DIMS) leaves under the top node
            for (uint l = 0u; l < pc.L; ++l) leaves *= float(C);
            st[pc.stats_off + tile * 4u] = top * leaves;
        }
#endif
        if (FINAL == 0u && WRITE_PYR == 0u) dst[pc.dst_off + tile] = top;
    }

    // ---- reduction of the NR values per tile: chunks of LPT / R1, then R1 chunks (2 barriers).
    for (uint v = 0u; v < NR; ++v) red[RB + v * LPT + tid] = acc[v];
    barrier();
    const uint CL = LPT / R1;
    for (uint qv = tid; qv < NR * R1; qv += LPT) {
        uint v = qv / R1, c = qv - (qv / R1) * R1;
        precise float s = red[RB + v * LPT + c * CL];
        for (uint i = 1u; i < CL; ++i) s = combine(v, s, red[RB + v * LPT + c * CL + i]);
        red2[slot * NR * R1 + qv] = s;
    }
    barrier();
    for (uint v = tid; v < (live ? NR : 0u); v += LPT) {
        precise float total = red2[slot * NR * R1 + v * R1];
        for (uint c = 1u; c < R1; ++c) total = combine(v, total, red2[slot * NR * R1 + v * R1 + c]);
#ifdef STATS
        if (FINAL != 0u && v >= NV) {
            st[pc.stats_off + tile * 4u + 1u + (v - NV)] = total;
            continue;
        }
#endif
        if (FINAL != 0u) {
            float wgt = 1.0;  // P^(v*DIMS) (levels) and P^(L*DIMS) (coarse, v == L)
            for (uint l = 0u; l < v; ++l) wgt *= float(C);
            precise float weighted = total * wgt;
            pout[pc.pout_off + tile * NV + v] = weighted;
        } else {
            pout[pc.pout_off + v * ntiles + tile] = total;
        }
    }
}
