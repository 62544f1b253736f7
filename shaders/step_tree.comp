#version 450
// Tree (ultrametric / p-adic) diffusion, SPEC 3.1, fused: `steps` steps in ONE dispatch, the state
// held in registers / private memory in the band basis.
//
// Leaves are taken in tree order (natural_index: 1-D natural order; 2-D base-P digits of row and
// column interleaved, so a node's Q = P**DIMS children are contiguous). A field is held by TPF
// invocations; invocation lt of a field owns the subtree of QM = Q**M leaves [lt*QM, (lt+1)*QM)
// (TPF = N / QM) and keeps
//   d[]  : the details of levels 0..M-1 inside its subtree (LOC = QM + QM/Q + ... + Q values),
//   up[] : the chain above it: d^(M+k) of its ancestor at level M+k (k < UP = L - M), then c.
// The chain is replicated over the TPF invocations; every copy is multiplied identically and the
// energies count each coefficient once (in the invocation whose lt is divisible by Q**k).
// A step multiplies every d^(l) by rates[l] (c untouched: mass conserved): no communication at all.
// The state never leaves the band basis inside a dispatch, so no round-off moves energy between
// bands: E_l(t) follows rates[l]^(2t) E_l(0) down to float32 underflow.
//
// Observables (every `every` steps): [E_0..E_{L-1}, E_c, mass, min, max, nonfinite], reduced over
// the TPF invocations of a field by REDUCE (chosen on the host, vkbands.systems.TreeSystem._layout):
//   0: TPF == 1 (one invocation holds the whole field; FPW fields per workgroup): nothing to reduce;
//   1: the TPF invocations are consecutive lanes of one subgroup (SG / TPF fields per subgroup, fields
//      indexed by gl_SubgroupID / gl_SubgroupInvocationID): subgroupShuffle sums, no barrier anywhere
//      in the shader. Only with the SUBGROUPS define, in a pipeline that requires SG-wide full
//      subgroups (a driver's default width may differ from pipeline to pipeline);
//   2: one field per workgroup: partials in shared memory, one barrier per observation.
// Modes 0 and 1 compile without any barrier (CPU drivers run barriers as coroutine switches).
// A dispatch runs fields b0 .. b0 + nb - 1 of the batch and `steps` steps: the host splits long
// recordings and big batches so that no dispatch trips a loop-iteration cap or a GPU watchdog.
#extension GL_GOOGLE_include_directive : require
#include "tree_fused.glsl"
