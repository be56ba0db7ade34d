// Family `binary`: elementwise y = f(a, b) with NumPy broadcasting.
//
// Bindings: 0 a: array<f32> (read), 1 b: array<f32> (read), 2 y: array<f32> (write),
//           3 p: BinaryParams (uniform).
// Params:   n = elements of y; rank ≤ 8 after `ops::binary` merged adjacent dims that broadcast
//           alike; shape = y's dims (innermost last); a_strides / b_strides = element strides of
//           a and b per dim (0 where that operand broadcasts); alpha, beta = op constants.
// Grid:     one invocation per element of y, 256 per workgroup, linear workgroup index folded.
// Entries:  add, sub, mul, div, maximum, minimum, axpby (alpha·a + beta·b).

struct BinaryParams {
    n: u32,
    rank: u32,
    alpha: f32,
    beta: f32,
    shape: array<vec4<u32>, 2>,
    a_strides: array<vec4<u32>, 2>,
    b_strides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: BinaryParams;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y) * 256u + lid;
}

// Offsets of output element i in a and b.
fn offsets(i: u32) -> vec2<u32> {
    var rem = i;
    var oa = 0u;
    var ob = 0u;
    for (var d = i32(p.rank) - 1; d >= 0; d = d - 1) {
        let dim = p.shape[d / 4][d % 4];
        let c = rem % dim;
        rem = rem / dim;
        oa = oa + c * p.a_strides[d / 4][d % 4];
        ob = ob + c * p.b_strides[d / 4][d % 4];
    }
    return vec2<u32>(oa, ob);
}

@compute @workgroup_size(256)
fn add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) { let o = offsets(i); y[i] = a[o.x] + b[o.y]; }
}

@compute @workgroup_size(256)
fn sub(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) { let o = offsets(i); y[i] = a[o.x] - b[o.y]; }
}

@compute @workgroup_size(256)
fn mul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) { let o = offsets(i); y[i] = a[o.x] * b[o.y]; }
}

@compute @workgroup_size(256)
fn div(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) { let o = offsets(i); y[i] = a[o.x] / b[o.y]; }
}

@compute @workgroup_size(256)
fn maximum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) { let o = offsets(i); y[i] = max(a[o.x], b[o.y]); }
}

@compute @workgroup_size(256)
fn minimum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) { let o = offsets(i); y[i] = min(a[o.x], b[o.y]); }
}

@compute @workgroup_size(256)
fn axpby(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) { let o = offsets(i); y[i] = p.alpha * a[o.x] + p.beta * b[o.y]; }
}
