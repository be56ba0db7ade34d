// Family `attention`: fused scaled-dot-product attention with an online ("flash") softmax, and
// SSV2A's efficient attention. No score matrix is ever written to memory: scores exist only as
// a 4×4 block in registers (`sdpa`) or a 32×64 tile in workgroup memory (`sdpa_tiled`).
//
// Bindings: 0 q: array<vec4<f32>> (read)   queries             [feature_softmax: its input x]
//           1 k: array<vec4<f32>> (read)   keys
//           2 v: array<vec4<f32>> (read)   values
//           3 bias: array<f32>    (read)   additive score bias (dummy unless flags & HAS_BIAS)
//           4 o: array<vec4<f32>> (write)  output, laid out like q (`sdpa_tiled` also keeps its
//                                          running accumulator there between key blocks)
//           5 p: AttentionParams  (uniform)
// Layout:   a head is d contiguous features; element (b, t, h, 0) of q is at vec4 index
//           b·q_b + t·q_t + h·q_h (strides in vec4 units, so d and every stride are multiples
//           of 4). [B, T, H·d] has (q_b, q_t, q_h) = (T·H·d, H·d, d)/4 and [B, H, T, d] has
//           (H·T·d, d, T·d)/4; k, v, o likewise. Query head h reads key/value head
//           h / kv_group (kv_group = 1: multi-head; = heads: multi-query).
// Params:   batch, heads, tq, tk: problem size; d4 = d/4; groups = query tiles per (b, h):
//           ceil(tq/4) for `sdpa`, ceil(tq/32) for `sdpa_tiled`; scale multiplies q·k; flags:
//           1 causal (key j is visible from query t iff j ≤ t + causal_offset), 2 bias (score
//           += bias[(b mod bias_mod)·bias_b + h·bias_h + t·bias_t + j], element units).
// Overrides: MODE 0 = softmax attention, 1 = linear attention (weights are the raw scores,
//           no normalisation: efficient attention's (q̂·k̂ᵀ)·v). D4 = d/4 for `sdpa` (≤ 8).
//
// Entries:
//   sdpa            d ≤ 32, register path. One invocation owns 4 query rows of one (b, h),
//                   stored transposed (a mat4x4 per 4 features: column = feature, component =
//                   row) with their accumulators, and streams keys 4 at a time: 4×4 scores as
//                   4 mat×vec products, one max/rescale per 4 keys, then acc += w ⊗ v.
//                   Each loaded k or v vec4 feeds 4 rows (16 FMAs). Loops over features run to
//                   the pipeline constant D4, so they unroll and the arrays stay in registers;
//                   the arrays are only 8 long because lavapipe lowers a loop-indexed private
//                   array to an if-ladder over its whole length before unrolling (compile time
//                   grows with length × accesses). No workgroup memory, no barriers: on lavapipe
//                   every storage/workgroup load is a per-lane loop, so reuse of loaded values in
//                   registers is the lever (spec/lavapipe-matmul.md). Grid: ceil(batch·heads·
//                   groups / 64) workgroups of 64, folded over x/y/z; a workgroup may span
//                   several (b, h), which keeps small-T, large-B problems dense.
//   sdpa_tiled      any d (multiple of 4). A workgroup of 32 owns 32 query rows of one (b, h)
//                   and streams key blocks of 64: (1) each lane computes an 8-row × 8-key score
//                   tile in a runtime loop over d (16 vec4 loads feed 64 four-wide dots) into
//                   workgroup memory (8 KiB); (2) one lane per row folds the block into its
//                   running max and sum and turns scores into weights; (3) the 32×d output is
//                   cut into 8-row × 2-vec4 sub-tiles spread over the lanes, each loaded from o,
//                   rescaled, updated with weights·v (4 keys per step) and stored back; the
//                   last block divides by the row sums. Keeping the accumulator in o makes
//                   registers independent of d (the VAE's 512-wide head) and sane on real GPUs.
//                   Lanes whose rows lie past tq or keys past the last visible one skip their
//                   loads. Grid: batch·heads·groups workgroups, folded.
//   feature_softmax x [runs·d] -> softmax over each run of d = 4·d4 features; one invocation
//                   per run (efficient attention's q̂ and k̂). Grid: ceil(batch / 64), batch = runs.
//
// Numerics: f32 throughout; scores are scaled before the running max, so large logits are safe.
//   A score ≤ -1e30 after bias (e.g. a -inf mask) or a causally hidden key gets weight 0; a query
//   row that sees no key outputs zeros (PyTorch gives NaN there).

