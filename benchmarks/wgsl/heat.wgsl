// Peer kernel for benchmarks only: one explicit heat step, 5-point periodic Laplacian, one cell per invocation.
struct Params { h: u32, w: u32, alpha: f32, pad: u32 };
@group(0) @binding(0) var<storage, read> u: array<f32>;
@group(0) @binding(1) var<storage, read_write> o: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(16, 16)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
    if (g.x >= p.w || g.y >= p.h) { return; }
    let i = g.y * p.w + g.x;
    let l = g.y * p.w + (g.x + p.w - 1u) % p.w;
    let r = g.y * p.w + (g.x + 1u) % p.w;
    let t = ((g.y + p.h - 1u) % p.h) * p.w + g.x;
    let d = ((g.y + 1u) % p.h) * p.w + g.x;
    o[i] = u[i] + p.alpha * (u[l] + u[r] + u[t] + u[d] - 4.0 * u[i]);
}
