// The fused tree kernels' body (step_tree.comp, and step_coupled.comp with COUPLED defined):
// see step_tree.comp for the layout of the state and the reductions.
// SUBGROUPS (a define; only with REDUCE 1): the subgroup extensions and the shuffle reductions. The
// other layouts compile without them, so their SPIR-V declares no subgroup capability at all.
// vkbands: variants SUBGROUPS   (compiled into the wheel with and without; see engine/shaders.py)
//
// Arithmetic is `precise` (SPIR-V NoContraction: no fused multiply-add, no reassociation) wherever it
// makes the band state, the leaves or an accumulator, so a value does not depend on what else a
// pipeline holds: step_coupled.comp with eps = 0 gives step_tree.comp's results bit for bit on any
// driver, and GPUs round like the float32 NumPy reference (one rounding per operation). It is spelled
// on locals (`precise float t = ...; arr[i] = t;`): glslang emits invalid SPIR-V for `precise` global
// arrays used in several functions.
#extension GL_GOOGLE_include_directive : require
#ifdef SUBGROUPS
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#endif
#include "common.glsl"

layout(constant_id = 0) const uint LOCAL_X = 27;  // TPF * FPW (REDUCE 1: SG * subgroups)
layout(constant_id = 1) const uint P = 3;         // arity
layout(constant_id = 2) const uint DIMS = 1;
layout(constant_id = 3) const uint L = 6;         // levels
layout(constant_id = 4) const uint Q = 3;         // P**DIMS
layout(constant_id = 5) const uint N = 729;       // leaves per field
layout(constant_id = 6) const uint SIDE = 729;    // P**L (row length of a 2-D field)
layout(constant_id = 7) const uint M = 3;         // levels held inside one invocation (1..L)
layout(constant_id = 8) const uint QM = 27;       // Q**M leaves per invocation
layout(constant_id = 9) const uint LOC = 39;      // QM + QM/Q + ... + Q local details
layout(constant_id = 10) const uint UPS = 40;     // TPF + TPF/Q + ... + 1 (upper pyramid)
layout(constant_id = 11) const uint TPF = 27;     // invocations per field (N / QM)
layout(constant_id = 12) const uint FPW = 1;      // fields per workgroup
layout(constant_id = 13) const uint REDUCE = 2;   // 0 none, 1 subgroup shuffles, 2 shared memory
layout(constant_id = 14) const uint PHI = 0;      // coupled: 0 tanh, 1 sign, 2 square
layout(constant_id = 15) const uint RED_BUFS = 2; // mode 2: 2 = double-buffered partials (one barrier
                                                  // per observation), 1 = single buffer (two)
layout(constant_id = 16) const uint SG = 1;       // mode 1: the pipeline's required subgroup size
                                                  // (LOCAL_X = SG * subgroups; SG / TPF fields each)
layout(local_size_x_id = 0) in;

const uint UP = L - M;
const uint KO = L + 5u;        // observables row
const uint RK = L + 3u;        // partials per invocation: E_0..E_{L-1}, min, max, nonfinite
#ifdef COUPLED
#define PS (2u * L + 1u)       // parameters per member: rates (L), w (L), eps
#else
#define PS L                   // parameters per member: rates (L) (a macro: a `const` copy of a spec
                               // constant would take over its name in the SPIR-V)
#endif

layout(std430, binding = 0) buffer X { float x[]; };                   // (B, N) natural layout, in place
// (B, PS): one row per batch member (shared values are repeated in every row, SPEC 3.2b), so each
// field reads its own member's row and a batch computes exactly what separate runs do
layout(std430, binding = 1) readonly buffer Rates { float rates[]; };
layout(std430, binding = 2) writeonly buffer Obs { float obs[]; };     // (rows, B, L + 5)
layout(std430, binding = 3) writeonly buffer Snap { float snap[]; };   // (rows, B, N)
layout(std430, binding = 4) buffer Coef { float coef[]; };            // (B, TPF, LOC + UP + 1) band state

layout(push_constant) uniform Push {
    uint batch;          // fields
    uint steps;          // steps in this dispatch
    uint every;          // observe after step k when k % every == 0 (0: never)
    uint snap_every;     // snapshot after step k when k % snap_every == 0 (0: never)
    uint observe_first;  // 1: observables of the incoming state into row 0 first
    uint snap_first;     // 1: snapshot of the incoming state into row 0 first
    uint load_coef;      // 1: start from the band state in coef (exact), 0: decompose the leaves x
    uint row0;           // first observables row of this dispatch
    uint srow0;          // first snapshot row of this dispatch
    uint k0;             // steps already done in this chunk: observe after local step k when (k0 + k) % every == 0
    uint write_x;        // 1: write the leaves back to x at the end (the last dispatch of a recording)
    uint b0;             // first field of this dispatch (a recording may split the batch over dispatches)
    uint nb;             // fields of this dispatch: b0 .. b0 + nb - 1 (row indices still use `batch`)
    uint minmax;         // 1: min / max over the leaves (a reconstruction per observation); 0: NaN there,
                         // and the NaN/Inf flag from the band energies and c (no leaves needed)
} pc;