struct AttentionParams {
    batch: u32,
    heads: u32,
    tq: u32,
    tk: u32,
    groups: u32,
    kv_group: u32,
    flags: u32,
    scale: f32,
    q_b: u32,
    q_t: u32,
    q_h: u32,
    causal_offset: i32,
    k_b: u32,
    k_t: u32,
    k_h: u32,
    d4: u32,
    v_b: u32,
    v_t: u32,
    v_h: u32,
    bias_mod: u32,
    o_b: u32,
    o_t: u32,
    o_h: u32,
    pad0: u32,
    bias_b: u32,
    bias_h: u32,
    bias_t: u32,
    pad1: u32,
}

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<vec4<f32>>;
@group(0) @binding(5) var<uniform> p: AttentionParams;

override MODE: u32 = 0u;
override D4: u32 = 8u;

const CAUSAL: u32 = 1u;
const HAS_BIAS: u32 = 2u;
// Scores at or below this are masked; also the running max before any visible key.
const MASKED: f32 = -1e30;

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y;
}

// One past the last key any query row ..= t_last may see.
fn key_end(t_last: u32) -> u32 {
    if ((p.flags & CAUSAL) == 0u) {
        return p.tk;
    }
    return u32(clamp(i32(t_last) + p.causal_offset + 1, 0, i32(p.tk)));
}

// Scores of query t against keys j ..= j + 3 after bias and masks (MASKED where hidden).
fn finish_keys(s: vec4<f32>, b: u32, h: u32, t: u32, j: u32, kend: u32) -> vec4<f32> {
    var r = s;
    let jv = vec4<u32>(j, j + 1u, j + 2u, j + 3u);
    if ((p.flags & HAS_BIAS) != 0u) {
        let base = (b % p.bias_mod) * p.bias_b + h * p.bias_h + t * p.bias_t;
        let jc = min(jv, vec4<u32>(kend - 1u));
        r += vec4<f32>(bias[base + jc.x], bias[base + jc.y], bias[base + jc.z], bias[base + jc.w]);
    }
    var hidden = jv >= vec4<u32>(kend);
    if ((p.flags & CAUSAL) != 0u) {
        hidden = hidden | (vec4<i32>(jv) > vec4<i32>(i32(t) + p.causal_offset));
    }
    return select(r, vec4<f32>(MASKED), hidden | !(r > vec4<f32>(MASKED)));
}

fn hsum(x: vec4<f32>) -> f32 {
    return (x.x + x.y) + (x.z + x.w);
}

fn dots(qv: vec4<f32>, k0: vec4<f32>, k1: vec4<f32>, k2: vec4<f32>, k3: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(dot(qv, k0), dot(qv, k1), dot(qv, k2), dot(qv, k3));
}

// ---------------------------------------------------------------------------------------------
// sdpa (register path, d ≤ 32)

// Scales row i (component i of every column) of m by a[i].
fn scale_rows(m: mat4x4<f32>, a: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(m[0] * a, m[1] * a, m[2] * a, m[3] * a);
}

// Column f = w · x[f]: the 4-row × 4-feature outer product of weights w (one per row) and x.
fn outer(w: vec4<f32>, x: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(w * x.x, w * x.y, w * x.z, w * x.w);
}

// Scores of the 4 query rows against key j (a vec4 over rows) after bias and masks.
fn finish_rows(s: vec4<f32>, b: u32, h: u32, t0: u32, t_last: u32, j: u32, kend: u32) -> vec4<f32> {
    var r = s;
    let tv = min(vec4<u32>(t0, t0 + 1u, t0 + 2u, t0 + 3u), vec4<u32>(t_last));
    if ((p.flags & HAS_BIAS) != 0u) {
        let jc = min(j, kend - 1u);
        let base = vec4<u32>((b % p.bias_mod) * p.bias_b + h * p.bias_h + jc) + tv * p.bias_t;
        r += vec4<f32>(bias[base.x], bias[base.y], bias[base.z], bias[base.w]);
    }
    var hidden = vec4<bool>(j >= kend);
    if ((p.flags & CAUSAL) != 0u) {
        hidden = hidden | (vec4<i32>(i32(j)) > vec4<i32>(tv) + vec4<i32>(p.causal_offset));
    }
    return select(r, vec4<f32>(MASKED), hidden | !(r > vec4<f32>(MASKED)));
}

