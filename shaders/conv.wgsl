// Family `conv`: direct convolutions over contiguous NCHW / NCL f32 tensors, weights in the
// PyTorch layout as a `Weight` (rows padded to a multiple of 4, fp16 pairs or f32).
//
// Bindings: 0 x: array<f32> (read)    input [n, cin, h, w] (1-D: h = 1, w = L)
//           1 wt: array<u32> (read)   weight rows; conv: [cout, cin_g·kh·kw], transposed: [cin, cout_g·k]
//           2 bias: array<f32> (read) [cout] (the dummy buffer when has_bias = 0)
//           3 y: array<f32> (write)   output [n, cout, ho, wo]
//           4 p: ConvParams (uniform)
// Override: W_F16 (true: wt holds fp16 pairs, element 2i in the low half; false: f32 bits).
// Params:   NCHW sizes, kernel/stride/padding/dilation per axis, groups, weight cols/row_stride;
//           an "A/B" view of the two spatial axes for conv2d_3x3 (A = the axis of the 8-wide
//           side of the output patch: W when swap = 0, H when swap = 1; the host fills sizes,
//           padding and the x/y strides per axis); has_bias; act (ops::Act code); tk_step/tx_step
//           for conv_transpose1d (stride/gcd(stride, dilation), dilation/gcd); splits: the
//           split-K parts of conv2d_3x3 and conv_split_sum (0 or 1: no split).
// Grid:     a linear invocation index (workgroup index folded over x/y/z by device.rs `Grid`) is
//           one work item; items past the end return.
// Entries:
//   conv2d_naive            one output per invocation (the textbook loop; benchmark baseline only)
//   conv2d                  any shape: 16 output channels x 8 output positions per invocation; the
//                           reduction index r = (ci, ky, kx) is walked 4 at a time with one 4-wide
//                           weight load per channel (padded rows make the tail chunk safe). Split-K
//                           as conv2d_3x3's, over whole 4-wide steps of r
//   conv2d_3x3              3x3, stride 1, dilation 1: 8 channels x a 2 x 8 output patch; the 4 x 10
//                           input patch is loaded once per input channel and serves all 9 taps.
//                           With splits = S > 1 (split-K), items come S times over: part s sums
//                           input channels [s·c, (s + 1)·c) (c = ⌈cin_g / S⌉) into y plane s of
//                           [S, n, cout, ho, wo] (the host sets has_bias = act = 0), so grids too
//                           small to fill a GPU (the UNet's 1×2 … 4×8 maps) get S times the
//                           workgroups, each with 1/S of the loop
//   conv_split_sum          y = act(Σ_s x[s] + bias) over the S planes of a split-K conv2d(_3x3)
//                           output (x = [S, n, cout, ho, wo]), one output per invocation, parts
//                           summed in order
//   conv_transpose1d        4 channels x 32 outputs of one phase (t + pad) mod stride, so all outputs
//                           of an invocation use the same taps; taps 4 at a time over a sliding
//                           36-slot input window (a row costs 36 + ntap input loads, not 32·ntap)
//   conv_transpose1d_naive  one output per invocation (baseline and cross-check)
//
// Performance notes (lavapipe, the CI adapter; shared/spec/lavapipe-matmul.md):
// - the cost is the scalar components each lane loads (SSBO loads are per-lane loops; Mesa 22.3
//   only fast-paths compile-time-constant addresses, so weights shared by a workgroup still cost
//   per lane), FMAs are nearly free: tiles maximise FMAs per loaded value;
// - no workgroup memory: its loads are per lane too and barriers are coroutine switches;
// - hot paths are straight-line code with constant array indices. wgpu adds a loop-bounding
//   counter to every WGSL loop on Vulkan (naga `force_loop_bounding`), which stops NIR from
//   unrolling constant-trip loops, and an accumulator array indexed by a loop variable is then
//   kept in memory (measured 6-10x slower for these kernels). Only the reduction and tap loops
//   are loops; helper functions are inlined by the driver, so their constant indices stay
//   constant.
// Numerics: f32 accumulation; the activations copy unary.wgsl's helpers.

struct ConvParams {
    n: u32,
    cin: u32,
    cout: u32,
    groups: u32,
    cin_g: u32,
    cout_g: u32,
    cols: u32,
    row_stride: u32,
    h: u32,
    w: u32,
    ho: u32,
    wo: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    dh: u32,
    dw: u32,
    la: u32,
    lb: u32,
    oa: u32,
    ob: u32,
    pa: u32,
    pb: u32,
    xsa: u32,
    xsb: u32,
    ysa: u32,
    ysb: u32,
    swap: u32,
    has_bias: u32,
    act: u32,
    tk_step: u32,
    tx_step: u32,
    splits: u32,
}

override W_F16: bool = true;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> wt: array<u32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: ConvParams;

fn item_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, wg: u32) -> u32 {
    return (wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y) * wg + lid;
}

const LANE4 = vec4<u32>(0u, 1u, 2u, 3u);

// ---- weights ----

// Weight element `e` of the padded storage.
fn w1(e: u32) -> f32 {
    if (W_F16) {
        return unpack2x16float(wt[e >> 1u] >> ((e & 1u) * 16u)).x;
    }
    return bitcast<f32>(wt[e]);
}

// Four weights starting at element `e` (a multiple of 4): one 4-wide load (2 words in fp16).
fn w4(e: u32) -> vec4<f32> {
    if (W_F16) {
        let i = e >> 1u;
        return vec4<f32>(unpack2x16float(wt[i]), unpack2x16float(wt[i + 1u]));
    }
    return bitcast<vec4<f32>>(vec4<u32>(wt[e], wt[e + 1u], wt[e + 2u], wt[e + 3u]));
}

// The 9 weights at element `e` (one channel's 3x3 taps of one input channel) into wk[o..o + 9],
// reordered to [b][a] (PyTorch's order is [ky][kx]; with swap, A = H so a = ky). fp16 costs 5
// word loads: the halves e..e + 8 lie in words e/2 .. e/2 + 4 (all inside the padded row).
fn w9(wk: ptr<function, array<f32, 72>>, o: u32, e: u32, swap: bool) {
    var r: array<f32, 9>;
    if (W_F16) {
        let i = e >> 1u;
        let odd = (e & 1u) != 0u;
        let h0 = unpack2x16float(wt[i]);
        let h1 = unpack2x16float(wt[i + 1u]);
        let h2 = unpack2x16float(wt[i + 2u]);
        let h3 = unpack2x16float(wt[i + 3u]);
        let h4 = unpack2x16float(wt[i + 4u]);
        r[0] = select(h0.x, h0.y, odd);
        r[1] = select(h0.y, h1.x, odd);
        r[2] = select(h1.x, h1.y, odd);
        r[3] = select(h1.y, h2.x, odd);
        r[4] = select(h2.x, h2.y, odd);
        r[5] = select(h2.y, h3.x, odd);
        r[6] = select(h3.x, h3.y, odd);
        r[7] = select(h3.y, h4.x, odd);
        r[8] = select(h4.x, h4.y, odd);
    } else {
        r[0] = bitcast<f32>(wt[e]);
        r[1] = bitcast<f32>(wt[e + 1u]);
        r[2] = bitcast<f32>(wt[e + 2u]);
        r[3] = bitcast<f32>(wt[e + 3u]);
        r[4] = bitcast<f32>(wt[e + 4u]);
        r[5] = bitcast<f32>(wt[e + 5u]);
        r[6] = bitcast<f32>(wt[e + 6u]);
        r[7] = bitcast<f32>(wt[e + 7u]);
        r[8] = bitcast<f32>(wt[e + 8u]);
    }
    (*wk)[o] = r[0];
    (*wk)[o + 1u] = select(r[1], r[3], swap);
    (*wk)[o + 2u] = select(r[2], r[6], swap);
    (*wk)[o + 3u] = select(r[3], r[1], swap);
    (*wk)[o + 4u] = r[4];
    (*wk)[o + 5u] = select(r[5], r[7], swap);
    (*wk)[o + 6u] = select(r[6], r[2], swap);
    (*wk)[o + 7u] = select(r[7], r[5], swap);
    (*wk)[o + 8u] = r[8];
}

