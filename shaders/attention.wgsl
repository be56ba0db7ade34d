// Family `attention`: fused scaled-dot-product attention with an online ("flash") softmax, and
// SSV2A's efficient attention. No score matrix is ever written to memory: a block of scores
// lives in registers (`sdpa`) or in one 8 KiB workgroup tile (`sdpa_wide`).
//
// Bindings: 0 q: array<vec4<f32>> (read)   queries            [feature_softmax: its input x]
//           1 k: array<vec4<f32>> (read)   keys
//           2 v: array<vec4<f32>> (read)   values
//           3 bias: array<f32>    (read)   additive score bias (dummy unless flags & HAS_BIAS)
//           4 o: array<vec4<f32>> (write)  output, laid out like q
//           5 p: AttentionParams  (uniform)
// Layout:   a head is d contiguous features; element (b, t, h, 0) of q is at vec4 index
//           b·q_b + t·q_t + h·q_h (all strides in vec4 units, so d and strides are multiples
//           of 4). [B, T, H·d] has (q_b, q_t, q_h) = (T·H·d, H·d, d)/4, [B, H, T, d] has
//           (H·T·d, d, T·d)/4; k, v, o likewise. Query head h reads key/value head
//           h / kv_group (kv_group = 1: plain multi-head; = heads: multi-query).
// Params:   batch, heads, tq, tk: problem size; d4 = d/4; groups = ceil(tq/TQ) (sdpa) or
//           ceil(tq/BQ) (sdpa_wide); scale multiplies q·k; flags: 1 causal (key j is visible
//           from query t iff j ≤ t + causal_offset), 2 bias (score += bias[(b mod bias_mod)·bias_b
//           + h·bias_h + t·bias_t + j], element units), 4 softmax each q row over its d
//           features first (efficient attention, `sdpa` only).
// Override: MODE 0 = softmax attention, 1 = linear attention (weights are the raw scores, no
//           normalisation: efficient attention's (q̂·k̂ᵀ)·v). D4 = d/4 as a pipeline constant so
//           the loops over features have constant trip counts (unrolled, arrays in registers).
//
// Entries:
//   sdpa            d ≤ 128. One invocation owns TQ (override, ≤ 4) query rows of one (b, h):
//                   q rows and their output accumulators stay in registers; it streams keys in
//                   blocks of BK = 8, computing TQ×BK scores, then rescales the accumulator
//                   once per block (running max m and sum l per row, flash-attention style).
//                   Grid: ceil(batch·heads·groups / 64) workgroups of 64, linear index folded
//                   over x/y/z; lanes of one workgroup may belong to different (b, h), which
//                   keeps small-T, large-B problems (SSV2A: T = 66, B in the thousands) dense.
//                   No workgroup memory and no barriers: on lavapipe every storage load costs a
//                   per-lane scalar loop, so the only lever is reuse of each loaded k/v value by
//                   TQ rows in registers (spec/lavapipe-matmul.md).
//   sdpa_wide       any d ≤ 512. A workgroup of 64 owns BQ = 32 query rows of one (b, h) and
//                   streams key blocks of BK = 64: (1) S = q·kᵀ for 32×64 scores, each lane an
//                   8-row × 4-key register tile looping over d; S goes to workgroup memory
//                   (8 KiB); (2) one lane per row folds the block into its running max/sum and
//                   turns S into weights; (3) each lane updates an 8-row × ceil(d/64) vec4 slice
//                   of the 32×d accumulator. Used where per-row registers would not hold q and
//                   the accumulator (the VAE's single 512-wide head). Grid: batch·heads·groups.
//   feature_softmax x [rows·d] -> softmax over each run of d = 4·d4 features; one invocation
//                   per run (efficient attention's k̂). Grid: ceil(batch / 64), batch = runs.
//
// Numerics: f32 throughout; scores are scaled before the max, so the running max makes large
//   logits safe. A score ≤ -1e30 after bias (e.g. a -inf mask) or a causally hidden key gets
//   weight 0; a query row that sees no key at all outputs zeros (PyTorch gives NaN there).

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
override TQ: u32 = 4u;

