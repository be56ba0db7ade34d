// Family `copy`: data movement between contiguous f32 buffers ("reindex": every op maps an
// output coordinate to an input element).
//
// Bindings: 0 x: array<f32> (read), 1 y: array<f32> (read_write: `strided_copy` may write
//           only part of y, e.g. one input of a concat), 2 p: CopyParams (uniform).
// Params:   n = elements to write; rank ≤ 8; shape = the iteration shape (innermost last);
//           in_strides / out_strides = element strides of x and y per dim (0 in in_strides
//           broadcasts); in_offset / out_offset in elements; for pad: in_shape and before
//           (padding before each dim); value = the pad constant (0 or −∞).
// Grid:     one invocation per written element, 256 per workgroup, linear index folded.
// Entries:  strided_copy — y[out_offset + Σ cᵢ·out_strideᵢ] = x[in_offset + Σ cᵢ·in_strideᵢ]:
//             permute, slice (with steps), concat parts, expand, nearest upsampling;
//           pad_const — y = x shifted by `before`, `value` outside (zero, −∞ for max-pool);
//           pad_reflect — PyTorch "reflect" (edge not repeated), needs pad < size per dim.

struct CopyParams {
    n: u32,
    rank: u32,
    in_offset: u32,
    out_offset: u32,
    value: f32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
    shape: array<vec4<u32>, 2>,
    in_strides: array<vec4<u32>, 2>,
    out_strides: array<vec4<u32>, 2>,
    in_shape: array<vec4<u32>, 2>,
    before: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: CopyParams;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y) * 256u + lid;
}

fn at(a: array<vec4<u32>, 2>, d: i32) -> u32 {
    return a[d / 4][d % 4];
}

@compute @workgroup_size(256)
fn strided_copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= p.n) { return; }
    var rem = i;
    var oi = p.in_offset;
    var oo = p.out_offset;
    for (var d = i32(p.rank) - 1; d >= 0; d = d - 1) {
        let dim = at(p.shape, d);
        let c = rem % dim;
        rem = rem / dim;
        oi = oi + c * at(p.in_strides, d);
        oo = oo + c * at(p.out_strides, d);
    }
    y[oo] = x[oi];
}

// Input offset for output element i, or -1 when it falls in the padding. `reflect` folds
// out-of-range coordinates back (PyTorch reflect: −1 → 1, n → n − 2).
fn pad_source(i: u32, reflect: bool) -> i32 {
    var rem = i;
    var oi = 0i;
    for (var d = i32(p.rank) - 1; d >= 0; d = d - 1) {
        let dim = at(p.shape, d);
        let c = rem % dim;
        rem = rem / dim;
        let n = i32(at(p.in_shape, d));
        var j = i32(c) - i32(at(p.before, d));
        if (j < 0 || j >= n) {
            if (!reflect) { return -1; }
            if (j < 0) { j = -j; }
            if (j >= n) { j = 2 * (n - 1) - j; }
        }
        oi = oi + j * i32(at(p.in_strides, d));
    }
    return oi;
}

@compute @workgroup_size(256)
fn pad_const(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= p.n) { return; }
    let s = pad_source(i, false);
    y[i] = select(p.value, x[max(s, 0)], s >= 0);
}

@compute @workgroup_size(256)
fn pad_reflect(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= p.n) { return; }
    y[i] = x[pad_source(i, true)];
}