shared float sm[REDUCE == 2u ? 2u * TPF : 1u];             // subtree means (double-buffered)
shared float red[REDUCE == 2u ? RED_BUFS * TPF * RK : 1u];  // partials (mode 2), 1 or 2 buffers

float d[LOC];              // local details, level 0 first
float lam[L];              // rates
#ifdef COUPLED
float wcol[L];             // coupling weights w_b = sum_{b' != b} C[b', b]
float eps;                 // coupling strength of this field's member (0: exactly tree diffusion)
#endif
float up[UP + 1u];         // ancestor details d^(M..L-1), then c
float uw[UP + 1u];         // energy weight of up[k] in this invocation (Q**(M+k) or 0)
float leaf[QM];            // scratch: leaf values of the subtree
float part[RK];            // observables partials of this invocation
// Observation blocks (the tree step, minmax = 0): BLOCK observations computed in one pass over the
// coefficients (block_run), their energy partials in bpart[] (row s at s * L).
const uint BLOCK = 8u;      // rows of a block (16 when every step is observed: BLOCK1)
const uint BLOCK1 = 16u;
float bpart[BLOCK1 * L];
// fin: the band energies of the state last observed (minmax = 0) were all finite and so was c
// (uniform over a field: REDUCE 0 from its energies, REDUCE 1 from lane `base`'s reduced sums; a
// finite sum of non-negative partials has finite partials). With |rates| <= 1 no coefficient grows,
// so every later state's squares, sums and partials are finite too (float rounding is monotone): its
// observations never need the leaves, which lets a block compute several rows in one pass. Cleared
// by any other step; kept in the band state between dispatches (coef slot LOC + UP + 1).
bool fin = false;

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
#define RCHILD(ci) { uint ii = ci; precise float t = leaf[ii / Q] + d[off + ii]; leaf[ii] = t; }
void reconstruct() {
    precise float o = up[UP];
    for (uint k = 0u; k < UP; ++k) o += up[k];
    // value(level l, j) = value(level l+1, j / Q) + d^(l)[j], written into leaf[] from the top;
    // leaf[j / Q] is read before it is overwritten (descending j, j / Q <= j).
    uint n = Q, off = LOC - Q;
    for (uint c = 0u; c < Q; ++c) { precise float t = o + d[off + c]; leaf[c] = t; }
    for (uint l = M - 1u; l > 0u; --l) {
        off -= n * Q;
        // children i of the level, descending (so leaf[i / Q] is still the parent's value: i / Q < i, or
        // i = 0, read first), four per iteration (drivers cap loop iterations, not work)
        uint i = n * Q;
        for (; i >= 4u; i -= 4u) { RCHILD(i - 1u) RCHILD(i - 2u) RCHILD(i - 3u) RCHILD(i - 4u) }
        for (; i > 0u; --i) RCHILD(i - 1u)
        n *= Q;
    }
}

#define NAN uintBitsToFloat(0x7fc00000u)

float combine(uint k, float a, float b) { return k < L ? a + b : k == L ? min(a, b) : max(a, b); }

// Band energies of this invocation's coefficients into part[0..L) (the step loop fuses the same
// sums into its last multiply when a run ends in an observation).
void band_energies() {
    uint n = QM, off = 0u;
    float w = 1.0;
    for (uint l = 0u; l < M; ++l) {
        precise float s = 0.0;
        for (uint j = 0u; j < n; ++j) s += d[off + j] * d[off + j];
        precise float sw = s * w;
        part[l] = sw;
        off += n; n /= Q; w *= float(Q);
    }
    for (uint k = 0u; k < UP; ++k) { precise float t = up[k] * up[k] * uw[k]; part[M + k] = t; }
}

