// Shared pieces of the fused tree kernels (step_tree.comp, step_coupled.comp).
// One workgroup holds one field of N = Q**L leaves in shared memory, in *tree order*: the Q children
// of a node are contiguous (1-D: natural order, Q = P; 2-D: base-P digits of row and column
// interleaved, Q = P*P, so a P x P block is contiguous and the 2-D quadtree becomes a 1-D Q-ary tree).
// The including shader declares LOCAL_X, P, DIMS, L, Q, N, PYR, SIDE (spec constants) and `pyr`.
#ifndef VKBANDS_TREE_COMMON_GLSL
#define VKBANDS_TREE_COMMON_GLSL

// Observables row per field: [E_0 .. E_{L-1}, E_c, mass, min, max, nonfinite]  (L + 5 floats).
const uint KO = L + 5u;
// Reduction scratch: per invocation [E_0 .. E_{L-1}, min, max, nonfinite].
const uint RK = L + 3u;
shared float red[LOCAL_X * RK];
shared uint offs[L + 1u];     // offset of level l in pyr (level l has N / Q**l entries)

void init_offsets() {
    if (gl_LocalInvocationID.x == 0u) {
        uint o = 0u, n = N;
        for (uint l = 0u; l <= L; ++l) { offs[l] = o; o += n; n /= Q; }
    }
}

// Tree-order position of natural (row-major) leaf index i.
uint tree_index(uint i) {
    if (DIMS == 1u) return i;
    uint r = i / SIDE, c = i % SIDE, t = 0u, m = 1u;
    for (uint k = 0u; k < L; ++k) {
        t += ((r % P) * P + (c % P)) * m;
        r /= P; c /= P; m *= Q;
    }
    return t;
}

bool nonfinite(float v) { return isnan(v) || isinf(v); }

// Combine the per-invocation partials in `red` (LOCAL_X must be a power of two); result in red[0..RK).
// Ends with a barrier. Sums for the first L entries, min, max, max (flag).
void reduce_red() {
    uint tid = gl_LocalInvocationID.x;
    barrier();
    for (uint s = LOCAL_X / 2u; s > 0u; s >>= 1u) {
        if (tid < s) {
            uint a = tid * RK, b = (tid + s) * RK;
            for (uint k = 0u; k < L; ++k) red[a + k] += red[b + k];
            red[a + L] = min(red[a + L], red[b + L]);
            red[a + L + 1u] = max(red[a + L + 1u], red[b + L + 1u]);
            red[a + L + 2u] = max(red[a + L + 2u], red[b + L + 2u]);
        }
        barrier();
    }
}

// Block means A^(1..L) from the leaves in pyr[0, N) (ends with a barrier).
void build_means() {
    uint tid = gl_LocalInvocationID.x;
    const float invq = 1.0 / float(Q);
    uint n = N;
    for (uint l = 1u; l <= L; ++l) {
        n /= Q;
        uint src = offs[l - 1u], dst = offs[l];
        for (uint j = tid; j < n; j += LOCAL_X) {
            float s = 0.0;
            for (uint c = 0u; c < Q; ++c) s += pyr[src + j * Q + c];
            pyr[dst + j] = s * invq;
        }
        barrier();
    }
}

#endif