// ---- inputs ----

// x at flat index base + off where ok, else 0 (the index is never out of range).
fn x4(base: vec4<i32>, ok: vec4<bool>) -> vec4<f32> {
    let i = select(vec4<u32>(0u), vec4<u32>(base), ok);
    return select(vec4<f32>(0.0), vec4<f32>(x[i.x], x[i.y], x[i.z], x[i.w]), ok);
}

fn x1(base: i32, ok: bool) -> f32 {
    return select(0.0, x[select(0u, u32(base), ok)], ok);
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

// Bias + the fused activation (ACT_* codes).
fn finish(v0: f32, co: u32) -> f32 {
    var v = v0;
    if (p.has_bias != 0u) {
        v += bias[co];
    }
    return apply_act(v, p.act);
}

// Store 4 outputs of channel co at y[idx] where ok (and the channel exists).
fn st4(v: vec4<f32>, co: u32, okc: bool, idx: vec4<u32>, ok: vec4<bool>) {
    if (okc) {
        if (ok.x) { y[idx.x] = finish(v.x, co); }
        if (ok.y) { y[idx.y] = finish(v.y, co); }
        if (ok.z) { y[idx.z] = finish(v.z, co); }
        if (ok.w) { y[idx.w] = finish(v.w, co); }
    }
}

// ---- conv2d_naive: one output per invocation ----

@compute @workgroup_size(256)
fn conv2d_naive(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = item_index(wid, nwg, lid, 256u);
    let howo = p.ho * p.wo;
    if (i >= p.n * p.cout * howo) {
        return;
    }
    let ox = i % p.wo;
    let oy = (i / p.wo) % p.ho;
    let co = (i / howo) % p.cout;
    let nn = i / (howo * p.cout);
    let g = co / p.cout_g;
    let hw = p.h * p.w;
    var acc = 0.0;
    for (var ci = 0u; ci < p.cin_g; ci++) {
        let xc = (nn * p.cin + g * p.cin_g + ci) * hw;
        for (var ky = 0u; ky < p.kh; ky++) {
            let iy = i32(oy * p.sh + ky * p.dh) - i32(p.ph);
            for (var kx = 0u; kx < p.kw; kx++) {
                let ix = i32(ox * p.sw + kx * p.dw) - i32(p.pw);
                if (iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w)) {
                    let wv = w1(co * p.row_stride + (ci * p.kh + ky) * p.kw + kx);
                    acc += wv * x[xc + u32(iy) * p.w + u32(ix)];
                }
            }
        }
    }
    y[i] = finish(acc, co);
}

// ---- conv2d: general register-tiled kernel (16 channels x 8 positions) ----

// acc[2c + h] += w_c · (h == 0 ? x0 : x1) for the 16 channels of one tap (w_c = wa..wd components).
fn g_fma(acc: ptr<function, array<vec4<f32>, 32>>, wa: vec4<f32>, wb: vec4<f32>, wc: vec4<f32>, wd: vec4<f32>, x0: vec4<f32>, x1: vec4<f32>) {
    (*acc)[0] = fma(vec4<f32>(wa.x), x0, (*acc)[0]);
    (*acc)[1] = fma(vec4<f32>(wa.x), x1, (*acc)[1]);
    (*acc)[2] = fma(vec4<f32>(wa.y), x0, (*acc)[2]);
    (*acc)[3] = fma(vec4<f32>(wa.y), x1, (*acc)[3]);
    (*acc)[4] = fma(vec4<f32>(wa.z), x0, (*acc)[4]);
    (*acc)[5] = fma(vec4<f32>(wa.z), x1, (*acc)[5]);
    (*acc)[6] = fma(vec4<f32>(wa.w), x0, (*acc)[6]);
    (*acc)[7] = fma(vec4<f32>(wa.w), x1, (*acc)[7]);
    (*acc)[8] = fma(vec4<f32>(wb.x), x0, (*acc)[8]);
    (*acc)[9] = fma(vec4<f32>(wb.x), x1, (*acc)[9]);
    (*acc)[10] = fma(vec4<f32>(wb.y), x0, (*acc)[10]);
    (*acc)[11] = fma(vec4<f32>(wb.y), x1, (*acc)[11]);
    (*acc)[12] = fma(vec4<f32>(wb.z), x0, (*acc)[12]);
    (*acc)[13] = fma(vec4<f32>(wb.z), x1, (*acc)[13]);
    (*acc)[14] = fma(vec4<f32>(wb.w), x0, (*acc)[14]);
    (*acc)[15] = fma(vec4<f32>(wb.w), x1, (*acc)[15]);
    (*acc)[16] = fma(vec4<f32>(wc.x), x0, (*acc)[16]);
    (*acc)[17] = fma(vec4<f32>(wc.x), x1, (*acc)[17]);
    (*acc)[18] = fma(vec4<f32>(wc.y), x0, (*acc)[18]);
    (*acc)[19] = fma(vec4<f32>(wc.y), x1, (*acc)[19]);
    (*acc)[20] = fma(vec4<f32>(wc.z), x0, (*acc)[20]);
    (*acc)[21] = fma(vec4<f32>(wc.z), x1, (*acc)[21]);
    (*acc)[22] = fma(vec4<f32>(wc.w), x0, (*acc)[22]);
    (*acc)[23] = fma(vec4<f32>(wc.w), x1, (*acc)[23]);
    (*acc)[24] = fma(vec4<f32>(wd.x), x0, (*acc)[24]);
    (*acc)[25] = fma(vec4<f32>(wd.x), x1, (*acc)[25]);
    (*acc)[26] = fma(vec4<f32>(wd.y), x0, (*acc)[26]);
    (*acc)[27] = fma(vec4<f32>(wd.y), x1, (*acc)[27]);
    (*acc)[28] = fma(vec4<f32>(wd.z), x0, (*acc)[28]);
    (*acc)[29] = fma(vec4<f32>(wd.z), x1, (*acc)[29]);
    (*acc)[30] = fma(vec4<f32>(wd.w), x0, (*acc)[30]);
    (*acc)[31] = fma(vec4<f32>(wd.w), x1, (*acc)[31]);
}

// Tap t (0..3) of the current 4-tap chunk: w[c] holds the chunk's 4 weights of channel c.
fn g_tap(acc: ptr<function, array<vec4<f32>, 32>>, w: ptr<function, array<vec4<f32>, 16>>, t: u32, x0: vec4<f32>, x1: vec4<f32>) {
    let wa = vec4<f32>((*w)[0][t], (*w)[1][t], (*w)[2][t], (*w)[3][t]);
    let wb = vec4<f32>((*w)[4][t], (*w)[5][t], (*w)[6][t], (*w)[7][t]);
    let wc = vec4<f32>((*w)[8][t], (*w)[9][t], (*w)[10][t], (*w)[11][t]);
    let wd = vec4<f32>((*w)[12][t], (*w)[13][t], (*w)[14][t], (*w)[15][t]);
    g_fma(acc, wa, wb, wc, wd, x0, x1);
}

// x for positions (xb, iy0, ix0) at the tap (dy, dx, coff); live = the tap is inside the row.
fn g_x(xb: vec4<i32>, iy0: vec4<i32>, ix0: vec4<i32>, dy: i32, dx: i32, coff: i32, live: bool) -> vec4<f32> {
    let ok = (vec4<u32>(iy0 + vec4<i32>(dy)) < vec4<u32>(p.h)) & (vec4<u32>(ix0 + vec4<i32>(dx)) < vec4<u32>(p.w)) & vec4<bool>(live);
    return x4(xb + vec4<i32>(coff), ok);
}