// part[0..L) must hold the band energies (band_energies() or the fused step loop).
#define SCAN(ji) { float v = leaf[ji]; if (isnan(v) || isinf(v)) bad = 1.0; else { mn = min(mn, v); mx = max(mx, v); } }
void observe(uint row, uint b, uint lt, uint parity) {
    float mn = 1.0 / 0.0, mx = -1.0 / 0.0, bad = 0.0;
    // Without min / max the leaves are needed only when an energy is not finite (a NaN/Inf
    // coefficient, or a square past float32): then the flag is decided on the leaves as with min / max,
    // so it is the same either way, and the common (finite) observation never reconstructs.
    bool leaves = pc.minmax != 0u || isnan(up[UP]) || isinf(up[UP]);
    for (uint l = 0u; l < L; ++l) if (isnan(part[l]) || isinf(part[l])) leaves = true;
    if (leaves) {
        reconstruct();
        uint j = 0u;        // leaves in order, four per iteration
        for (; j + 4u <= QM; j += 4u) { SCAN(j) SCAN(j + 1u) SCAN(j + 2u) SCAN(j + 3u) }
        for (; j < QM; ++j) SCAN(j)
    }
    if (pc.minmax == 0u) { mn = NAN; mx = NAN; }
    part[L] = mn; part[L + 1u] = mx; part[L + 2u] = bad;
    uint o = (row * pc.batch + b) * KO;
    precise float c = up[UP];
    bool cfin = !(isnan(c) || isinf(c));
#ifdef SUBGROUPS
    if (REDUCE == 1u) {                     // the field's TPF invocations are consecutive lanes
        uint base = gl_SubgroupInvocationID - lt;
        for (uint k = 0u; k < RK; ++k) {
            precise float acc = part[k];
            for (uint j = 1u; j < TPF; ++j)
                acc = combine(k, acc, subgroupShuffle(part[k], base + (lt + j) % TPF));
            part[k] = acc;
        }
        if (pc.minmax == 0u && !fin) {
            // the field's sums (finite: so is every partial) as lane `base` has them: uniform
            bool f = cfin;
            for (uint l = 0u; l < L; ++l) if (isnan(part[l]) || isinf(part[l])) f = false;
            fin = subgroupShuffle(f ? 1u : 0u, base) != 0u;
        }
    } else
#endif
    if (REDUCE == 2u) {
        // invocation k combines quantity k over the field and writes it
        uint pb = RED_BUFS == 2u ? parity : 0u;
        uint rb = (pb * TPF + lt) * RK;
        for (uint k = 0u; k < RK; ++k) red[rb + k] = part[k];
        barrier();
        for (uint k = lt; k < RK; k += TPF) {
            uint r0 = pb * TPF * RK + k;
            precise float acc = red[r0];
            for (uint i = 1u; i < TPF; ++i) acc = combine(k, acc, red[r0 + i * RK]);
            if (k < L) obs[o + k] = acc;
            else if (k == L) obs[o + L + 2u] = pc.minmax != 0u ? acc : NAN;   // min(NaN, NaN) is undefined
            else if (k == L + 1u) obs[o + L + 3u] = pc.minmax != 0u ? acc : NAN;
            else obs[o + L + 4u] = max(acc, (isnan(c) || isinf(c)) ? 1.0 : 0.0);
        }
        if (RED_BUFS == 1u) barrier();
        if (lt == 0u) {
            obs[o + L] = float(N) * c * c;
            obs[o + L + 1u] = float(N) * c;
        }
        return;
    }
    if (REDUCE == 0u && pc.minmax == 0u && !fin) {    // TPF == 1: part[] is the field's
        bool f = cfin;
        for (uint l = 0u; l < L; ++l) if (isnan(part[l]) || isinf(part[l])) f = false;
        fin = f;
    }
    if (lt == 0u) {
        for (uint l = 0u; l < L; ++l) obs[o + l] = part[l];
        obs[o + L] = float(N) * c * c;
        obs[o + L + 1u] = float(N) * c;
        obs[o + L + 2u] = pc.minmax != 0u ? part[L] : NAN;
        obs[o + L + 3u] = pc.minmax != 0u ? part[L + 1u] : NAN;
        obs[o + L + 4u] = max(part[L + 2u], (isnan(c) || isinf(c)) ? 1.0 : 0.0);
    }
}

// `rows` observations of the tree step in one pass (16 = BLOCK1 when every step is observed, else 2..8
// = BLOCK; forms by cadence E below), loops interchanged: each coefficient
// is loaded once, multiplied `seg0` times to the first observed step, then `E` times to each next one,
// its square added to that row's band accumulator (registers), and stored once. The same roundings in
// the same order as step by step (each row's sum over a band in the band's order, then times its
// weight). Band energies into bpart[] (row s at s * L).
// cnt multiplications of v by fl: 4 per loop iteration (q = cnt / 4, m = cnt % 4; no loop below 4)
#define MULS(q, m) for (uint r = 0u; r < q; ++r) { v *= fl; v *= fl; v *= fl; v *= fl; } \
                   if (m > 0u) v *= fl; if (m > 1u) v *= fl; if (m > 2u) v *= fl;
#define MUL3(m) { precise float t_ = v * fl; v = m > 0u ? t_ : v; t_ = v * fl; v = m > 1u ? t_ : v; \
                 t_ = v * fl; v = m > 2u ? t_ : v; }
