// Family `unary`: elementwise y = f(x) over a contiguous f32 tensor.
//
// Bindings: 0 x: array<f32> (read), 1 y: array<f32> (write), 2 p: UnaryParams (uniform).
// Params:   n = elements of y; cols = row length for the gated entries; alpha, beta = op constants.
// Grid:     one invocation per element of y, 256 per workgroup, linear workgroup index folded
//           over x/y/z (device.rs `Grid::linear`).
// Entries:  gelu (exact, erf), gelu_tanh, quick_gelu (x·σ(1.702x)), silu, sigmoid, tanh_op, relu,
//           leaky_relu (slope alpha), elu (alpha), exp_op, affine (x·alpha + beta), fill (alpha; x unused),
//           sqrt_op, square, abs_op, clamp_op (to [alpha, beta]), log_floor (ln(max(x, alpha)));
//           (`_op` where the name is a WGSL builtin)
//           gated (x is [rows, 2·cols], y is [rows, cols]): geglu = x[:, :c]·gelu(x[:, c:]),
//           swiglu = x[:, :c]·silu(x[:, c:]).
// Numerics: the shared activations block (shaders/shared/activations.wgsl).

struct UnaryParams {
    n: u32,
    cols: u32,
    alpha: f32,
    beta: f32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: UnaryParams;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y) * 256u + lid;
}

// ---- shared: activations.wgsl ----
// One text, copied verbatim into every family that applies activations (unary, matmul, conv);
// build.rs fails the build when a copy differs from shaders/shared/activations.wgsl, and
// `ops::Act`'s discriminants are tested against the ACT_* codes below.
// Numerics: erf is a Taylor series for |x| < 0.5 (error < 1e-8) and Abramowitz–Stegun 7.1.26
// above (absolute error ≤ 1.5e-7); tanh avoids exp overflow (series near 0,
// (1 − e^{−2|x|})/(1 + e^{−2|x|}) elsewhere); sigmoid is 1/(1 + e^{−x}), exact at both tails.

const ACT_NONE: u32 = 0u;
const ACT_GELU: u32 = 1u;
const ACT_GELU_TANH: u32 = 2u;
const ACT_QUICK_GELU: u32 = 3u;
const ACT_SILU: u32 = 4u;
const ACT_RELU: u32 = 5u;
const ACT_TANH: u32 = 6u;

fn f_erf(v: f32) -> f32 {
    let a = abs(v);
    if (a < 0.5) {
        let z = v * v;
        // 2/√π · (x − x³/3 + x⁵/10 − x⁷/42 + x⁹/216 − x¹¹/1320)
        return 1.1283791670955126 * v * (1.0 + z * (-0.3333333333 + z * (0.1 + z * (-0.0238095238 + z * (0.0046296296 + z * -0.0007575758)))));
    }
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let r = 1.0 - poly * exp(-a * a);
    return select(-r, r, v >= 0.0);
}

fn f_tanh(v: f32) -> f32 {
    let a = abs(v);
    if (a < 0.3) {
        let z = v * v;
        // x − x³/3 + 2x⁵/15 − 17x⁷/315 + 62x⁹/2835
        return v * (1.0 + z * (-0.3333333333 + z * (0.1333333333 + z * (-0.0539682540 + z * 0.0218694885))));
    }
    let t = exp(-2.0 * a);
    let r = (1.0 - t) / (1.0 + t);
    return select(-r, r, v >= 0.0);
}

fn f_sigmoid(v: f32) -> f32 {
    return 1.0 / (1.0 + exp(-v));
}

fn f_gelu(v: f32) -> f32 {
    return 0.5 * v * (1.0 + f_erf(v * 0.7071067811865476));
}

fn f_gelu_tanh(v: f32) -> f32 {
    return 0.5 * v * (1.0 + f_tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
}

fn f_quick_gelu(v: f32) -> f32 {
    return v * f_sigmoid(1.702 * v);
}

fn f_silu(v: f32) -> f32 {
    return v * f_sigmoid(v);
}

// The activation with code `act` (ACT_*; `ops::Act` in Rust).
fn apply_act(v: f32, act: u32) -> f32 {
    switch act {
        case ACT_GELU: { return f_gelu(v); }
        case ACT_GELU_TANH: { return f_gelu_tanh(v); }
        case ACT_QUICK_GELU: { return f_quick_gelu(v); }
        case ACT_SILU: { return f_silu(v); }
        case ACT_RELU: { return max(v, 0.0); }
        case ACT_TANH: { return f_tanh(v); }
        default: { return v; }
    }
}
// ---- end shared: activations.wgsl ----

@compute @workgroup_size(256)
fn gelu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) { y[i] = f_gelu(x[i]); }
}

@compute @workgroup_size(256)
fn gelu_tanh(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) { y[i] = f_gelu_tanh(x[i]); }
}

@compute @workgroup_size(256)
fn quick_gelu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) { y[i] = f_quick_gelu(x[i]); }
}

@compute @workgroup_size(256)
fn silu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) { y[i] = f_silu(x[i]); }
}

@compute @workgroup_size(256)
fn sigmoid(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) { y[i] = f_sigmoid(x[i]); }
}

@compute @workgroup_size(256)
fn tanh_op(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) { y[i] = f_tanh(x[i]); }
}

@compute @workgroup_size(256)
fn relu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) { y[i] = max(x[i], 0.0); }
}

@compute @workgroup_size(256)
fn leaky_relu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) { let v = x[i]; y[i] = select(v * p.alpha, v, v > 0.0); }
}

@compute @workgroup_size(256)
fn elu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) { let v = x[i]; y[i] = select(p.alpha * (exp(v) - 1.0), v, v > 0.0); }
}

@compute @workgroup_size(256)
fn exp_op(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) { y[i] = exp(x[i]); }
}

@compute @workgroup_size(256)
fn affine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) { y[i] = x[i] * p.alpha + p.beta; }
}

@compute @workgroup_size(256)
fn fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) { y[i] = p.alpha; }
}

@compute @workgroup_size(256)
fn sqrt_op(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) { y[i] = sqrt(x[i]); }
}

@compute @workgroup_size(256)
fn square(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) { let v = x[i]; y[i] = v * v; }
}

@compute @workgroup_size(256)
fn abs_op(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) { y[i] = abs(x[i]); }
}

@compute @workgroup_size(256)
fn clamp_op(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) { y[i] = clamp(x[i], p.alpha, p.beta); }
}

@compute @workgroup_size(256)
fn log_floor(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) { y[i] = log(max(x[i], p.alpha)); }
}

@compute @workgroup_size(256)
fn geglu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) {
        let r = i / p.cols;
        let c = i - r * p.cols;
        let base = r * 2u * p.cols;
        y[i] = x[base + c] * f_gelu(x[base + p.cols + c]);
    }
}

@compute @workgroup_size(256)
fn swiglu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) {
        let r = i / p.cols;
        let c = i - r * p.cols;
        let base = r * 2u * p.cols;
        y[i] = x[base + c] * f_silu(x[base + p.cols + c]);
    }
}