// One tap of the flat reduction index: load x for the 8 positions, accumulate, advance (ci, ky, kx).
fn g_step(acc: ptr<function, array<vec4<f32>, 32>>, w: ptr<function, array<vec4<f32>, 16>>, t: u32,
          pos: ptr<function, array<vec4<i32>, 6>>, k: ptr<function, vec3<u32>>, hw: u32) {
    let ci = (*k).x;
    let ky = (*k).y;
    let kx = (*k).z;
    let dy = i32(ky * p.dh);
    let dx = i32(kx * p.dw);
    let coff = i32(ci * hw) + dy * i32(p.w) + dx;
    let live = ci < p.cin_g;
    let x0 = g_x((*pos)[0], (*pos)[2], (*pos)[4], dy, dx, coff, live);
    let x1 = g_x((*pos)[1], (*pos)[3], (*pos)[5], dy, dx, coff, live);
    g_tap(acc, w, t, x0, x1);
    let nx = kx + 1u;
    let wrap_x = nx == p.kw;
    let ny = select(ky, ky + 1u, wrap_x);
    let wrap_y = ny == p.kh;
    *k = vec3<u32>(select(ci, ci + 1u, wrap_y), select(ny, 0u, wrap_y), select(nx, 0u, wrap_x));
}

@compute @workgroup_size(64)
fn conv2d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let it_all = item_index(wid, nwg, lid, 64u);
    let howo = p.ho * p.wo;
    let np = p.n * howo;                         // output positions (batch folded in)
    let npb = (np + 7u) / 8u;                    // position blocks
    let cpg = (p.cout_g + 15u) / 16u;            // channel blocks per group
    let items = npb * cpg * p.groups;
    let parts = max(p.splits, 1u);
    if (it_all >= items * parts) {
        return;
    }
    // Split-K part: reduction steps [r_begin, r_end), whole 4-wide steps.
    let part = it_all / items;
    let it = it_all - part * items;
    let chunk = ((p.cols + 3u) / 4u + parts - 1u) / parts * 4u;
    let r_begin = part * chunk;
    let r_end = min(p.cols, r_begin + chunk);
    // Adjacent invocations take adjacent positions of one channel block; an invocation's 8
    // positions are npb apart (coalesced x reads on GPUs).
    let pb = it % npb;
    let cbl = it / npb;
    let g = cbl / cpg;
    let co0 = g * p.cout_g + (cbl % cpg) * 16u;
    let co_end = (g + 1u) * p.cout_g;
    let hw = p.h * p.w;

    let last = vec4<u32>(co_end - 1u);
    let wra = min(vec4<u32>(co0) + LANE4, last) * p.row_stride;
    let wrb = min(vec4<u32>(co0 + 4u) + LANE4, last) * p.row_stride;
    let wrc = min(vec4<u32>(co0 + 8u) + LANE4, last) * p.row_stride;
    let wrd = min(vec4<u32>(co0 + 12u) + LANE4, last) * p.row_stride;

    // Per position: pos[0..2] = x offset of the window corner, pos[2..4] = iy0, pos[4..6] = ix0.
    let qa = vec4<u32>(pb) + LANE4 * npb;
    let qb = qa + vec4<u32>(4u * npb);
    let okqa = qa < vec4<u32>(np);
    let okqb = qb < vec4<u32>(np);
    let qca = min(qa, vec4<u32>(np - 1u));
    let qcb = min(qb, vec4<u32>(np - 1u));
    let nna = qca / howo;
    let nnb = qcb / howo;
    let rema = qca - nna * howo;
    let remb = qcb - nnb * howo;
    let oya = rema / p.wo;
    let oyb = remb / p.wo;
    var pos: array<vec4<i32>, 6>;
    pos[2] = vec4<i32>(oya * p.sh) - vec4<i32>(i32(p.ph));
    pos[3] = vec4<i32>(oyb * p.sh) - vec4<i32>(i32(p.ph));
    pos[4] = vec4<i32>((rema - oya * p.wo) * p.sw) - vec4<i32>(i32(p.pw));
    pos[5] = vec4<i32>((remb - oyb * p.wo) * p.sw) - vec4<i32>(i32(p.pw));
    let gbase = g * p.cin_g * hw;
    pos[0] = vec4<i32>(nna * p.cin * hw + gbase) + pos[2] * i32(p.w) + pos[4];
    pos[1] = vec4<i32>(nnb * p.cin * hw + gbase) + pos[3] * i32(p.w) + pos[5];

    var acc: array<vec4<f32>, 32>; // [16 channels][2 x 4 positions]
    let khw = p.kh * p.kw;
    var k = vec3<u32>(r_begin / khw, (r_begin / p.kw) % p.kh, r_begin % p.kw); // (ci, ky, kx) of the next tap
    for (var r = r_begin; r < r_end; r += 4u) {
        var w: array<vec4<f32>, 16>;
        w[0] = w4(wra.x + r);
        w[1] = w4(wra.y + r);
        w[2] = w4(wra.z + r);
        w[3] = w4(wra.w + r);
        w[4] = w4(wrb.x + r);
        w[5] = w4(wrb.y + r);
        w[6] = w4(wrb.z + r);
        w[7] = w4(wrb.w + r);
        w[8] = w4(wrc.x + r);
        w[9] = w4(wrc.y + r);
        w[10] = w4(wrc.z + r);
        w[11] = w4(wrc.w + r);
        w[12] = w4(wrd.x + r);
        w[13] = w4(wrd.y + r);
        w[14] = w4(wrd.z + r);
        w[15] = w4(wrd.w + r);
        g_step(&acc, &w, 0u, &pos, &k, hw);
        g_step(&acc, &w, 1u, &pos, &k, hw);
        g_step(&acc, &w, 2u, &pos, &k, hw);
        g_step(&acc, &w, 3u, &pos, &k, hw);
    }

    let yba = (part * p.n + nna) * p.cout * howo + rema;
    let ybb = (part * p.n + nnb) * p.cout * howo + remb;
    st4(acc[0], co0 + 0u, co0 + 0u < co_end, yba + vec4<u32>((0u + co0) * howo), okqa);
    st4(acc[1], co0 + 0u, co0 + 0u < co_end, ybb + vec4<u32>((0u + co0) * howo), okqb);
    st4(acc[2], co0 + 1u, co0 + 1u < co_end, yba + vec4<u32>((1u + co0) * howo), okqa);
    st4(acc[3], co0 + 1u, co0 + 1u < co_end, ybb + vec4<u32>((1u + co0) * howo), okqb);
    st4(acc[4], co0 + 2u, co0 + 2u < co_end, yba + vec4<u32>((2u + co0) * howo), okqa);
    st4(acc[5], co0 + 2u, co0 + 2u < co_end, ybb + vec4<u32>((2u + co0) * howo), okqb);
    st4(acc[6], co0 + 3u, co0 + 3u < co_end, yba + vec4<u32>((3u + co0) * howo), okqa);
    st4(acc[7], co0 + 3u, co0 + 3u < co_end, ybb + vec4<u32>((3u + co0) * howo), okqb);
    st4(acc[8], co0 + 4u, co0 + 4u < co_end, yba + vec4<u32>((4u + co0) * howo), okqa);
    st4(acc[9], co0 + 4u, co0 + 4u < co_end, ybb + vec4<u32>((4u + co0) * howo), okqb);
    st4(acc[10], co0 + 5u, co0 + 5u < co_end, yba + vec4<u32>((5u + co0) * howo), okqa);
    st4(acc[11], co0 + 5u, co0 + 5u < co_end, ybb + vec4<u32>((5u + co0) * howo), okqb);
    st4(acc[12], co0 + 6u, co0 + 6u < co_end, yba + vec4<u32>((6u + co0) * howo), okqa);
    st4(acc[13], co0 + 6u, co0 + 6u < co_end, ybb + vec4<u32>((6u + co0) * howo), okqb);
    st4(acc[14], co0 + 7u, co0 + 7u < co_end, yba + vec4<u32>((7u + co0) * howo), okqa);
    st4(acc[15], co0 + 7u, co0 + 7u < co_end, ybb + vec4<u32>((7u + co0) * howo), okqb);
    st4(acc[16], co0 + 8u, co0 + 8u < co_end, yba + vec4<u32>((8u + co0) * howo), okqa);
    st4(acc[17], co0 + 8u, co0 + 8u < co_end, ybb + vec4<u32>((8u + co0) * howo), okqb);
    st4(acc[18], co0 + 9u, co0 + 9u < co_end, yba + vec4<u32>((9u + co0) * howo), okqa);
    st4(acc[19], co0 + 9u, co0 + 9u < co_end, ybb + vec4<u32>((9u + co0) * howo), okqb);
    st4(acc[20], co0 + 10u, co0 + 10u < co_end, yba + vec4<u32>((10u + co0) * howo), okqa);
    st4(acc[21], co0 + 10u, co0 + 10u < co_end, ybb + vec4<u32>((10u + co0) * howo), okqb);
    st4(acc[22], co0 + 11u, co0 + 11u < co_end, yba + vec4<u32>((11u + co0) * howo), okqa);
    st4(acc[23], co0 + 11u, co0 + 11u < co_end, ybb + vec4<u32>((11u + co0) * howo), okqb);
    st4(acc[24], co0 + 12u, co0 + 12u < co_end, yba + vec4<u32>((12u + co0) * howo), okqa);
    st4(acc[25], co0 + 12u, co0 + 12u < co_end, ybb + vec4<u32>((12u + co0) * howo), okqb);
    st4(acc[26], co0 + 13u, co0 + 13u < co_end, yba + vec4<u32>((13u + co0) * howo), okqa);
    st4(acc[27], co0 + 13u, co0 + 13u < co_end, ybb + vec4<u32>((13u + co0) * howo), okqb);
    st4(acc[28], co0 + 14u, co0 + 14u < co_end, yba + vec4<u32>((14u + co0) * howo), okqa);
    st4(acc[29], co0 + 14u, co0 + 14u < co_end, ybb + vec4<u32>((14u + co0) * howo), okqb);
    st4(acc[30], co0 + 15u, co0 + 15u < co_end, yba + vec4<u32>((15u + co0) * howo), okqa);
    st4(acc[31], co0 + 15u, co0 + 15u < co_end, ybb + vec4<u32>((15u + co0) * howo), okqb);
}