#define BROW(s, e) if (rows > s) { MUL3(em) e += v * v; }
#define BROW1(e) v *= fl; e += v * v;
#define BROWF(e) MULS(eq, em) e += v * v;
#define MUL4IF(c) { precise float t_ = v * fl; t_ *= fl; t_ *= fl; t_ *= fl; v = (c) ? t_ : v; }
#define MUL11(q, m) MUL4IF(q > 0u) MUL4IF(q > 1u) MUL3(m)
#define BROWM4(e) v *= fl; v *= fl; v *= fl; v *= fl; MUL3(em) e += v * v;
#define BROWM8(e) v *= fl; v *= fl; v *= fl; v *= fl; v *= fl; v *= fl; v *= fl; v *= fl; MUL3(em) e += v * v;
// one coefficient of a block (index ji), in each form
#define BONES(ji) { precise float v = d[ji]; \
    BROW1(e0) BROW1(e1) BROW1(e2) BROW1(e3) BROW1(e4) BROW1(e5) BROW1(e6) BROW1(e7) \
    BROW1(e8) BROW1(e9) BROW1(e10) BROW1(e11) BROW1(e12) BROW1(e13) BROW1(e14) BROW1(e15) d[ji] = v; }
#define BR2(e) v *= fl; v *= fl; e += v * v;
#define BR3(e) v *= fl; v *= fl; v *= fl; e += v * v;
#define BR4(e) v *= fl; v *= fl; v *= fl; v *= fl; e += v * v;
#define BE2(ji) { precise float v = d[ji]; MUL3(sr) e0 += v * v; \
    BR2(e1) BR2(e2) BR2(e3) BR2(e4) BR2(e5) BR2(e6) BR2(e7) d[ji] = v; }
#define BE3(ji) { precise float v = d[ji]; MUL3(sr) e0 += v * v; \
    BR3(e1) BR3(e2) BR3(e3) BR3(e4) BR3(e5) BR3(e6) BR3(e7) d[ji] = v; }
#define BE4(ji) { precise float v = d[ji]; MUL11(sq, sr) e0 += v * v; \
    BR4(e1) BR4(e2) BR4(e3) BR4(e4) BR4(e5) BR4(e6) BR4(e7) d[ji] = v; }
#define BONES8(ji) { precise float v = d[ji]; \
    BROW1(e0) BROW1(e1) BROW1(e2) BROW1(e3) BROW1(e4) BROW1(e5) BROW1(e6) BROW1(e7) d[ji] = v; }
#define BSMALL(ji) { precise float v = d[ji]; MUL3(sr) e0 += v * v; \
    BROW(1u, e1) BROW(2u, e2) BROW(3u, e3) BROW(4u, e4) BROW(5u, e5) BROW(6u, e6) BROW(7u, e7) d[ji] = v; }
#define BMID4(ji) { precise float v = d[ji]; MUL11(sq, sr) e0 += v * v; \
    BROWM4(e1) BROWM4(e2) BROWM4(e3) BROWM4(e4) BROWM4(e5) BROWM4(e6) BROWM4(e7) d[ji] = v; }
#define BMID8(ji) { precise float v = d[ji]; MUL11(sq, sr) e0 += v * v; \
    BROWM8(e1) BROWM8(e2) BROWM8(e3) BROWM8(e4) BROWM8(e5) BROWM8(e6) BROWM8(e7) d[ji] = v; }