const CAUSAL: u32 = 1u;
const HAS_BIAS: u32 = 2u;
const SOFTMAX_Q: u32 = 4u;
// Scores at or below this are masked; also the running max before any visible key.
const MASKED: f32 = -1e30;

const MAX_TQ: u32 = 4u;
const MAX_D4: u32 = 32u;
const BK: u32 = 8u;

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y;
}

// The score of (b, h, query t, key j) after bias and masks, or MASKED.
fn finish_score(s: f32, b: u32, h: u32, t: u32, j: u32, kend: u32) -> f32 {
    var r = s;
    if ((p.flags & HAS_BIAS) != 0u) {
        r += bias[(b % p.bias_mod) * p.bias_b + h * p.bias_h + t * p.bias_t + j];
    }
    var hidden = j >= kend;
    if ((p.flags & CAUSAL) != 0u) {
        hidden = hidden || i32(j) > i32(t) + p.causal_offset;
    }
    return select(r, MASKED, hidden || !(r > MASKED));
}

// One past the last key any of the rows t0 ..= t_last may see.
fn key_end(t_last: u32) -> u32 {
    if ((p.flags & CAUSAL) == 0u) {
        return p.tk;
    }
    return u32(clamp(i32(t_last) + p.causal_offset + 1, 0, i32(p.tk)));
}