// ---- sliding-window helpers (conv_transpose1d): 4 channels x 32 outputs, taps 4 at a time ----

// Four taps at once: acc[8c + v] += Σ_t w_t[c] · s_t[v], where s_t[v] holds window slots
// 4v + t .. 4v + t + 3 (swizzles of win[v], win[v + 1]; free renames in SoA code). Each
// accumulator gets a chain of 4 FMAs per load/store when the compiler spills it.
fn r_fma4(acc: ptr<function, array<vec4<f32>, 32>>, w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>, win: ptr<function, array<vec4<f32>, 9>>) {
    let a0 = (*win)[0];
    let b0 = (*win)[1];
    let s01 = vec4<f32>(a0.yzw, b0.x);
    let s02 = vec4<f32>(a0.zw, b0.xy);
    let s03 = vec4<f32>(a0.w, b0.xyz);
    (*acc)[0] = fma(vec4<f32>(w3.x), s03, fma(vec4<f32>(w2.x), s02, fma(vec4<f32>(w1.x), s01, fma(vec4<f32>(w0.x), a0, (*acc)[0]))));
    (*acc)[8] = fma(vec4<f32>(w3.y), s03, fma(vec4<f32>(w2.y), s02, fma(vec4<f32>(w1.y), s01, fma(vec4<f32>(w0.y), a0, (*acc)[8]))));
    (*acc)[16] = fma(vec4<f32>(w3.z), s03, fma(vec4<f32>(w2.z), s02, fma(vec4<f32>(w1.z), s01, fma(vec4<f32>(w0.z), a0, (*acc)[16]))));
    (*acc)[24] = fma(vec4<f32>(w3.w), s03, fma(vec4<f32>(w2.w), s02, fma(vec4<f32>(w1.w), s01, fma(vec4<f32>(w0.w), a0, (*acc)[24]))));
    let a1 = (*win)[1];
    let b1 = (*win)[2];
    let s11 = vec4<f32>(a1.yzw, b1.x);
    let s12 = vec4<f32>(a1.zw, b1.xy);
    let s13 = vec4<f32>(a1.w, b1.xyz);
    (*acc)[1] = fma(vec4<f32>(w3.x), s13, fma(vec4<f32>(w2.x), s12, fma(vec4<f32>(w1.x), s11, fma(vec4<f32>(w0.x), a1, (*acc)[1]))));
    (*acc)[9] = fma(vec4<f32>(w3.y), s13, fma(vec4<f32>(w2.y), s12, fma(vec4<f32>(w1.y), s11, fma(vec4<f32>(w0.y), a1, (*acc)[9]))));
    (*acc)[17] = fma(vec4<f32>(w3.z), s13, fma(vec4<f32>(w2.z), s12, fma(vec4<f32>(w1.z), s11, fma(vec4<f32>(w0.z), a1, (*acc)[17]))));
    (*acc)[25] = fma(vec4<f32>(w3.w), s13, fma(vec4<f32>(w2.w), s12, fma(vec4<f32>(w1.w), s11, fma(vec4<f32>(w0.w), a1, (*acc)[25]))));
    let a2 = (*win)[2];
    let b2 = (*win)[3];
    let s21 = vec4<f32>(a2.yzw, b2.x);
    let s22 = vec4<f32>(a2.zw, b2.xy);
    let s23 = vec4<f32>(a2.w, b2.xyz);
    (*acc)[2] = fma(vec4<f32>(w3.x), s23, fma(vec4<f32>(w2.x), s22, fma(vec4<f32>(w1.x), s21, fma(vec4<f32>(w0.x), a2, (*acc)[2]))));
    (*acc)[10] = fma(vec4<f32>(w3.y), s23, fma(vec4<f32>(w2.y), s22, fma(vec4<f32>(w1.y), s21, fma(vec4<f32>(w0.y), a2, (*acc)[10]))));
    (*acc)[18] = fma(vec4<f32>(w3.z), s23, fma(vec4<f32>(w2.z), s22, fma(vec4<f32>(w1.z), s21, fma(vec4<f32>(w0.z), a2, (*acc)[18]))));
    (*acc)[26] = fma(vec4<f32>(w3.w), s23, fma(vec4<f32>(w2.w), s22, fma(vec4<f32>(w1.w), s21, fma(vec4<f32>(w0.w), a2, (*acc)[26]))));
    let a3 = (*win)[3];
    let b3 = (*win)[4];
    let s31 = vec4<f32>(a3.yzw, b3.x);
    let s32 = vec4<f32>(a3.zw, b3.xy);
    let s33 = vec4<f32>(a3.w, b3.xyz);
    (*acc)[3] = fma(vec4<f32>(w3.x), s33, fma(vec4<f32>(w2.x), s32, fma(vec4<f32>(w1.x), s31, fma(vec4<f32>(w0.x), a3, (*acc)[3]))));
    (*acc)[11] = fma(vec4<f32>(w3.y), s33, fma(vec4<f32>(w2.y), s32, fma(vec4<f32>(w1.y), s31, fma(vec4<f32>(w0.y), a3, (*acc)[11]))));
    (*acc)[19] = fma(vec4<f32>(w3.z), s33, fma(vec4<f32>(w2.z), s32, fma(vec4<f32>(w1.z), s31, fma(vec4<f32>(w0.z), a3, (*acc)[19]))));
    (*acc)[27] = fma(vec4<f32>(w3.w), s33, fma(vec4<f32>(w2.w), s32, fma(vec4<f32>(w1.w), s31, fma(vec4<f32>(w0.w), a3, (*acc)[27]))));
    let a4 = (*win)[4];
    let b4 = (*win)[5];
    let s41 = vec4<f32>(a4.yzw, b4.x);
    let s42 = vec4<f32>(a4.zw, b4.xy);
    let s43 = vec4<f32>(a4.w, b4.xyz);
    (*acc)[4] = fma(vec4<f32>(w3.x), s43, fma(vec4<f32>(w2.x), s42, fma(vec4<f32>(w1.x), s41, fma(vec4<f32>(w0.x), a4, (*acc)[4]))));
    (*acc)[12] = fma(vec4<f32>(w3.y), s43, fma(vec4<f32>(w2.y), s42, fma(vec4<f32>(w1.y), s41, fma(vec4<f32>(w0.y), a4, (*acc)[12]))));
    (*acc)[20] = fma(vec4<f32>(w3.z), s43, fma(vec4<f32>(w2.z), s42, fma(vec4<f32>(w1.z), s41, fma(vec4<f32>(w0.z), a4, (*acc)[20]))));
    (*acc)[28] = fma(vec4<f32>(w3.w), s43, fma(vec4<f32>(w2.w), s42, fma(vec4<f32>(w1.w), s41, fma(vec4<f32>(w0.w), a4, (*acc)[28]))));
    let a5 = (*win)[5];
    let b5 = (*win)[6];
    let s51 = vec4<f32>(a5.yzw, b5.x);
    let s52 = vec4<f32>(a5.zw, b5.xy);
    let s53 = vec4<f32>(a5.w, b5.xyz);
    (*acc)[5] = fma(vec4<f32>(w3.x), s53, fma(vec4<f32>(w2.x), s52, fma(vec4<f32>(w1.x), s51, fma(vec4<f32>(w0.x), a5, (*acc)[5]))));
    (*acc)[13] = fma(vec4<f32>(w3.y), s53, fma(vec4<f32>(w2.y), s52, fma(vec4<f32>(w1.y), s51, fma(vec4<f32>(w0.y), a5, (*acc)[13]))));
    (*acc)[21] = fma(vec4<f32>(w3.z), s53, fma(vec4<f32>(w2.z), s52, fma(vec4<f32>(w1.z), s51, fma(vec4<f32>(w0.z), a5, (*acc)[21]))));
    (*acc)[29] = fma(vec4<f32>(w3.w), s53, fma(vec4<f32>(w2.w), s52, fma(vec4<f32>(w1.w), s51, fma(vec4<f32>(w0.w), a5, (*acc)[29]))));
    let a6 = (*win)[6];
    let b6 = (*win)[7];
    let s61 = vec4<f32>(a6.yzw, b6.x);
    let s62 = vec4<f32>(a6.zw, b6.xy);
    let s63 = vec4<f32>(a6.w, b6.xyz);
    (*acc)[6] = fma(vec4<f32>(w3.x), s63, fma(vec4<f32>(w2.x), s62, fma(vec4<f32>(w1.x), s61, fma(vec4<f32>(w0.x), a6, (*acc)[6]))));
    (*acc)[14] = fma(vec4<f32>(w3.y), s63, fma(vec4<f32>(w2.y), s62, fma(vec4<f32>(w1.y), s61, fma(vec4<f32>(w0.y), a6, (*acc)[14]))));
    (*acc)[22] = fma(vec4<f32>(w3.z), s63, fma(vec4<f32>(w2.z), s62, fma(vec4<f32>(w1.z), s61, fma(vec4<f32>(w0.z), a6, (*acc)[22]))));
    (*acc)[30] = fma(vec4<f32>(w3.w), s63, fma(vec4<f32>(w2.w), s62, fma(vec4<f32>(w1.w), s61, fma(vec4<f32>(w0.w), a6, (*acc)[30]))));
    let a7 = (*win)[7];
    let b7 = (*win)[8];
    let s71 = vec4<f32>(a7.yzw, b7.x);
    let s72 = vec4<f32>(a7.zw, b7.xy);
    let s73 = vec4<f32>(a7.w, b7.xyz);
    (*acc)[7] = fma(vec4<f32>(w3.x), s73, fma(vec4<f32>(w2.x), s72, fma(vec4<f32>(w1.x), s71, fma(vec4<f32>(w0.x), a7, (*acc)[7]))));
    (*acc)[15] = fma(vec4<f32>(w3.y), s73, fma(vec4<f32>(w2.y), s72, fma(vec4<f32>(w1.y), s71, fma(vec4<f32>(w0.y), a7, (*acc)[15]))));
    (*acc)[23] = fma(vec4<f32>(w3.z), s73, fma(vec4<f32>(w2.z), s72, fma(vec4<f32>(w1.z), s71, fma(vec4<f32>(w0.z), a7, (*acc)[23]))));
    (*acc)[31] = fma(vec4<f32>(w3.w), s73, fma(vec4<f32>(w2.w), s72, fma(vec4<f32>(w1.w), s71, fma(vec4<f32>(w0.w), a7, (*acc)[31]))));
}