void block_run(uint seg0, uint E, uint rows) {
    uint n = QM, off = 0u;
    float w = 1.0;
    // the forms (no loop inside the coefficient loop but the last's: see RUNC in main):
    bool ones = E == 1u && seg0 == 1u && rows == BLOCK1;   // every step observed
    bool small = E < 4u;           // (seg0 <= E) no loop of multiplications, rows guarded; else
                                   // rows == BLOCK (main):
                                   // E < 12: no loop of multiplications; else with the loops
    uint sq = seg0 / 4u, sr = seg0 % 4u, eq = E / 4u, em = E % 4u;
    for (uint l = 0u; l < M; ++l) {
        float fl = lam[l];
        precise float e0 = 0.0, e1 = 0.0, e2 = 0.0, e3 = 0.0, e4 = 0.0, e5 = 0.0, e6 = 0.0, e7 = 0.0;
        precise float e8 = 0.0, e9 = 0.0, e10 = 0.0, e11 = 0.0, e12 = 0.0, e13 = 0.0, e14 = 0.0, e15 = 0.0;
        // the band's coefficients in order (one loop over the band: drivers cap loop iterations)
        uint j = off;
        if (ones) {
            for (; j + 4u <= off + n; j += 4u) { BONES(j) BONES(j + 1u) BONES(j + 2u) BONES(j + 3u) }
            for (; j < off + n; ++j) BONES(j)
        } else if (E == 1u && rows == BLOCK) {        // (seg0 <= E)
            for (; j + 4u <= off + n; j += 4u) { BONES8(j) BONES8(j + 1u) BONES8(j + 2u) BONES8(j + 3u) }
            for (; j < off + n; ++j) BONES8(j)
        } else if (E == 2u && rows == BLOCK) {
            for (; j + 2u <= off + n; j += 2u) { BE2(j) BE2(j + 1u) }
            for (; j < off + n; ++j) BE2(j)
        } else if (E == 3u && rows == BLOCK) {
            for (; j + 2u <= off + n; j += 2u) { BE3(j) BE3(j + 1u) }
            for (; j < off + n; ++j) BE3(j)
        } else if (E == 4u) {
            for (; j + 2u <= off + n; j += 2u) { BE4(j) BE4(j + 1u) }
            for (; j < off + n; ++j) BE4(j)
        } else if (small) {
            for (; j + 2u <= off + n; j += 2u) { BSMALL(j) BSMALL(j + 1u) }
            for (; j < off + n; ++j) BSMALL(j)
        } else if (E < 8u) {
            for (; j + 2u <= off + n; j += 2u) { BMID4(j) BMID4(j + 1u) }
            for (; j < off + n; ++j) BMID4(j)
        } else if (E < 12u) {
            for (; j + 2u <= off + n; j += 2u) { BMID8(j) BMID8(j + 1u) }
            for (; j < off + n; ++j) BMID8(j)
        } else if (sq < 3u) {      // (no loop for a first segment under 12 steps either)
            for (; j < off + n; ++j) {
                precise float v = d[j];
                MUL11(sq, sr) e0 += v * v;
                BROWF(e1) BROWF(e2) BROWF(e3) BROWF(e4) BROWF(e5) BROWF(e6) BROWF(e7)
                d[j] = v;
            }
        } else {
            for (; j < off + n; ++j) {
                precise float v = d[j];
                MULS(sq, sr) e0 += v * v;
                BROWF(e1) BROWF(e2) BROWF(e3) BROWF(e4) BROWF(e5) BROWF(e6) BROWF(e7)
                d[j] = v;
            }
        }
        precise float t0 = e0 * w, t1 = e1 * w, t2 = e2 * w, t3 = e3 * w, t4 = e4 * w, t5 = e5 * w, t6 = e6 * w,
                      t7 = e7 * w;
        bpart[l] = t0; bpart[L + l] = t1; bpart[2u * L + l] = t2; bpart[3u * L + l] = t3;
        bpart[4u * L + l] = t4; bpart[5u * L + l] = t5; bpart[6u * L + l] = t6; bpart[7u * L + l] = t7;
        if (ones) {
            precise float t8 = e8 * w, t9 = e9 * w, t10 = e10 * w, t11 = e11 * w, t12 = e12 * w, t13 = e13 * w,
                          t14 = e14 * w, t15 = e15 * w;
            bpart[8u * L + l] = t8; bpart[9u * L + l] = t9; bpart[10u * L + l] = t10; bpart[11u * L + l] = t11;
            bpart[12u * L + l] = t12; bpart[13u * L + l] = t13; bpart[14u * L + l] = t14; bpart[15u * L + l] = t15;
        }
        off += n; n /= Q; w *= float(Q);
    }
    for (uint i = 0u; i < UP; ++i) {
        precise float v = up[i];
        float fu = lam[M + i];
        for (uint s = 0u; s < rows; ++s) {
            uint rr = s == 0u ? seg0 : E;
            for (uint r = 0u; r < rr; ++r) v *= fu;
            precise float t = v * v * uw[i];
            bpart[s * L + M + i] = t;
        }
        up[i] = v;
    }
}

// The `rows` observations of a block (bpart[]): what observe() writes for them, knowing that every
// energy partial and c are finite (fin): no leaves, min / max NaN, nonfinite 0. The same reductions
// in the same order. REDUCE 0 and 1 only (see `blocks` in main()).
void observe_block(uint row0, uint rows, uint b, uint lt) {
    precise float c = up[UP];
    precise float cm = float(N) * c;
    precise float cc = cm * c;
    for (uint s = 0u; s < rows; ++s) {
        uint o = ((row0 + s) * pc.batch + b) * KO;
#ifdef SUBGROUPS
        if (REDUCE == 1u) {
            uint base = gl_SubgroupInvocationID - lt;
            for (uint k = 0u; k < L; ++k) {
                float p = bpart[s * L + k];
                precise float acc = p;
                for (uint j = 1u; j < TPF; ++j) acc += subgroupShuffle(p, base + (lt + j) % TPF);
                if (lt == 0u) obs[o + k] = acc;
            }
        }
#endif
        if (REDUCE == 0u) for (uint k = 0u; k < L; ++k) obs[o + k] = bpart[s * L + k];
        if (lt == 0u) {
            obs[o + L] = cc;
            obs[o + L + 1u] = cm;
            obs[o + L + 2u] = NAN;
            obs[o + L + 3u] = NAN;
            obs[o + L + 4u] = 0.0;
        }
    }
}

void write_leaves(uint b, uint lt, uint row, bool to_snap) {
    reconstruct();
    uint t0 = lt * QM;
    for (uint j = 0u; j < QM; ++j) {
        uint i = natural_index(t0 + j);
        float v = leaf[j];
        if (to_snap) snap[(row * pc.batch + b) * N + i] = v;
        else x[b * N + i] = v;
    }
}