@compute @workgroup_size(64)
fn sdpa(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = linear_id(wid, nwg) * 64u + lid;
    if (g >= p.batch * p.heads * p.groups) {
        return;
    }
    let bh = g / p.groups;
    let t0 = (g - bh * p.groups) * TQ;
    let b = bh / p.heads;
    let h = bh - b * p.heads;
    let hk = h / p.kv_group;
    let t_last = min(t0 + TQ - 1u, p.tq - 1u);

    var qr: array<array<vec4<f32>, MAX_D4>, MAX_TQ>;
    var acc: array<array<vec4<f32>, MAX_D4>, MAX_TQ>;
    var m: array<f32, MAX_TQ>;
    var l: array<f32, MAX_TQ>;
    for (var r = 0u; r < TQ; r++) {
        let base = b * p.q_b + min(t0 + r, t_last) * p.q_t + h * p.q_h;
        for (var c = 0u; c < D4; c++) {
            qr[r][c] = q[base + c];
            acc[r][c] = vec4<f32>(0.0);
        }
        m[r] = MASKED;
        l[r] = 0.0;
    }
    if ((p.flags & SOFTMAX_Q) != 0u) {
        for (var r = 0u; r < TQ; r++) {
            var mx = qr[r][0];
            for (var c = 1u; c < D4; c++) {
                mx = max(mx, qr[r][c]);
            }
            let mq = max(max(mx.x, mx.y), max(mx.z, mx.w));
            var sum = vec4<f32>(0.0);
            for (var c = 0u; c < D4; c++) {
                qr[r][c] = exp(qr[r][c] - mq);
                sum += qr[r][c];
            }
            let inv = 1.0 / (sum.x + sum.y + sum.z + sum.w);
            for (var c = 0u; c < D4; c++) {
                qr[r][c] *= inv;
            }
        }
    }
    for (var r = 0u; r < TQ; r++) {
        for (var c = 0u; c < D4; c++) {
            qr[r][c] *= p.scale;
        }
    }

    let kend = key_end(t_last);
    let kb = b * p.k_b + hk * p.k_h;
    let vb = b * p.v_b + hk * p.v_h;
    for (var j0 = 0u; j0 < kend; j0 += BK) {
        // Scores of TQ rows × BK keys.
        var s: array<array<f32, BK>, MAX_TQ>;
        for (var jj = 0u; jj < BK; jj++) {
            let kbase = kb + min(j0 + jj, kend - 1u) * p.k_t;
            var dots: array<vec4<f32>, MAX_TQ>;
            for (var r = 0u; r < TQ; r++) {
                dots[r] = vec4<f32>(0.0);
            }
            for (var c = 0u; c < D4; c++) {
                let kc = k[kbase + c];
                for (var r = 0u; r < TQ; r++) {
                    dots[r] = fma(qr[r][c], kc, dots[r]);
                }
            }
            for (var r = 0u; r < TQ; r++) {
                let dsum = dots[r].x + dots[r].y + dots[r].z + dots[r].w;
                s[r][jj] = finish_score(dsum, b, h, min(t0 + r, t_last), j0 + jj, kend);
            }
        }
        // Fold the block into the running max and sum; s becomes the weights.
        for (var r = 0u; r < TQ; r++) {
            if (MODE == 0u) {
                var mb = m[r];
                for (var jj = 0u; jj < BK; jj++) {
                    mb = max(mb, s[r][jj]);
                }
                let alpha = exp(m[r] - mb);
                m[r] = mb;
                var lsum = 0.0;
                for (var jj = 0u; jj < BK; jj++) {
                    let w = select(exp(s[r][jj] - mb), 0.0, s[r][jj] <= MASKED);
                    s[r][jj] = w;
                    lsum += w;
                }
                l[r] = l[r] * alpha + lsum;
                for (var c = 0u; c < D4; c++) {
                    acc[r][c] *= alpha;
                }
            } else {
                for (var jj = 0u; jj < BK; jj++) {
                    s[r][jj] = select(s[r][jj], 0.0, s[r][jj] <= MASKED);
                }
            }
        }
        // acc += weights · v.
        for (var jj = 0u; jj < BK; jj++) {
            let vbase = vb + min(j0 + jj, kend - 1u) * p.v_t;
            for (var c = 0u; c < D4; c++) {
                let vc = v[vbase + c];
                for (var r = 0u; r < TQ; r++) {
                    acc[r][c] = fma(vec4<f32>(s[r][jj]), vc, acc[r][c]);
                }
            }
        }
    }

    for (var r = 0u; r < TQ; r++) {
        let t = t0 + r;
        if (t < p.tq) {
            var inv = 1.0;
            if (MODE == 0u) {
                inv = select(0.0, 1.0 / l[r], l[r] > 0.0);
            }
            let base = b * p.o_b + t * p.o_t + h * p.o_h;
            for (var c = 0u; c < D4; c++) {
                o[base + c] = acc[r][c] * inv;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// sdpa_wide: workgroup-cooperative tiles for large head dims.

const WBQ: u32 = 32u;       // query rows per workgroup
const WBK: u32 = 64u;       // keys per block
const WR: u32 = 8u;         // rows per lane (both phases)
const WK: u32 = 4u;         // keys per lane in the score phase
const WCG: u32 = 16u;       // lanes across the feature axis in the accumulate phase
const MAX_WC: u32 = 8u;     // vec4 columns per lane: d ≤ 4·WCG·MAX_WC = 512
override WC: u32 = (D4 + WCG - 1u) / WCG;

var<workgroup> w_s: array<f32, 2048>;       // WBQ × WBK scores, then weights
var<workgroup> w_alpha: array<f32, 32>;     // per-row rescale of this block
var<workgroup> w_l: array<f32, 32>;         // per-row running sum (final)

@compute @workgroup_size(64)
fn sdpa_wide(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    // Uniform per workgroup: the grid has exactly batch·heads·groups workgroups.
    let g = linear_id(wid, nwg);
    if (g >= p.batch * p.heads * p.groups) {
        return; // spare workgroups of a folded grid (uniform per workgroup)
    }
    let bh = g / p.groups;
    let t0 = (g - bh * p.groups) * WBQ;
    let b = bh / p.heads;
    let h = bh - b * p.heads;
    let hk = h / p.kv_group;
    let t_last = min(t0 + WBQ - 1u, p.tq - 1u);
    let kend = key_end(t_last);
    let qb = b * p.q_b + h * p.q_h;
    let kb = b * p.k_b + hk * p.k_h;
    let vb = b * p.v_b + hk * p.v_h;

    // Score phase: lane (rg, kg) owns rows rg·8 + i and keys kg + 16·jj of the block.
    let rg = lid / 16u;
    let kg = lid % 16u;
    // Accumulate phase: lane (rg, cg) owns rows rg·8 + i and vec4 columns cg + 16·cc.
    let cg = kg;

    // Running max and sum, owned by lane r < 32 for row r.
    var m_run = MASKED;
    var l_run = 0.0;
    var acc: array<array<vec4<f32>, MAX_WC>, WR>;
    for (var i = 0u; i < WR; i++) {
        for (var cc = 0u; cc < WC; cc++) {
            acc[i][cc] = vec4<f32>(0.0);
        }
    }

    for (var j0 = 0u; j0 < kend; j0 += WBK) {
        // (1) scores
        var dots: array<array<vec4<f32>, WK>, WR>;
        for (var i = 0u; i < WR; i++) {
            for (var jj = 0u; jj < WK; jj++) {
                dots[i][jj] = vec4<f32>(0.0);
            }
        }
        for (var c = 0u; c < D4; c++) {
            var kc: array<vec4<f32>, WK>;
            for (var jj = 0u; jj < WK; jj++) {
                kc[jj] = k[kb + min(j0 + kg + 16u * jj, kend - 1u) * p.k_t + c];
            }
            for (var i = 0u; i < WR; i++) {
                let qc = q[qb + min(t0 + rg * WR + i, t_last) * p.q_t + c];
                for (var jj = 0u; jj < WK; jj++) {
                    dots[i][jj] = fma(qc, kc[jj], dots[i][jj]);
                }
            }
        }
        for (var i = 0u; i < WR; i++) {
            let t = min(t0 + rg * WR + i, t_last);
            for (var jj = 0u; jj < WK; jj++) {
                let j = kg + 16u * jj;
                let dv = dots[i][jj];
                let s = (dv.x + dv.y + dv.z + dv.w) * p.scale;
                w_s[(rg * WR + i) * WBK + j] = finish_score(s, b, h, t, j0 + j, kend);
            }
        }
        workgroupBarrier();
        // (2) online softmax, one lane per row
        if (lid < WBQ) {
            let row = lid * WBK;
            if (MODE == 0u) {
                var mb = m_run;
                for (var j = 0u; j < WBK; j++) {
                    mb = max(mb, w_s[row + j]);
                }
                let alpha = exp(m_run - mb);
                m_run = mb;
                var lsum = 0.0;
                for (var j = 0u; j < WBK; j++) {
                    let s = w_s[row + j];
                    let w = select(exp(s - mb), 0.0, s <= MASKED);
                    w_s[row + j] = w;
                    lsum += w;
                }
                l_run = l_run * alpha + lsum;
                w_alpha[lid] = alpha;
            } else {
                for (var j = 0u; j < WBK; j++) {
                    let s = w_s[row + j];
                    w_s[row + j] = select(s, 0.0, s <= MASKED);
                }
                w_alpha[lid] = 1.0;
            }
        }
        workgroupBarrier();
        // (3) acc = acc·alpha + weights · v
        for (var i = 0u; i < WR; i++) {
            let alpha = w_alpha[rg * WR + i];
            for (var cc = 0u; cc < WC; cc++) {
                acc[i][cc] *= alpha;
            }
        }
        let jn = min(WBK, kend - j0);
        for (var j = 0u; j < jn; j++) {
            let vbase = vb + (j0 + j) * p.v_t;
            var wv: array<f32, WR>;
            for (var i = 0u; i < WR; i++) {
                wv[i] = w_s[(rg * WR + i) * WBK + j];
            }
            for (var cc = 0u; cc < WC; cc++) {
                let c = cg + WCG * cc;
                let vc = v[vbase + min(c, D4 - 1u)];
                for (var i = 0u; i < WR; i++) {
                    acc[i][cc] = fma(vec4<f32>(wv[i]), vc, acc[i][cc]);
                }
            }
        }
        workgroupBarrier();
    }

    if (lid < WBQ) {
        w_l[lid] = select(l_run, 1.0, MODE != 0u);
    }
    workgroupBarrier();
    for (var i = 0u; i < WR; i++) {
        let t = t0 + rg * WR + i;
        if (t < p.tq) {
            let l = w_l[rg * WR + i];
            let inv = select(0.0, 1.0 / l, l > 0.0);
            let base = b * p.o_b + t * p.o_t + h * p.o_h;
            for (var cc = 0u; cc < WC; cc++) {
                let c = cg + WCG * cc;
                if (c < D4) {
                    o[base + c] = acc[i][cc] * inv;
                }
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