// The 36-slot window at input positions ia0 + i·step (i = 0..35) of the row at `rowb`.
fn r_fill(win: ptr<function, array<vec4<f32>, 9>>, rowb: i32, ia0: i32, step: i32, xs: i32, lim: u32, okb: bool) {
    let ia = vec4<i32>(ia0) + vec4<i32>(LANE4) * step;
    let d = vec4<i32>(4 * step);
    let l = vec4<u32>(lim);
    let ob = vec4<bool>(okb);
    let rb = vec4<i32>(rowb);
    (*win)[0] = x4(rb + ia * xs, (vec4<u32>(ia) < l) & ob);
    (*win)[1] = x4(rb + (ia + d) * xs, (vec4<u32>(ia + d) < l) & ob);
    (*win)[2] = x4(rb + (ia + 2 * d) * xs, (vec4<u32>(ia + 2 * d) < l) & ob);
    (*win)[3] = x4(rb + (ia + 3 * d) * xs, (vec4<u32>(ia + 3 * d) < l) & ob);
    (*win)[4] = x4(rb + (ia + 4 * d) * xs, (vec4<u32>(ia + 4 * d) < l) & ob);
    (*win)[5] = x4(rb + (ia + 5 * d) * xs, (vec4<u32>(ia + 5 * d) < l) & ob);
    (*win)[6] = x4(rb + (ia + 6 * d) * xs, (vec4<u32>(ia + 6 * d) < l) & ob);
    (*win)[7] = x4(rb + (ia + 7 * d) * xs, (vec4<u32>(ia + 7 * d) < l) & ob);
    (*win)[8] = x4(rb + (ia + 8 * d) * xs, (vec4<u32>(ia + 8 * d) < l) & ob);
}

// The 4 inputs at ia0 + (i + q)·step, q = 0..3.
fn r_x4(rowb: i32, ia0: i32, i: i32, step: i32, xs: i32, lim: u32, okb: bool) -> vec4<f32> {
    let ia = vec4<i32>(ia0) + (vec4<i32>(LANE4) + vec4<i32>(i)) * step;
    return x4(vec4<i32>(rowb) + ia * xs, (vec4<u32>(ia) < vec4<u32>(lim)) & vec4<bool>(okb));
}

// Weights of tap `a` for the 4 channel rows `e` (element offsets of tap 0), 0 past the last tap.
fn r_w(e: vec4<u32>, a: u32, step: u32, ntap: u32) -> vec4<f32> {
    let o = vec4<u32>(min(a, ntap - 1u) * step);
    let v = vec4<f32>(w1(e.x + o.x), w1(e.y + o.y), w1(e.z + o.z), w1(e.w + o.w));
    return select(vec4<f32>(0.0), v, a < ntap);
}

// Shift the window up by 4 slots, `v` entering at slots 0..3.
fn r_next_up(win: ptr<function, array<vec4<f32>, 9>>, v: vec4<f32>) {
    (*win)[8] = (*win)[7];
    (*win)[7] = (*win)[6];
    (*win)[6] = (*win)[5];
    (*win)[5] = (*win)[4];
    (*win)[4] = (*win)[3];
    (*win)[3] = (*win)[2];
    (*win)[2] = (*win)[1];
    (*win)[1] = (*win)[0];
    (*win)[0] = v;
}

// ---- conv2d_3x3: 3x3, stride 1, dilation 1, input patch reuse (8 channels x 2 x 8 outputs) ----