// d[0..QM) holds the subtree's leaves: block means bottom-up (level l at its offset), then the
// details in place, finest first: d^(l)[j] = A^(l)[j] - A^(l+1)[j / Q]. Returns the subtree mean.
float decompose_local() {
    const float invq = 1.0 / float(Q);
    uint n = QM, off = 0u;
    precise float mean = 0.0;
    for (uint l = 0u; l < M; ++l) {
        uint nn = n / Q;
        if (l + 1u < M) {
            for (uint j = 0u; j < nn; ++j) {
                precise float s = 0.0;
                for (uint c = 0u; c < Q; ++c) s += d[off + j * Q + c];
                precise float m = s * invq;
                d[off + n + j] = m;
            }
        } else {
            precise float s = 0.0;
            for (uint c = 0u; c < Q; ++c) s += d[off + c];
            mean = s * invq;
        }
        off += n; n = nn;
    }
    n = QM; off = 0u;
    for (uint l = 0u; l < M; ++l) {
        if (l + 1u < M) {
            for (uint j = 0u; j < n; j += Q) {
                float parent = d[off + n + j / Q];
                for (uint c = 0u; c < Q; ++c) { precise float t = d[off + j + c] - parent; d[off + j + c] = t; }
            }
        } else {
            for (uint c = 0u; c < Q; ++c) { precise float t = d[off + c] - mean; d[off + c] = t; }
        }
        off += n; n /= Q;
    }
    return mean;
}

// up[] <- the chain above the subtree, from the TPF subtree means of the field (subgroup shuffles or
// shared memory, buffer `parity` of sm). Also sets the energy weights uw[].
void build_chain(float mean, uint lt, uint parity) {
    const float invq = 1.0 / float(Q);
    if (UP == 0u) {
        up[UP] = mean;
        uw[UP] = 0.0;
        return;
    }
    precise float um[UPS];
    if (REDUCE == 2u) {
        sm[parity * TPF + lt] = mean;
        barrier();
        for (uint j = 0u; j < TPF; ++j) um[j] = sm[parity * TPF + j];
    }
#ifdef SUBGROUPS
    else {
        uint base = gl_SubgroupInvocationID - lt;
        for (uint j = 0u; j < TPF; ++j) um[j] = subgroupShuffle(mean, base + j);
    }
#endif
    uint so = 0u, n = TPF;
    for (uint k = 0u; k < UP; ++k) {
        uint nn = n / Q;
        for (uint j = 0u; j < nn; ++j) {
            precise float s = 0.0;
            for (uint c = 0u; c < Q; ++c) s += um[so + j * Q + c];
            um[so + n + j] = s * invq;
        }
        so += n; n = nn;
    }
    so = 0u; n = TPF;
    uint node = lt, qk = 1u;
    for (uint k = 0u; k < UP; ++k) {
        precise float t = um[so + node] - um[so + n + node / Q];
        up[k] = t;
        uw[k] = (lt % qk == 0u) ? float(QM * qk) : 0.0;
        so += n; n /= Q; node /= Q; qk *= Q;
    }
    up[UP] = um[UPS - 1u];
    uw[UP] = 0.0;
}

#ifdef COUPLED
float phi(float v) {
    if (PHI == 0u) return tanh(v);
    if (PHI == 1u) return sign(v);
    return v * v;
}

// New value of a band coefficient's contribution: g_b(x) = lam_b x + eps w_b phi(x) |lam_b x|.
float gb(uint l, float v) {
    precise float y = lam[l] * v;
    precise float g = y + eps * wcol[l] * phi(v) * abs(y);
    return g;
}

// One band-coupled step (SPEC 3.2) of this invocation's subtree: the new leaves are
// c + sum_b g_b(X_b), X_b = the band-b detail on the leaf's path (a sum separable over bands, so it is
// accumulated top-down like reconstruct()); then the leaves are decomposed again.
void coupled_step(uint lt, uint parity) {
    precise float o = up[UP];
    for (uint k = 0u; k < UP; ++k) o += gb(M + k, up[k]);
    uint n = Q, off = LOC - Q;
    for (uint c = 0u; c < Q; ++c) { precise float t = o + gb(M - 1u, d[off + c]); leaf[c] = t; }
    for (uint l = M - 1u; l > 0u; --l) {
        off -= n * Q;
        for (uint p = n; p-- > 0u;) {
            float v = leaf[p];
            for (uint c = Q; c-- > 0u;) {
                precise float t = v + gb(l - 1u, d[off + p * Q + c]);
                leaf[p * Q + c] = t;
            }
        }
        n *= Q;
    }
    for (uint j = 0u; j < QM; ++j) d[j] = leaf[j];
    build_chain(decompose_local(), lt, parity);
}
#endif

