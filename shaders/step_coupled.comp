#version 450
// Band-coupled (nonlinear) tree operator, SPEC 3.2, fused like step_tree.comp (same state layout:
// the band coefficients of a subtree per invocation, many steps per dispatch, observables in-kernel).
// With leaf-resolution bands X_b (the band-b detail on the leaf's path) and Y_b = rates[b] X_b:
//   x'(v) = c + sum_b x_b'(v) = c + sum_b (Y_b + eps * w_b * phi(X_b) |Y_b|),  w_b = sum_{b' != b} C[b', b]
// (the coupling sum regrouped by source band: O(L) work per leaf), accumulated top-down over the
// subtree, then the new leaves are decomposed again (the chain above a subtree comes from the other
// invocations' subtree means: subgroup shuffles or shared memory). eps = 0 runs the tree step itself
// (exactly tree diffusion). phi: PHI spec constant (tanh, sign, square).
#define COUPLED 1
#extension GL_GOOGLE_include_directive : require
#include "tree_fused.glsl"