// Input row (as the shifted vectors s) into output row jb through kernel row b, 8 channels.
// s = [x0, x1, x0>>1, x1>>1, x0>>2, x1>>2]: the 8 inputs under taps a = 0, 1, 2.
fn p_row(acc: ptr<function, array<vec4<f32>, 32>>, wk: ptr<function, array<f32, 72>>, jb: u32, b: u32, s: ptr<function, array<vec4<f32>, 6>>) {
    let w00 = vec4<f32>((*wk)[0u + b * 3u]);
    let w01 = vec4<f32>((*wk)[0u + b * 3u + 1u]);
    let w02 = vec4<f32>((*wk)[0u + b * 3u + 2u]);
    (*acc)[0u + jb * 2u] = fma(w02, (*s)[4], fma(w01, (*s)[2], fma(w00, (*s)[0], (*acc)[0u + jb * 2u])));
    (*acc)[1u + jb * 2u] = fma(w02, (*s)[5], fma(w01, (*s)[3], fma(w00, (*s)[1], (*acc)[1u + jb * 2u])));
    let w10 = vec4<f32>((*wk)[9u + b * 3u]);
    let w11 = vec4<f32>((*wk)[9u + b * 3u + 1u]);
    let w12 = vec4<f32>((*wk)[9u + b * 3u + 2u]);
    (*acc)[4u + jb * 2u] = fma(w12, (*s)[4], fma(w11, (*s)[2], fma(w10, (*s)[0], (*acc)[4u + jb * 2u])));
    (*acc)[5u + jb * 2u] = fma(w12, (*s)[5], fma(w11, (*s)[3], fma(w10, (*s)[1], (*acc)[5u + jb * 2u])));
    let w20 = vec4<f32>((*wk)[18u + b * 3u]);
    let w21 = vec4<f32>((*wk)[18u + b * 3u + 1u]);
    let w22 = vec4<f32>((*wk)[18u + b * 3u + 2u]);
    (*acc)[8u + jb * 2u] = fma(w22, (*s)[4], fma(w21, (*s)[2], fma(w20, (*s)[0], (*acc)[8u + jb * 2u])));
    (*acc)[9u + jb * 2u] = fma(w22, (*s)[5], fma(w21, (*s)[3], fma(w20, (*s)[1], (*acc)[9u + jb * 2u])));
    let w30 = vec4<f32>((*wk)[27u + b * 3u]);
    let w31 = vec4<f32>((*wk)[27u + b * 3u + 1u]);
    let w32 = vec4<f32>((*wk)[27u + b * 3u + 2u]);
    (*acc)[12u + jb * 2u] = fma(w32, (*s)[4], fma(w31, (*s)[2], fma(w30, (*s)[0], (*acc)[12u + jb * 2u])));
    (*acc)[13u + jb * 2u] = fma(w32, (*s)[5], fma(w31, (*s)[3], fma(w30, (*s)[1], (*acc)[13u + jb * 2u])));
    let w40 = vec4<f32>((*wk)[36u + b * 3u]);
    let w41 = vec4<f32>((*wk)[36u + b * 3u + 1u]);
    let w42 = vec4<f32>((*wk)[36u + b * 3u + 2u]);
    (*acc)[16u + jb * 2u] = fma(w42, (*s)[4], fma(w41, (*s)[2], fma(w40, (*s)[0], (*acc)[16u + jb * 2u])));
    (*acc)[17u + jb * 2u] = fma(w42, (*s)[5], fma(w41, (*s)[3], fma(w40, (*s)[1], (*acc)[17u + jb * 2u])));
    let w50 = vec4<f32>((*wk)[45u + b * 3u]);
    let w51 = vec4<f32>((*wk)[45u + b * 3u + 1u]);
    let w52 = vec4<f32>((*wk)[45u + b * 3u + 2u]);
    (*acc)[20u + jb * 2u] = fma(w52, (*s)[4], fma(w51, (*s)[2], fma(w50, (*s)[0], (*acc)[20u + jb * 2u])));
    (*acc)[21u + jb * 2u] = fma(w52, (*s)[5], fma(w51, (*s)[3], fma(w50, (*s)[1], (*acc)[21u + jb * 2u])));
    let w60 = vec4<f32>((*wk)[54u + b * 3u]);
    let w61 = vec4<f32>((*wk)[54u + b * 3u + 1u]);
    let w62 = vec4<f32>((*wk)[54u + b * 3u + 2u]);
    (*acc)[24u + jb * 2u] = fma(w62, (*s)[4], fma(w61, (*s)[2], fma(w60, (*s)[0], (*acc)[24u + jb * 2u])));
    (*acc)[25u + jb * 2u] = fma(w62, (*s)[5], fma(w61, (*s)[3], fma(w60, (*s)[1], (*acc)[25u + jb * 2u])));
    let w70 = vec4<f32>((*wk)[63u + b * 3u]);
    let w71 = vec4<f32>((*wk)[63u + b * 3u + 1u]);
    let w72 = vec4<f32>((*wk)[63u + b * 3u + 2u]);
    (*acc)[28u + jb * 2u] = fma(w72, (*s)[4], fma(w71, (*s)[2], fma(w70, (*s)[0], (*acc)[28u + jb * 2u])));
    (*acc)[29u + jb * 2u] = fma(w72, (*s)[5], fma(w71, (*s)[3], fma(w70, (*s)[1], (*acc)[29u + jb * 2u])));
}

// Input row ib of the patch: the 10 inputs at A positions ia0..ia0 + 9, as shifted vectors.
fn p_load(s: ptr<function, array<vec4<f32>, 6>>, xc: i32, ib: i32, ia0: i32) {
    let okb = u32(ib) < p.lb;
    let rowb = xc + ib * i32(p.xsb);
    let iaa = vec4<i32>(ia0) + vec4<i32>(LANE4);
    let iab = iaa + vec4<i32>(4);
    let iac = iaa + vec4<i32>(8);
    let xs = i32(p.xsa);
    let la = vec4<u32>(p.la);
    let a = x4(vec4<i32>(rowb) + iaa * xs, (vec4<u32>(iaa) < la) & vec4<bool>(okb));
    let b = x4(vec4<i32>(rowb) + iab * xs, (vec4<u32>(iab) < la) & vec4<bool>(okb));
    let c0 = x1(rowb + iac.x * xs, okb && u32(iac.x) < p.la);
    let c1 = x1(rowb + iac.y * xs, okb && u32(iac.y) < p.la);
    (*s)[0] = a;
    (*s)[1] = b;
    (*s)[2] = vec4<f32>(a.yzw, b.x);
    (*s)[3] = vec4<f32>(b.yzw, c0);
    (*s)[4] = vec4<f32>(a.zw, b.xy);
    (*s)[5] = vec4<f32>(b.zw, c0, c1);
}