// One coefficient of the run loop in main(): `run` multiplications, then its square into e.
// Three forms: with the loop of 4 multiplications (run >= 8), 4..7 and < 4 without (on llvmpipe a loop costs an
// iteration of its cap even where an `if` around it is false: keep such branches out of per-coefficient code).
#define RUNS(ix) { \
    uint i_ = ix; \
    precise float v = d[i_]; \
    if (run1 > 0u) v *= fl; \
    if (run1 > 1u) v *= fl; \
    if (run1 > 2u) v *= fl; \
    d[i_] = v; \
    e += v * v; }
#define RUN4(ix) { \
    uint i_ = ix; \
    precise float v = d[i_]; \
    v *= fl; v *= fl; v *= fl; v *= fl; \
    if (run1 > 0u) v *= fl; \
    if (run1 > 1u) v *= fl; \
    if (run1 > 2u) v *= fl; \
    d[i_] = v; \
    e += v * v; }
#define RUNC(ix) { \
    uint i_ = ix; \
    precise float v = d[i_]; \
    for (uint s = 0u; s < run4; ++s) { v *= fl; v *= fl; v *= fl; v *= fl; } \
    if (run1 > 0u) v *= fl; \
    if (run1 > 1u) v *= fl; \
    if (run1 > 2u) v *= fl; \
    d[i_] = v; \
    e += v * v; }

