// Peer kernel for benchmarks only: c = a + b with 4 vec4 per invocation (same work split as add.comp).
@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> c: array<vec4<f32>>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let base = wg.x * 1024u + lid.x;
    for (var k = 0u; k < 4u; k++) {
        let i = base + k * 256u;
        if (i < arrayLength(&c)) { c[i] = a[i] + b[i]; }
    }
}