@compute @workgroup_size(64)
fn conv2d_3x3(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let it_all = item_index(wid, nwg, lid, 64u);
    let nab = (p.oa + 7u) / 8u;
    let nbb = (p.ob + 1u) / 2u;
    let cpg = (p.cout_g + 7u) / 8u;
    let items = nab * nbb * p.n * cpg * p.groups;
    let parts = max(p.splits, 1u);
    if (it_all >= items * parts) {
        return;
    }
    let part = it_all / items;
    let it = it_all - part * items;
    let chunk = (p.cin_g + parts - 1u) / parts;
    let ci_begin = part * chunk;
    let ci_end = min(p.cin_g, ci_begin + chunk);
    let ab = it % nab;
    var t = it / nab;
    let bb = t % nbb;
    t = t / nbb;
    let nn = t % p.n;
    let cbl = t / p.n;
    let g = cbl / cpg;
    let co0 = g * p.cout_g + (cbl % cpg) * 8u;
    let co_end = (g + 1u) * p.cout_g;
    let hw = p.h * p.w;

    let ia0 = i32(ab * 8u) - i32(p.pa);
    let ib0 = i32(bb * 2u) - i32(p.pb);
    let last = vec4<u32>(co_end - 1u);
    let wra = min(vec4<u32>(co0) + LANE4, last) * p.row_stride;
    let wrb = min(vec4<u32>(co0 + 4u) + LANE4, last) * p.row_stride;
    let swap = p.swap != 0u;
    var acc: array<vec4<f32>, 32>;               // [8 channels][2 rows][2 x 4 columns]
    var wk: array<f32, 72>;                      // [8 channels][b][a]
    var s: array<vec4<f32>, 6>;
    let xg = (nn * p.cin + g * p.cin_g) * hw;
    for (var ci = ci_begin; ci < ci_end; ci++) {
        w9(&wk, 0u, wra.x + ci * 9u, swap);
        w9(&wk, 9u, wra.y + ci * 9u, swap);
        w9(&wk, 18u, wra.z + ci * 9u, swap);
        w9(&wk, 27u, wra.w + ci * 9u, swap);
        w9(&wk, 36u, wrb.x + ci * 9u, swap);
        w9(&wk, 45u, wrb.y + ci * 9u, swap);
        w9(&wk, 54u, wrb.z + ci * 9u, swap);
        w9(&wk, 63u, wrb.w + ci * 9u, swap);
        let xc = i32(xg + ci * hw);
        p_load(&s, xc, ib0, ia0);
        p_row(&acc, &wk, 0u, 0u, &s);
        p_load(&s, xc, ib0 + 1, ia0);
        p_row(&acc, &wk, 0u, 1u, &s);
        p_row(&acc, &wk, 1u, 0u, &s);
        p_load(&s, xc, ib0 + 2, ia0);
        p_row(&acc, &wk, 0u, 2u, &s);
        p_row(&acc, &wk, 1u, 1u, &s);
        p_load(&s, xc, ib0 + 3, ia0);
        p_row(&acc, &wk, 1u, 2u, &s);
    }

    let howo = p.ho * p.wo;
    let ybase = (part * p.n + nn) * p.cout * howo;
    var pidx: array<vec4<u32>, 4>;               // [row jb][half h]
    var pok: array<vec4<bool>, 4>;
    for (var q = 0u; q < 4u; q++) {
        let obi = bb * 2u + q / 2u;
        let oa = vec4<u32>(ab * 8u + (q % 2u) * 4u) + LANE4;
        pidx[q] = vec4<u32>(ybase + obi * p.ysb) + oa * p.ysa;
        pok[q] = (oa < vec4<u32>(p.oa)) & vec4<bool>(obi < p.ob);
    }
    st4(acc[0], co0 + 0u, co0 + 0u < co_end, pidx[0] + vec4<u32>((co0 + 0u) * howo), pok[0]);
    st4(acc[1], co0 + 0u, co0 + 0u < co_end, pidx[1] + vec4<u32>((co0 + 0u) * howo), pok[1]);
    st4(acc[2], co0 + 0u, co0 + 0u < co_end, pidx[2] + vec4<u32>((co0 + 0u) * howo), pok[2]);
    st4(acc[3], co0 + 0u, co0 + 0u < co_end, pidx[3] + vec4<u32>((co0 + 0u) * howo), pok[3]);
    st4(acc[4], co0 + 1u, co0 + 1u < co_end, pidx[0] + vec4<u32>((co0 + 1u) * howo), pok[0]);
    st4(acc[5], co0 + 1u, co0 + 1u < co_end, pidx[1] + vec4<u32>((co0 + 1u) * howo), pok[1]);
    st4(acc[6], co0 + 1u, co0 + 1u < co_end, pidx[2] + vec4<u32>((co0 + 1u) * howo), pok[2]);
    st4(acc[7], co0 + 1u, co0 + 1u < co_end, pidx[3] + vec4<u32>((co0 + 1u) * howo), pok[3]);
    st4(acc[8], co0 + 2u, co0 + 2u < co_end, pidx[0] + vec4<u32>((co0 + 2u) * howo), pok[0]);
    st4(acc[9], co0 + 2u, co0 + 2u < co_end, pidx[1] + vec4<u32>((co0 + 2u) * howo), pok[1]);
    st4(acc[10], co0 + 2u, co0 + 2u < co_end, pidx[2] + vec4<u32>((co0 + 2u) * howo), pok[2]);
    st4(acc[11], co0 + 2u, co0 + 2u < co_end, pidx[3] + vec4<u32>((co0 + 2u) * howo), pok[3]);
    st4(acc[12], co0 + 3u, co0 + 3u < co_end, pidx[0] + vec4<u32>((co0 + 3u) * howo), pok[0]);
    st4(acc[13], co0 + 3u, co0 + 3u < co_end, pidx[1] + vec4<u32>((co0 + 3u) * howo), pok[1]);
    st4(acc[14], co0 + 3u, co0 + 3u < co_end, pidx[2] + vec4<u32>((co0 + 3u) * howo), pok[2]);
    st4(acc[15], co0 + 3u, co0 + 3u < co_end, pidx[3] + vec4<u32>((co0 + 3u) * howo), pok[3]);
    st4(acc[16], co0 + 4u, co0 + 4u < co_end, pidx[0] + vec4<u32>((co0 + 4u) * howo), pok[0]);
    st4(acc[17], co0 + 4u, co0 + 4u < co_end, pidx[1] + vec4<u32>((co0 + 4u) * howo), pok[1]);
    st4(acc[18], co0 + 4u, co0 + 4u < co_end, pidx[2] + vec4<u32>((co0 + 4u) * howo), pok[2]);
    st4(acc[19], co0 + 4u, co0 + 4u < co_end, pidx[3] + vec4<u32>((co0 + 4u) * howo), pok[3]);
    st4(acc[20], co0 + 5u, co0 + 5u < co_end, pidx[0] + vec4<u32>((co0 + 5u) * howo), pok[0]);
    st4(acc[21], co0 + 5u, co0 + 5u < co_end, pidx[1] + vec4<u32>((co0 + 5u) * howo), pok[1]);
    st4(acc[22], co0 + 5u, co0 + 5u < co_end, pidx[2] + vec4<u32>((co0 + 5u) * howo), pok[2]);
    st4(acc[23], co0 + 5u, co0 + 5u < co_end, pidx[3] + vec4<u32>((co0 + 5u) * howo), pok[3]);
    st4(acc[24], co0 + 6u, co0 + 6u < co_end, pidx[0] + vec4<u32>((co0 + 6u) * howo), pok[0]);
    st4(acc[25], co0 + 6u, co0 + 6u < co_end, pidx[1] + vec4<u32>((co0 + 6u) * howo), pok[1]);
    st4(acc[26], co0 + 6u, co0 + 6u < co_end, pidx[2] + vec4<u32>((co0 + 6u) * howo), pok[2]);
    st4(acc[27], co0 + 6u, co0 + 6u < co_end, pidx[3] + vec4<u32>((co0 + 6u) * howo), pok[3]);
    st4(acc[28], co0 + 7u, co0 + 7u < co_end, pidx[0] + vec4<u32>((co0 + 7u) * howo), pok[0]);
    st4(acc[29], co0 + 7u, co0 + 7u < co_end, pidx[1] + vec4<u32>((co0 + 7u) * howo), pok[1]);
    st4(acc[30], co0 + 7u, co0 + 7u < co_end, pidx[2] + vec4<u32>((co0 + 7u) * howo), pok[2]);
    st4(acc[31], co0 + 7u, co0 + 7u < co_end, pidx[3] + vec4<u32>((co0 + 7u) * howo), pok[3]);
}

// ---- conv_split_sum: the split-K parts of conv2d_3x3 ----

@compute @workgroup_size(256)
fn conv_split_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = item_index(wid, nwg, lid, 256u);
    let howo = p.ho * p.wo;
    let total = p.n * p.cout * howo;
    if (i >= total) {
        return;
    }
    var v = x[i];
    for (var s = 1u; s < p.splits; s++) {
        v += x[s * total + i];
    }
    y[i] = finish(v, (i / howo) % p.cout);
}

// ---- conv_transpose1d ----
// Output t gets x[l]·w[ci, co, kk] for every t + pad = l·stride + kk·dil. For the phase
// φ = (t + pad) mod stride, the taps kk = kk0 + j·tk_step contribute (tk_step = stride/gcd), and
// tap j reads l = u − off0 − j·tx_step (u = (t + pad) div stride, tx_step = dil/gcd). An invocation
// takes 32 outputs of one phase with u = u0 + i·tx_step, so one slot shift per tap.
// Host params: w = L (input length), wo = output length, kw = k, sw = stride, pw = pad, dw = dil.

// First tap kk0 of phase `ph` (k if none) and its input offset off0.
fn phase_taps(ph: u32) -> vec2<u32> {
    for (var m = 0u; m < p.tk_step; m++) {
        if ((m * p.dw) % p.sw == ph) {
            return vec2<u32>(m, (m * p.dw - ph) / p.sw);
        }
    }
    return vec2<u32>(p.kw, 0u);
}