@compute @workgroup_size(64)
fn sdpa(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = linear_id(wid, nwg) * 64u + lid;
    if (g >= p.batch * p.heads * p.groups) {
        return;
    }
    let bh = g / p.groups;
    let t0 = (g - bh * p.groups) * 4u;
    let b = bh / p.heads;
    let h = bh - b * p.heads;
    let hk = h / p.kv_group;
    let t_last = min(t0 + 3u, p.tq - 1u);

    // 4 query rows and their accumulators, transposed: chunk c is a matrix whose column f is
    // feature 4c + f across the 4 rows. Loops over c run to the pipeline constant D4 ≤ 8, so
    // they unroll and the arrays stay in registers.
    let qb = b * p.q_b + h * p.q_h;
    let q0 = qb + t0 * p.q_t;
    let q1 = qb + min(t0 + 1u, t_last) * p.q_t;
    let q2 = qb + min(t0 + 2u, t_last) * p.q_t;
    let q3 = qb + min(t0 + 3u, t_last) * p.q_t;
    var qm: array<mat4x4<f32>, 8>;
    var am: array<mat4x4<f32>, 8>;
    for (var c = 0u; c < D4; c++) {
        qm[c] = transpose(mat4x4<f32>(q[q0 + c], q[q1 + c], q[q2 + c], q[q3 + c])) * p.scale;
        am[c] = mat4x4<f32>();
    }
    var m = vec4<f32>(MASKED);
    var l = vec4<f32>(0.0);

    let kend = key_end(t_last);
    let kb = b * p.k_b + hk * p.k_h;
    let vb = b * p.v_b + hk * p.v_h;
    for (var j0 = 0u; j0 < kend; j0 += 4u) {
        let k0 = kb + j0 * p.k_t;
        let k1 = kb + min(j0 + 1u, kend - 1u) * p.k_t;
        let k2 = kb + min(j0 + 2u, kend - 1u) * p.k_t;
        let k3 = kb + min(j0 + 3u, kend - 1u) * p.k_t;
        var s0 = vec4<f32>(0.0);
        var s1 = vec4<f32>(0.0);
        var s2 = vec4<f32>(0.0);
        var s3 = vec4<f32>(0.0);
        for (var c = 0u; c < D4; c++) {
            let qc = qm[c];
            s0 += qc * k[k0 + c];
            s1 += qc * k[k1 + c];
            s2 += qc * k[k2 + c];
            s3 += qc * k[k3 + c];
        }
        s0 = finish_rows(s0, b, h, t0, t_last, j0, kend);
        s1 = finish_rows(s1, b, h, t0, t_last, j0 + 1u, kend);
        s2 = finish_rows(s2, b, h, t0, t_last, j0 + 2u, kend);
        s3 = finish_rows(s3, b, h, t0, t_last, j0 + 3u, kend);
        var alpha = vec4<f32>(1.0);
        if (MODE == 0u) {
            let mb = max(m, max(max(s0, s1), max(s2, s3)));
            alpha = exp(m - mb);
            m = mb;
            let hid = vec4<f32>(MASKED);
            s0 = select(exp(s0 - mb), vec4<f32>(0.0), s0 <= hid);
            s1 = select(exp(s1 - mb), vec4<f32>(0.0), s1 <= hid);
            s2 = select(exp(s2 - mb), vec4<f32>(0.0), s2 <= hid);
            s3 = select(exp(s3 - mb), vec4<f32>(0.0), s3 <= hid);
            l = l * alpha + ((s0 + s1) + (s2 + s3));
        } else {
            let hid = vec4<f32>(MASKED);
            s0 = select(s0, vec4<f32>(0.0), s0 <= hid);
            s1 = select(s1, vec4<f32>(0.0), s1 <= hid);
            s2 = select(s2, vec4<f32>(0.0), s2 <= hid);
            s3 = select(s3, vec4<f32>(0.0), s3 <= hid);
        }
        let v0 = vb + j0 * p.v_t;
        let v1 = vb + min(j0 + 1u, kend - 1u) * p.v_t;
        let v2 = vb + min(j0 + 2u, kend - 1u) * p.v_t;
        let v3 = vb + min(j0 + 3u, kend - 1u) * p.v_t;
        for (var c = 0u; c < D4; c++) {
            am[c] = scale_rows(am[c], alpha) + outer(s0, v[v0 + c]) + outer(s1, v[v1 + c]) + outer(s2, v[v2 + c]) + outer(s3, v[v3 + c]);
        }
    }

    var inv = vec4<f32>(1.0);
    if (MODE == 0u) {
        inv = select(vec4<f32>(0.0), 1.0 / l, l > vec4<f32>(0.0));
    }
    let ob = b * p.o_b + h * p.o_h;
    for (var c = 0u; c < D4; c++) {
        let rows = transpose(scale_rows(am[c], inv));
        o[ob + t0 * p.o_t + c] = rows[0];
        if (t0 + 1u < p.tq) { o[ob + (t0 + 1u) * p.o_t + c] = rows[1]; }
        if (t0 + 2u < p.tq) { o[ob + (t0 + 2u) * p.o_t + c] = rows[2]; }
        if (t0 + 3u < p.tq) { o[ob + (t0 + 3u) * p.o_t + c] = rows[3]; }
    }
}

