// Family `norm`: LayerNorm and GroupNorm with f32 statistics (two-pass: mean, then Σ(x−mean)²).
//
// Bindings: 0 x: array<f32> (read), 1 gamma: array<f32> (read), 2 beta: array<f32> (read),
//           3 y: array<f32> (write), 4 p: NormParams (uniform).
// Params:   rows = normalised groups; cols = values per group; inner = values per channel
//           (GroupNorm: H·W; LayerNorm: 1); chans = channels per group (GroupNorm: C/G;
//           LayerNorm: cols); eps; flags bit 0 = has gamma, bit 1 = has beta (the unbound one
//           is a dummy buffer).
//           The channel of value i of group r is (r % groups)·chans + i / inner; groups = C/chans.
// Grid:     one workgroup per group (row): 64 invocations for layer_norm (short rows, many of
//           them), 256 for group_norm (long rows); linear workgroup index folded over x/y/z.
// Entries:  layer_norm (x [rows, cols], affine per column), group_norm (x [N, C, H·W]),
//           group_norm_silu (group_norm followed by SiLU, fused).
// Numerics: biased variance as PyTorch; var + eps under the square root.

struct NormParams {
    rows: u32,
    cols: u32,
    inner: u32,
    chans: u32,
    groups: u32,
    flags: u32,
    eps: f32,
    pad0: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> beta: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: NormParams;

var<workgroup> red: array<f32, 256>;

fn row_of(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y;
}

fn wg_sum(v: f32, lid: u32, wg: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = wg / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            red[lid] = red[lid] + red[lid + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

// (mean, 1/sqrt(var + eps)) of row `base`.
fn stats(base: u32, lid: u32, wg: u32) -> vec2<f32> {
    var s = 0.0;
    for (var c = lid; c < p.cols; c = c + wg) {
        s = s + x[base + c];
    }
    let mean = wg_sum(s, lid, wg) / f32(p.cols);
    var v = 0.0;
    for (var c = lid; c < p.cols; c = c + wg) {
        let d = x[base + c] - mean;
        v = v + d * d;
    }
    let var_ = wg_sum(v, lid, wg) / f32(p.cols);
    return vec2<f32>(mean, inverseSqrt(var_ + p.eps));
}

fn affine(v: f32, ch: u32) -> f32 {
    var r = v;
    if ((p.flags & 1u) != 0u) { r = r * gamma[ch]; }
    if ((p.flags & 2u) != 0u) { r = r + beta[ch]; }
    return r;
}

@compute @workgroup_size(64)
fn layer_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, nwg);
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    let st = stats(base, lid, 64u);
    for (var c = lid; c < p.cols; c = c + 64u) {
        y[base + c] = affine((x[base + c] - st.x) * st.y, c);
    }
}

fn group_norm_impl(row: u32, lid: u32, silu: bool) {
    let base = row * p.cols;
    let st = stats(base, lid, 256u);
    let ch0 = (row % p.groups) * p.chans;
    for (var c = lid; c < p.cols; c = c + 256u) {
        var v = affine((x[base + c] - st.x) * st.y, ch0 + c / p.inner);
        if (silu) { v = v / (1.0 + exp(-v)); }
        y[base + c] = v;
    }
}

@compute @workgroup_size(256)
fn group_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, nwg);
    if (row >= p.rows) { return; }
    group_norm_impl(row, lid, false);
}

@compute @workgroup_size(256)
fn group_norm_silu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, nwg);
    if (row >= p.rows) { return; }
    group_norm_impl(row, lid, true);
}