void main() {
    uint tid = gl_LocalInvocationID.x;
    uint lt = tid % TPF, f = tid / TPF;   // invocation within its field, field within the workgroup
#ifdef SUBGROUPS
    if (REDUCE == 1u) {
        // By subgroup, not by local index (how local indices map to subgroups is the driver's
        // choice): subgroup s holds fields s * FPS .. s * FPS + FPS - 1, each on TPF consecutive
        // lanes. The host requires SG-wide full subgroups (VK_EXT_subgroup_size_control).
        const uint FPS = SG / TPF;
        uint lane = gl_SubgroupInvocationID;
        if (lane >= FPS * TPF) return;    // spare lanes
        lt = lane % TPF;
        f = gl_SubgroupID * FPS + lane / TPF;
    }
#endif
    uint bl = flat_group_id() * FPW + f;  // field within this dispatch
    if (REDUCE == 2u) {
        if (bl >= pc.nb) return;          // one field per workgroup: uniform
    } else if (bl >= pc.nb || f >= FPW) {
        return;                           // no barriers in modes 0/1: idle lanes just leave
    }
    uint b = pc.b0 + bl;
    uint prow = b * PS;                   // this member's parameters
    for (uint l = 0u; l < L; ++l) lam[l] = rates[prow + l];
#ifdef COUPLED
    for (uint l = 0u; l < L; ++l) wcol[l] = rates[prow + L + l];
    eps = rates[prow + 2u * L];
#endif
    // `safe` steps grow no coefficient's magnitude: the tree step (not a coupled one)
    // with no rate above 1 in magnitude (fin survives them; other steps clear it). Observation blocks:
    // safe steps and minmax = 0.
    bool safe = true;
    for (uint l = 0u; l < L; ++l) if (!(abs(lam[l]) <= 1.0)) safe = false;
#ifdef COUPLED
    if (eps != 0.0) safe = false;
#endif
    // Not with REDUCE 2 (yet): on llvmpipe, a field of TPF = 9 invocations (a full subgroup of 8 and a
    // lone one) running two blocks in a row, whatever the blocks' barriers (one per row through
    // observe(), or two per block), left the lone invocation behind: its leaves and band state never
    // written. Not understood; mode 2 observes step by step as before.
    bool blocks = safe && pc.every != 0u && pc.minmax == 0u && REDUCE != 2u;
    const uint CS = LOC + UP + 2u;                 // band state floats per invocation (+ the fin flag)
    // value i of invocation (b, lt) at i * (batch * TPF) + b * TPF + lt: neighbouring invocations (lanes)
    // read and write neighbouring floats
    uint cbase = b * TPF + lt, cs = pc.batch * TPF;
    if (pc.load_coef != 0u) {
        for (uint i = 0u; i < LOC; ++i) d[i] = coef[cbase + i * cs];
        for (uint k = 0u; k <= UP; ++k) up[k] = coef[cbase + (LOC + k) * cs];
        fin = coef[cbase + (LOC + UP + 1u) * cs] != 0.0;
        uint qk = 1u;
        for (uint k = 0u; k < UP; ++k) { uw[k] = (lt % qk == 0u) ? float(QM * qk) : 0.0; qk *= Q; }
    } else {
        // load the subtree's leaves and decompose them; the chain above it
        uint t0 = lt * QM;
        for (uint j = 0u; j < QM; ++j) d[j] = x[b * N + natural_index(t0 + j)];
        build_chain(decompose_local(), lt, 0u);
    }
    uw[UP] = 0.0;
    uint n, off;
    uint orow = pc.row0, srow = pc.srow0, parity = 0u, cpar = 1u;
    if (pc.observe_first != 0u) { band_energies(); observe(orow++, b, lt, parity); parity ^= 1u; }
    if (pc.snap_first != 0u) write_leaves(b, lt, srow++, true);
    // Steps run in tight runs up to the next observation or snapshot.
    uint k = 0u;
    while (k < pc.steps) {
        uint stop = pc.steps;
        uint g = pc.k0 + k;
        if (pc.every != 0u) stop = min(stop, (g / pc.every + 1u) * pc.every - pc.k0);
        if (pc.snap_every != 0u) stop = min(stop, (g / pc.snap_every + 1u) * pc.snap_every - pc.k0);
        // up to BLOCK observations before the next snapshot or the end in one pass (fin stays true);
        // no `continue` here: llvmpipe mishandles it in a partly filled subgroup (REDUCE 2, TPF = 9)
        uint rows = 0u, first = 0u;
        if (blocks && fin) {
            uint lim = pc.steps;
            if (pc.snap_every != 0u) lim = min(lim, (g / pc.snap_every + 1u) * pc.snap_every - pc.k0);
            first = (g / pc.every + 1u) * pc.every - pc.k0;     // local step of the next observation
            uint rmax = (lim - first) / pc.every + 1u;
            rows = first > lim ? 0u : pc.every == 1u && rmax >= BLOCK1 ? BLOCK1 : min(BLOCK, rmax);
        }
        if (rows >= BLOCK || (rows >= 2u && pc.every < 4u)) {   // (block_run's forms)
            block_run(first - k, pc.every, rows);
            observe_block(orow, rows, b, lt);
            orow += rows;
            k = first + (rows - 1u) * pc.every;
        } else {
#ifdef COUPLED
        // per field: uniform over a field's invocations (REDUCE 2: its workgroup; REDUCE 1: its lanes,
        // which shuffle only among themselves), so the barriers and shuffles of coupled_step stay safe
        if (eps != 0.0) {
            for (uint r = k; r < stop; ++r) { coupled_step(lt, cpar); cpar ^= 1u; }
            band_energies();
        } else
#endif
        {
            // `run` steps, loops interchanged: each coefficient is multiplied `run` times in a
            // register (the same float32 roundings as step by step, one load/store per run). When the
            // run ends in an observation the band energies are summed on the way.
            uint run = stop - k;
            n = QM; off = 0u;
            float w = 1.0;
            // The run loop is unrolled by 4 (same multiplications in the same order).
            uint run4 = run / 4u, run1 = run % 4u;
            // A band's coefficients in order, four per loop iteration.
            for (uint l = 0u; l < M; ++l) {
                float fl = lam[l];
                precise float e = 0.0;
                uint j = 0u;
                if (run4 > 1u) {
                    for (; j + 4u <= n; j += 4u) { RUNC(off + j) RUNC(off + j + 1u) RUNC(off + j + 2u) RUNC(off + j + 3u) }
                    for (; j < n; ++j) RUNC(off + j)
                } else if (run4 == 1u) {
                    for (; j + 4u <= n; j += 4u) { RUN4(off + j) RUN4(off + j + 1u) RUN4(off + j + 2u) RUN4(off + j + 3u) }
                    for (; j < n; ++j) RUN4(off + j)
                } else {
                    for (; j + 4u <= n; j += 4u) { RUNS(off + j) RUNS(off + j + 1u) RUNS(off + j + 2u) RUNS(off + j + 3u) }
                    for (; j < n; ++j) RUNS(off + j)
                }
                precise float ew = e * w;
                part[l] = ew;
                off += n; n /= Q; w *= float(Q);
            }
            for (uint i = 0u; i < UP; ++i) {
                precise float v = up[i];
                float fu = lam[M + i];
                for (uint s = 0u; s < run; ++s) v *= fu;
                up[i] = v;
                precise float t = v * v * uw[i];
                part[M + i] = t;
            }
        }
        if (!safe) fin = false;
        k = stop;
        g = pc.k0 + k;
        if (pc.every != 0u && g % pc.every == 0u) { observe(orow++, b, lt, parity); parity ^= 1u; }
        }
        g = pc.k0 + k;
        if (pc.snap_every != 0u && g % pc.snap_every == 0u) write_leaves(b, lt, srow++, true);
    }
    for (uint i = 0u; i < LOC; ++i) coef[cbase + i * cs] = d[i];
    for (uint k = 0u; k <= UP; ++k) coef[cbase + (LOC + k) * cs] = up[k];
    coef[cbase + (LOC + UP + 1u) * cs] = fin ? 1.0 : 0.0;
    if (pc.steps > 0u && pc.write_x != 0u) write_leaves(b, lt, 0u, false);   // observe-only: x stays bit-exact
}
