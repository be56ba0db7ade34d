// Family `reduce`: row-wise reductions over the last dimension of a contiguous [rows, cols] view.
//
// Bindings: 0 x: array<f32> (read), 1 y: array<f32> (write), 2 p: ReduceParams (uniform).
// Params:   rows, cols; eps (l2_normalize: y = x / max(‖x‖, eps), as torch F.normalize);
//           correction (std_rows: Bessel's correction, 1 = unbiased as torch.std's default).
// Grid:     one workgroup of 64 invocations per row (linear workgroup index folded over x/y/z);
//           each invocation strides over the row, then a tree reduction in workgroup memory.
// Entries:  softmax (y [rows, cols], max subtracted first), log_softmax, l2_normalize
//           (y [rows, cols]); sum_rows, mean_rows, max_rows, std_rows (y [rows]).
// Numerics: f32 accumulation; per-invocation partial sums of ≤ cols/64 terms, then a
//           pairwise tree, so error grows ~log(cols). std is two-pass (mean, then Σ(x−mean)²).

struct ReduceParams {
    rows: u32,
    cols: u32,
    eps: f32,
    correction: f32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: ReduceParams;

const WG: u32 = 64u;
var<workgroup> red: array<f32, 64>;

fn row_of(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y;
}

// −∞ as a runtime value: Tint rejects −∞ in a constant expression such as
// `bitcast<f32>(0xff800000u)`, so the bits go through a variable.
fn neg_inf() -> f32 {
    var bits = 0xff800000u;
    return bitcast<f32>(bits);
}

fn wg_sum(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            red[lid] = red[lid] + red[lid + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn wg_max(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            red[lid] = max(red[lid], red[lid + s]);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn row_max(base: u32, lid: u32) -> f32 {
    var m = neg_inf();
    for (var c = lid; c < p.cols; c = c + WG) {
        m = max(m, x[base + c]);
    }
    return wg_max(m, lid);
}

fn row_sum(base: u32, lid: u32) -> f32 {
    var s = 0.0;
    for (var c = lid; c < p.cols; c = c + WG) {
        s = s + x[base + c];
    }
    return wg_sum(s, lid);
}

@compute @workgroup_size(64)
fn softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, nwg);
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    let m = row_max(base, lid);
    var s = 0.0;
    for (var c = lid; c < p.cols; c = c + WG) {
        s = s + exp(x[base + c] - m);
    }
    let inv = 1.0 / wg_sum(s, lid);
    for (var c = lid; c < p.cols; c = c + WG) {
        y[base + c] = exp(x[base + c] - m) * inv;
    }
}

@compute @workgroup_size(64)
fn log_softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, nwg);
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    let m = row_max(base, lid);
    var s = 0.0;
    for (var c = lid; c < p.cols; c = c + WG) {
        s = s + exp(x[base + c] - m);
    }
    let lse = m + log(wg_sum(s, lid));
    for (var c = lid; c < p.cols; c = c + WG) {
        y[base + c] = x[base + c] - lse;
    }
}

@compute @workgroup_size(64)
fn l2_normalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, nwg);
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    var s = 0.0;
    for (var c = lid; c < p.cols; c = c + WG) {
        let v = x[base + c];
        s = s + v * v;
    }
    let inv = 1.0 / max(sqrt(wg_sum(s, lid)), p.eps);
    for (var c = lid; c < p.cols; c = c + WG) {
        y[base + c] = x[base + c] * inv;
    }
}

@compute @workgroup_size(64)
fn sum_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, nwg);
    if (row >= p.rows) { return; }
    let s = row_sum(row * p.cols, lid);
    if (lid == 0u) { y[row] = s; }
}

@compute @workgroup_size(64)
fn mean_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, nwg);
    if (row >= p.rows) { return; }
    let s = row_sum(row * p.cols, lid);
    if (lid == 0u) { y[row] = s / f32(p.cols); }
}

@compute @workgroup_size(64)
fn max_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, nwg);
    if (row >= p.rows) { return; }
    let m = row_max(row * p.cols, lid);
    if (lid == 0u) { y[row] = m; }
}

@compute @workgroup_size(64)
fn std_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, nwg);
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    let mean = row_sum(base, lid) / f32(p.cols);
    var s = 0.0;
    for (var c = lid; c < p.cols; c = c + WG) {
        let d = x[base + c] - mean;
        s = s + d * d;
    }
    let ss = wg_sum(s, lid);
    if (lid == 0u) { y[row] = sqrt(ss / (f32(p.cols) - p.correction)); }
}