// ---------------------------------------------------------------------------------------------
// sdpa_tiled

const TBQ: u32 = 32u;   // query rows per workgroup
const TBK: u32 = 64u;   // keys per block

var<workgroup> t_s: array<vec4<f32>, 512>;   // TBQ × TBK scores, then weights: row r, keys 4i..4i+3 at r·16 + i
var<workgroup> t_alpha: array<vec4<f32>, 8>; // per-row rescale of this block (4 rows per vec4)
var<workgroup> t_inv: array<vec4<f32>, 8>;   // per-row 1/l, valid in the last block

@compute @workgroup_size(32)
fn sdpa_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = linear_id(wid, nwg);
    if (g >= p.batch * p.heads * p.groups) {
        return; // spare workgroups of a folded grid (uniform per workgroup)
    }
    let bh = g / p.groups;
    let t0 = (g - bh * p.groups) * TBQ;
    let b = bh / p.heads;
    let h = bh - b * p.heads;
    let hk = h / p.kv_group;
    let t_last = min(t0 + TBQ - 1u, p.tq - 1u);
    let kend = key_end(t_last);
    let qb = b * p.q_b + h * p.q_h;
    let kb = b * p.k_b + hk * p.k_h;
    let vb = b * p.v_b + hk * p.v_h;
    let ob = b * p.o_b + h * p.o_h;

    // Score phase: lane (sr, sk) owns rows 8·sr ..+8 and keys 8·sk ..+8 of the block.
    let sr = lid / 8u;
    let sk = lid % 8u;
    let r0 = sr * 8u;
    var q_row: array<u32, 8>;
    for (var i = 0u; i < 8u; i++) {
        q_row[i] = qb + min(t0 + r0 + i, t_last) * p.q_t;
    }
    // Accumulate phase: 8-row × 2-vec4 sub-tiles of the 32 × d output, lane-strided.
    let pairs = (p.d4 + 1u) / 2u;
    let n_sub = 4u * pairs;

    var m_run = MASKED; // lane r < 32: running max and sum of row r
    var l_run = 0.0;
    for (var j0 = 0u; j0 < kend; j0 += TBK) {
        // (1) scores, d in a runtime loop; 16 vec4 loads feed 64 four-wide dots
        let jk = j0 + 8u * sk;
        if (t0 + r0 < p.tq && jk < kend) {
            var kr: array<u32, 8>;
            for (var jj = 0u; jj < 8u; jj++) {
                kr[jj] = kb + min(jk + jj, kend - 1u) * p.k_t;
            }
            var s0 = vec4<f32>(0.0); var z0 = vec4<f32>(0.0);
            var s1 = vec4<f32>(0.0); var z1 = vec4<f32>(0.0);
            var s2 = vec4<f32>(0.0); var z2 = vec4<f32>(0.0);
            var s3 = vec4<f32>(0.0); var z3 = vec4<f32>(0.0);
            var s4 = vec4<f32>(0.0); var z4 = vec4<f32>(0.0);
            var s5 = vec4<f32>(0.0); var z5 = vec4<f32>(0.0);
            var s6 = vec4<f32>(0.0); var z6 = vec4<f32>(0.0);
            var s7 = vec4<f32>(0.0); var z7 = vec4<f32>(0.0);
            for (var c = 0u; c < p.d4; c++) {
                let ka = transpose(mat4x4<f32>(k[kr[0] + c], k[kr[1] + c], k[kr[2] + c], k[kr[3] + c]));
                let kz = transpose(mat4x4<f32>(k[kr[4] + c], k[kr[5] + c], k[kr[6] + c], k[kr[7] + c]));
                var qc = q[q_row[0] + c]; s0 += ka * qc; z0 += kz * qc;
                qc = q[q_row[1] + c]; s1 += ka * qc; z1 += kz * qc;
                qc = q[q_row[2] + c]; s2 += ka * qc; z2 += kz * qc;
                qc = q[q_row[3] + c]; s3 += ka * qc; z3 += kz * qc;
                qc = q[q_row[4] + c]; s4 += ka * qc; z4 += kz * qc;
                qc = q[q_row[5] + c]; s5 += ka * qc; z5 += kz * qc;
                qc = q[q_row[6] + c]; s6 += ka * qc; z6 += kz * qc;
                qc = q[q_row[7] + c]; s7 += ka * qc; z7 += kz * qc;
            }
            let ts = t0 + r0;
            let sc = p.scale;
            let w0 = r0 * 16u + 2u * sk;
            t_s[w0] = finish_keys(s0 * sc, b, h, min(ts, t_last), jk, kend);
            t_s[w0 + 1u] = finish_keys(z0 * sc, b, h, min(ts, t_last), jk + 4u, kend);
            t_s[w0 + 16u] = finish_keys(s1 * sc, b, h, min(ts + 1u, t_last), jk, kend);
            t_s[w0 + 17u] = finish_keys(z1 * sc, b, h, min(ts + 1u, t_last), jk + 4u, kend);
            t_s[w0 + 32u] = finish_keys(s2 * sc, b, h, min(ts + 2u, t_last), jk, kend);
            t_s[w0 + 33u] = finish_keys(z2 * sc, b, h, min(ts + 2u, t_last), jk + 4u, kend);
            t_s[w0 + 48u] = finish_keys(s3 * sc, b, h, min(ts + 3u, t_last), jk, kend);
            t_s[w0 + 49u] = finish_keys(z3 * sc, b, h, min(ts + 3u, t_last), jk + 4u, kend);
            t_s[w0 + 64u] = finish_keys(s4 * sc, b, h, min(ts + 4u, t_last), jk, kend);
            t_s[w0 + 65u] = finish_keys(z4 * sc, b, h, min(ts + 4u, t_last), jk + 4u, kend);
            t_s[w0 + 80u] = finish_keys(s5 * sc, b, h, min(ts + 5u, t_last), jk, kend);
            t_s[w0 + 81u] = finish_keys(z5 * sc, b, h, min(ts + 5u, t_last), jk + 4u, kend);
            t_s[w0 + 96u] = finish_keys(s6 * sc, b, h, min(ts + 6u, t_last), jk, kend);
            t_s[w0 + 97u] = finish_keys(z6 * sc, b, h, min(ts + 6u, t_last), jk + 4u, kend);
            t_s[w0 + 112u] = finish_keys(s7 * sc, b, h, min(ts + 7u, t_last), jk, kend);
            t_s[w0 + 113u] = finish_keys(z7 * sc, b, h, min(ts + 7u, t_last), jk + 4u, kend);
        } else {
            // Rows past the end of the sequence or keys past kend: nothing to compute.
            for (var i = 0u; i < 8u; i++) {
                t_s[(r0 + i) * 16u + 2u * sk] = vec4<f32>(MASKED);
                t_s[(r0 + i) * 16u + 2u * sk + 1u] = vec4<f32>(MASKED);
            }
        }
        workgroupBarrier();

        // (2) one lane per row folds the block into its running max and sum
        let last = j0 + TBK >= kend;
        if (lid < TBQ) {
            let row = lid * 16u;
            var alpha = 1.0;
            if (MODE == 0u) {
                var mx = vec4<f32>(m_run);
                for (var i = 0u; i < 16u; i++) {
                    mx = max(mx, t_s[row + i]);
                }
                let mb = max(max(mx.x, mx.y), max(mx.z, mx.w));
                alpha = exp(m_run - mb);
                m_run = mb;
                var lsum = vec4<f32>(0.0);
                for (var i = 0u; i < 16u; i++) {
                    let sv = t_s[row + i];
                    let wv = select(exp(sv - vec4<f32>(mb)), vec4<f32>(0.0), sv <= vec4<f32>(MASKED));
                    t_s[row + i] = wv;
                    lsum += wv;
                }
                l_run = l_run * alpha + hsum(lsum);
            } else {
                for (var i = 0u; i < 16u; i++) {
                    let sv = t_s[row + i];
                    t_s[row + i] = select(sv, vec4<f32>(0.0), sv <= vec4<f32>(MASKED));
                }
                l_run = 1.0;
            }
            t_alpha[lid / 4u][lid % 4u] = alpha;
            t_inv[lid / 4u][lid % 4u] = select(0.0, 1.0 / l_run, l_run > 0.0);
        }
        workgroupBarrier();

        // (3) o = o·alpha + weights · v on 8 × 2 sub-tiles; o holds the running accumulator
        let first = j0 == 0u;
        let n4 = (min(TBK, kend - j0) + 3u) / 4u;
        for (var st = lid; st < n_sub; st += 32u) {
            let rg = st / pairs;
            let ca = 2u * (st - rg * pairs);
            let cb = min(ca + 1u, p.d4 - 1u);
            let pr0 = rg * 8u;
            if (t0 + pr0 >= p.tq) {
                continue; // rows past the end of the sequence
            }
            let al = t_alpha[2u * rg];
            let ah = t_alpha[2u * rg + 1u];
            var o_row: array<u32, 8>;
            for (var i = 0u; i < 8u; i++) {
                o_row[i] = ob + min(t0 + pr0 + i, t_last) * p.o_t;
            }
            var a0 = vec4<f32>(0.0); var b0 = vec4<f32>(0.0);
            var a1 = vec4<f32>(0.0); var b1 = vec4<f32>(0.0);
            var a2 = vec4<f32>(0.0); var b2 = vec4<f32>(0.0);
            var a3 = vec4<f32>(0.0); var b3 = vec4<f32>(0.0);
            var a4 = vec4<f32>(0.0); var b4 = vec4<f32>(0.0);
            var a5 = vec4<f32>(0.0); var b5 = vec4<f32>(0.0);
            var a6 = vec4<f32>(0.0); var b6 = vec4<f32>(0.0);
            var a7 = vec4<f32>(0.0); var b7 = vec4<f32>(0.0);
            if (!first) {
                a0 = o[o_row[0] + ca] * al.x; b0 = o[o_row[0] + cb] * al.x;
                a1 = o[o_row[1] + ca] * al.y; b1 = o[o_row[1] + cb] * al.y;
                a2 = o[o_row[2] + ca] * al.z; b2 = o[o_row[2] + cb] * al.z;
                a3 = o[o_row[3] + ca] * al.w; b3 = o[o_row[3] + cb] * al.w;
                a4 = o[o_row[4] + ca] * ah.x; b4 = o[o_row[4] + cb] * ah.x;
                a5 = o[o_row[5] + ca] * ah.y; b5 = o[o_row[5] + cb] * ah.y;
                a6 = o[o_row[6] + ca] * ah.z; b6 = o[o_row[6] + cb] * ah.z;
                a7 = o[o_row[7] + ca] * ah.w; b7 = o[o_row[7] + cb] * ah.w;
            }
            for (var j4 = 0u; j4 < n4; j4++) {
                let j = j0 + 4u * j4;
                let v0 = vb + min(j, kend - 1u) * p.v_t;
                let v1 = vb + min(j + 1u, kend - 1u) * p.v_t;
                let v2 = vb + min(j + 2u, kend - 1u) * p.v_t;
                let v3 = vb + min(j + 3u, kend - 1u) * p.v_t;
                // columns ca and cb of the 4 keys, as matrices whose column i is key i
                let va = mat4x4<f32>(v[v0 + ca], v[v1 + ca], v[v2 + ca], v[v3 + ca]);
                let vbm = mat4x4<f32>(v[v0 + cb], v[v1 + cb], v[v2 + cb], v[v3 + cb]);
                let wr = pr0 * 16u + j4;
                var w = t_s[wr];
                a0 += va * w; b0 += vbm * w;
                w = t_s[wr + 16u];
                a1 += va * w; b1 += vbm * w;
                w = t_s[wr + 32u];
                a2 += va * w; b2 += vbm * w;
                w = t_s[wr + 48u];
                a3 += va * w; b3 += vbm * w;
                w = t_s[wr + 64u];
                a4 += va * w; b4 += vbm * w;
                w = t_s[wr + 80u];
                a5 += va * w; b5 += vbm * w;
                w = t_s[wr + 96u];
                a6 += va * w; b6 += vbm * w;
                w = t_s[wr + 112u];
                a7 += va * w; b7 += vbm * w;
            }
            if (last) {
                let il = t_inv[2u * rg];
                let ih = t_inv[2u * rg + 1u];
                a0 *= il.x; b0 *= il.x; a1 *= il.y; b1 *= il.y;
                a2 *= il.z; b2 *= il.z; a3 *= il.w; b3 *= il.w;
                a4 *= ih.x; b4 *= ih.x; a5 *= ih.y; b5 *= ih.y;
                a6 *= ih.z; b6 *= ih.z; a7 *= ih.w; b7 *= ih.w;
            }
            let nr = min(8u, p.tq - min(p.tq, t0 + pr0));
            let wb = ca + 1u < p.d4;
            if (nr > 0u) { o[o_row[0] + ca] = a0; if (wb) { o[o_row[0] + cb] = b0; } }
            if (nr > 1u) { o[o_row[1] + ca] = a1; if (wb) { o[o_row[1] + cb] = b1; } }
            if (nr > 2u) { o[o_row[2] + ca] = a2; if (wb) { o[o_row[2] + cb] = b2; } }
            if (nr > 3u) { o[o_row[3] + ca] = a3; if (wb) { o[o_row[3] + cb] = b3; } }
            if (nr > 4u) { o[o_row[4] + ca] = a4; if (wb) { o[o_row[4] + cb] = b4; } }
            if (nr > 5u) { o[o_row[5] + ca] = a5; if (wb) { o[o_row[5] + cb] = b5; } }
            if (nr > 6u) { o[o_row[6] + ca] = a6; if (wb) { o[o_row[6] + cb] = b6; } }
            if (nr > 7u) { o[o_row[7] + ca] = a7; if (wb) { o[o_row[7] + cb] = b7; } }
        }
        workgroupBarrier();
    }
    if (kend == 0u) {
        // No row of this tile sees a key: zeros.
        for (var st = lid; st < TBQ * p.d4; st += 32u) {
            let row = st / p.d4;
            if (t0 + row < p.tq) {
                o[ob + (t0 + row) * p.o_t + st - row * p.d4] = vec4<f32>(0.0);
            }
        }
    }
}
// ---------------------------------------------------------------------------------------------
// feature_softmax: o = softmax over each run of 4·d4 consecutive features of q.

@compute @workgroup_size(64)
fn feature_softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = linear_id(wid, nwg) * 64u + lid;
    if (g >= p.batch) {
        return;
    }
    let base = g * p.d4;
    var mx = q[base];
    for (var c = 1u; c < p.d4; c++) {
        mx = max(mx, q[base + c]);
    }
    let m = max(max(mx.x, mx.y), max(mx.z, mx.w));
    var sum = vec4<f32>(0.0);
    for (var c = 0u; c < p.d4; c++) {
        sum += exp(q[base + c] - m);
    }
    let inv = 1.0 / (sum.x + sum.y + sum.z + sum.w);
    for (var c = 0u; c < p.d4; c++) {
        o[base + c] = exp(q[base + c] - m) * inv;
    }
}