@compute @workgroup_size(64)
fn conv_transpose1d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let it = item_index(wid, nwg, lid, 64u);
    let e = p.tx_step;
    let span = e * 32u;
    let nu = (p.wo - 1u + p.pw) / p.sw + 1u;     // u slots per phase
    let nub = (nu + span - 1u) / span;
    let cpg = (p.cout_g + 3u) / 4u;
    if (it >= nub * e * p.sw * p.n * cpg * p.groups) {
        return;
    }
    // Item order: residue, u block, phase, batch, channel block (SIMD neighbours share a phase).
    let res = it % e;
    var t = it / e;
    let ubk = t % nub;
    t = t / nub;
    let ph = t % p.sw;
    t = t / p.sw;
    let nn = t % p.n;
    let cbl = t / p.n;
    let g = cbl / cpg;
    let cog0 = (cbl % cpg) * 4u;                 // first output channel within the group
    let u0 = ubk * span + res;

    let taps = phase_taps(ph);
    let kk0 = taps.x;
    let ntap = select(0u, (p.kw - 1u - kk0) / p.tk_step + 1u, kk0 < p.kw);
    let l0 = i32(u0) - i32(taps.y);              // input of slot 0 at tap 0
    let wcol = min(vec4<u32>(cog0) + LANE4, vec4<u32>(p.cout_g - 1u)) * p.kw + vec4<u32>(kk0);
    let step = i32(e);
    var acc: array<vec4<f32>, 32>;               // [4 channels][32 outputs]
    var win: array<vec4<f32>, 9>;                // slot i = x[l0 + (i − 3 − j)·e], taps j..j + 3
    for (var ci = 0u; ci < p.cin_g; ci++) {
        let row = g * p.cin_g + ci;
        let xr = i32((nn * p.cin + row) * p.w);
        r_fill(&win, xr, l0 - 3 * step, step, 1, p.w, true);
        let wr = wcol + vec4<u32>(row * p.row_stride);
        for (var j = 0u; j < ntap; j += 4u) {
            // Tap j + t reads slots o + 3 − t for output slot o: pass the taps in reverse order.
            let tw0 = r_w(wr, j, p.tk_step, ntap);
            let tw1 = r_w(wr, j + 1u, p.tk_step, ntap);
            let tw2 = r_w(wr, j + 2u, p.tk_step, ntap);
            let tw3 = r_w(wr, j + 3u, p.tk_step, ntap);
            r_fma4(&acc, tw3, tw2, tw1, tw0, &win);
            r_next_up(&win, r_x4(xr, l0, -7 - i32(j), step, 1, p.w, true));
        }
    }

    let cstride = p.wo;
    var idx: array<vec4<u32>, 8>;
    var ok: array<vec4<bool>, 8>;
    for (var q = 0u; q < 8u; q++) {
        let tt = vec4<i32>((vec4<u32>(u0) + (LANE4 + vec4<u32>(4u * q)) * e) * p.sw + vec4<u32>(ph)) - vec4<i32>(i32(p.pw));
        idx[q] = vec4<u32>(nn * p.cout * p.wo + g * p.cout_g * p.wo) + vec4<u32>(tt);
        ok[q] = (tt >= vec4<i32>(0)) & (tt < vec4<i32>(i32(p.wo)));
    }
    let co0 = g * p.cout_g + cog0;
    let co1 = co0 + 1u;
    let co2 = co0 + 2u;
    let co3 = co0 + 3u;
    let ok0 = cog0 < p.cout_g;
    let ok1 = cog0 + 1u < p.cout_g;
    let ok2 = cog0 + 2u < p.cout_g;
    let ok3 = cog0 + 3u < p.cout_g;
    st4(acc[0], co0, ok0, idx[0] + vec4<u32>(cog0 * cstride), ok[0]);
    st4(acc[1], co0, ok0, idx[1] + vec4<u32>(cog0 * cstride), ok[1]);
    st4(acc[2], co0, ok0, idx[2] + vec4<u32>(cog0 * cstride), ok[2]);
    st4(acc[3], co0, ok0, idx[3] + vec4<u32>(cog0 * cstride), ok[3]);
    st4(acc[4], co0, ok0, idx[4] + vec4<u32>(cog0 * cstride), ok[4]);
    st4(acc[5], co0, ok0, idx[5] + vec4<u32>(cog0 * cstride), ok[5]);
    st4(acc[6], co0, ok0, idx[6] + vec4<u32>(cog0 * cstride), ok[6]);
    st4(acc[7], co0, ok0, idx[7] + vec4<u32>(cog0 * cstride), ok[7]);
    st4(acc[8], co1, ok1, idx[0] + vec4<u32>((cog0 + 1u) * cstride), ok[0]);
    st4(acc[9], co1, ok1, idx[1] + vec4<u32>((cog0 + 1u) * cstride), ok[1]);
    st4(acc[10], co1, ok1, idx[2] + vec4<u32>((cog0 + 1u) * cstride), ok[2]);
    st4(acc[11], co1, ok1, idx[3] + vec4<u32>((cog0 + 1u) * cstride), ok[3]);
    st4(acc[12], co1, ok1, idx[4] + vec4<u32>((cog0 + 1u) * cstride), ok[4]);
    st4(acc[13], co1, ok1, idx[5] + vec4<u32>((cog0 + 1u) * cstride), ok[5]);
    st4(acc[14], co1, ok1, idx[6] + vec4<u32>((cog0 + 1u) * cstride), ok[6]);
    st4(acc[15], co1, ok1, idx[7] + vec4<u32>((cog0 + 1u) * cstride), ok[7]);
    st4(acc[16], co2, ok2, idx[0] + vec4<u32>((cog0 + 2u) * cstride), ok[0]);
    st4(acc[17], co2, ok2, idx[1] + vec4<u32>((cog0 + 2u) * cstride), ok[1]);
    st4(acc[18], co2, ok2, idx[2] + vec4<u32>((cog0 + 2u) * cstride), ok[2]);
    st4(acc[19], co2, ok2, idx[3] + vec4<u32>((cog0 + 2u) * cstride), ok[3]);
    st4(acc[20], co2, ok2, idx[4] + vec4<u32>((cog0 + 2u) * cstride), ok[4]);
    st4(acc[21], co2, ok2, idx[5] + vec4<u32>((cog0 + 2u) * cstride), ok[5]);
    st4(acc[22], co2, ok2, idx[6] + vec4<u32>((cog0 + 2u) * cstride), ok[6]);
    st4(acc[23], co2, ok2, idx[7] + vec4<u32>((cog0 + 2u) * cstride), ok[7]);
    st4(acc[24], co3, ok3, idx[0] + vec4<u32>((cog0 + 3u) * cstride), ok[0]);
    st4(acc[25], co3, ok3, idx[1] + vec4<u32>((cog0 + 3u) * cstride), ok[1]);
    st4(acc[26], co3, ok3, idx[2] + vec4<u32>((cog0 + 3u) * cstride), ok[2]);
    st4(acc[27], co3, ok3, idx[3] + vec4<u32>((cog0 + 3u) * cstride), ok[3]);
    st4(acc[28], co3, ok3, idx[4] + vec4<u32>((cog0 + 3u) * cstride), ok[4]);
    st4(acc[29], co3, ok3, idx[5] + vec4<u32>((cog0 + 3u) * cstride), ok[5]);
    st4(acc[30], co3, ok3, idx[6] + vec4<u32>((cog0 + 3u) * cstride), ok[6]);
    st4(acc[31], co3, ok3, idx[7] + vec4<u32>((cog0 + 3u) * cstride), ok[7]);
}

@compute @workgroup_size(256)
fn conv_transpose1d_naive(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = item_index(wid, nwg, lid, 256u);
    if (i >= p.n * p.cout * p.wo) {
        return;
    }
    let tt = i % p.wo;
    let co = (i / p.wo) % p.cout;
    let nn = i / (p.wo * p.cout);
    let g = co / p.cout_g;
    let cog = co - g * p.cout_g;
    var acc = 0.0;
    for (var ci = 0u; ci < p.cin_g; ci++) {
        let row = g * p.cin_g + ci;
        for (var kk = 0u; kk < p.kw; kk++) {
            let num = i32(tt + p.pw) - i32(kk * p.dw);
            if (num >= 0 && u32(num) % p.sw == 0u && u32(num) / p.sw < p.w) {
                let l = u32(num) / p.sw;
                acc += w1(row * p.row_stride + cog * p.kw + kk) * x[(nn * p.cin + row) * p.w + l];
            }
        }
    }
    y[i] = finish(acc, co);
}
