// Family `matmul`: C = act(alpha·A·op(B) + bias), batched and strided, f32 accumulation.
//
// Bindings: 0 a: array<vec4<f32>> (read)  A (f32, read 4 at a time); element (m, k) of batch
//                                          (i0, i1) at a_off + i0·sa0 + i1·sa1 + m·lda + k
//           1 b: array<vec2<u32>> (read)  B: fp16 pairs (element 2i in the low half of its u32,
//                                          W_F16 = true) or f32 bits (W_F16 = false). `linear*`
//                                          read B as [n, k]: element at b_off + i0·sb0 + i1·sb1
//                                          + n·ldb + k; `bmm_nn` as [k, n] (… + k·ldb + n), f32
//           2 bias: array<f32> (read)     [n], used when flags bit 0 is set (else a dummy buffer)
//           3 c: array<f32> (write)       element (m, n) at c_off + i0·sc0 + i1·sc1 + m·ldc + n
//           4 p: MatmulParams (uniform)
//           (Offsets and strides count scalar elements — f32, or f16 for fp16 B — not vectors;
//           buffers are untyped, so an f32 tensor binds as A or B alike.)
// Params:   m, n, k; lda/ldb/ldc row strides; batches = b0·b1 with batch z = i0·b1 + i1;
//           act = `ops::Act` as u32; alpha scales A·op(B) before the bias; tiles_m, tiles_n,
//           lanes_n describe the grid (below).
// Overrides: W_F16 (bool, `linear*`): B storage. fp16 B must have b_off, strides and ldb
//           multiples of 4 (a `Weight` always has); weight rows are zero-padded to a multiple
//           of 4 values, so the last 4-wide k step of a weight row reads zeros, not a next row.
//           ALIGNED (bool): A's offset, batch strides and lda are multiples of 4 and, for f32
//           B, B's are even, so the kernels may use vector loads. The host picks it per call;
//           the unaligned variant assembles vectors from scalar reads (slower, compiled only
//           when a caller needs it, e.g. k % 4 ≠ 0).
// Grid:     tiled entries: 64 invocations per workgroup, each computing a TM×TN = 8×16 block
//           of C in registers. Invocation l is lane (l / lanes_n, l % lanes_n) of a
//           (64 / lanes_n) × lanes_n lane grid (lanes_n a power of two chosen by the host to
//           fit m and n), so a workgroup covers (64 / lanes_n)·8 rows × lanes_n·16 columns.
//           Linear workgroup index w (folded over x/y/z) = (z·tiles_m + tile_m)·tiles_n + tile_n.
//           linear_naive: one invocation per element of C (invocation z·m·n + row·n + col), 64
//           per workgroup.
// Entries:  linear       C = A·Bᵀ, register-tiled (nn.Linear, 1×1 conv, attention Q·Kᵀ with
//                        W_F16 = false)
//           bmm_nn       C = A·B with f32 B [k, n], register-tiled (attention P·V)
//           linear_naive C = A·Bᵀ, one dot product per invocation: the benchmark baseline
//           split_sum    C = act(alpha·Σ_z A_z + bias): adds the `batches` planes [batches, m,
//                        n] (contiguous, read through `a`) of a split-K `linear` (the host runs
//                        `linear` as a batch over k chunks: batch z reads A and B at k offset
//                        z·k and writes plane z, no bias or activation); C [m, n] at c_off, row
//                        stride ldc; one output per invocation, planes summed in order
// Design:   measured on lavapipe (shared/spec/lavapipe-matmul.md and the numbers below):
//           llvmpipe runs each lane's storage loads as scalar loops, so the cost is the loads
//           per lane and FMAs are nearly free. Each invocation loads 8 rows of A and 16 rows
//           of B per 4-wide k step (8 vec4 + 16 vec2<u32> loads with fp16 B) for 512 FMAs,
//           with no workgroup memory and no barriers (workgroup tiles are slower on llvmpipe).
//           8×16 keeps the 128 accumulators within a real GPU's register file, and lanes of a
//           workgroup share A rows, which GPUs serve from cache. Rows/columns past m/n are
//           clamped to the last one (results not stored); values past k (last step when
//           k % 4 ≠ 0) are zeroed with `select`. Bias and activation run in a second, rolled
//           loop over the invocation's block (re-reading C), so the activation code is not
//           unrolled 128 times.
//           Measured on this lavapipe (1024³, fp16 B, CPU-time normalised to 2 threads): the
//           block written with loops over private arrays 8.3 GFLOP/s; written out with constant
//           indices 20.5 (llvmpipe keeps loop-indexed arrays in memory); plus vec4/vec2 loads
//           27.5; a vec4<u32> B binding was slower for fp16 (22.6) and no faster for f32.
//           LLVM compile of a tiled pipeline: about 0.7 s of CPU on a cold Mesa shader cache.
// Subgroups: not used. naga rejects a whole module that uses subgroup ops on a device without
//           the feature (and wgpu 30 never enables it in browsers), so the subgroup-broadcast
//           kernel of the spec (about 2x on lavapipe) needs its own family file, selected when
//           `GpuInfo::subgroups`, with this one as the fallback.
// Numerics: f32 accumulation in k order (a mat4x4·vec4 per 4 k values); activations as in
//           unary.wgsl (the same erf/tanh helpers).

struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    flags: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    act: u32,
    b1: u32,
    batches: u32,
    tiles_m: u32,
    tiles_n: u32,
    sa0: u32,
    sa1: u32,
    sb0: u32,
    sb1: u32,
    sc0: u32,
    sc1: u32,
    a_off: u32,
    b_off: u32,
    c_off: u32,
    alpha: f32,
    lanes_n: u32,
    pad0: u32,
}

@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<uniform> p: MatmulParams;

override W_F16: bool = true;
override ALIGNED: bool = true;

const TM: u32 = 8u;
const TN: u32 = 16u;
const WG: u32 = 64u;

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

// ---- loads ----

// A[o .. o + 4] (o a multiple of 4 when ALIGNED).
fn load_a4(o: u32) -> vec4<f32> {
    if (ALIGNED) {
        return a[o >> 2u];
    }
    return vec4<f32>(a1(o), a1(o + 1u), a1(o + 2u), a1(o + 3u));
}

fn a1(i: u32) -> f32 {
    return a[i >> 2u][i & 3u];
}

// B[o .. o + 4] (W_F16: o a multiple of 4; f32: o even when ALIGNED).
fn load_b4(o: u32) -> vec4<f32> {
    if (W_F16) {
        let u = b[o >> 2u];
        return vec4<f32>(unpack2x16float(u.x), unpack2x16float(u.y));
    }
    if (ALIGNED) {
        return vec4<f32>(bitcast<vec2<f32>>(b[o >> 1u]), bitcast<vec2<f32>>(b[(o >> 1u) + 1u]));
    }
    return vec4<f32>(b1(o), b1(o + 1u), b1(o + 2u), b1(o + 3u));
}

// B[o] of an f32 B.
fn b1(o: u32) -> f32 {
    return bitcast<f32>(b[o >> 1u][o & 1u]);
}

// B[o] of an fp16 B.
fn b1_f16(o: u32) -> f32 {
    let h = unpack2x16float(b[o >> 2u][(o >> 1u) & 1u]);
    return select(h.x, h.y, (o & 1u) != 0u);
}

// ---- tiles ----
//
// The per-invocation block is written out with constant indices only (no loops over it):
// llvmpipe keeps loop-indexed private arrays in memory (measured 2.5x slower).

struct Tile {
    ok: bool,
    m0: u32,
    n0: u32,
    a_base: u32,
    b_base: u32,
    c_base: u32,
}

fn tile_of(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> Tile {
    let w = wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y;
    let per_batch = p.tiles_m * p.tiles_n;
    let z = w / per_batch;
    let r = w - z * per_batch;
    let tm = r / p.tiles_n;
    let tn = r - tm * p.tiles_n;
    let lanes_m = WG / p.lanes_n;
    let lm = lid / p.lanes_n;
    let ln = lid - lm * p.lanes_n;
    var t: Tile;
    t.m0 = (tm * lanes_m + lm) * TM;
    t.n0 = (tn * p.lanes_n + ln) * TN;
    t.ok = z < p.batches && t.m0 < p.m && t.n0 < p.n;
    let i0 = z / p.b1;
    let i1 = z - i0 * p.b1;
    t.a_base = p.a_off + i0 * p.sa0 + i1 * p.sa1;
    t.b_base = p.b_off + i0 * p.sb0 + i1 * p.sb1;
    t.c_base = p.c_off + i0 * p.sc0 + i1 * p.sc1;
    return t;
}

// Offsets of the block's 8 A rows (clamped to the last row: loads stay in bounds).
fn a_rows(t: Tile) -> array<u32, 8> {
    let last = p.m - 1u;
    let b = t.a_base;
    let m0 = t.m0;
    return array<u32, 8>(
        b + min(m0, last) * p.lda, b + min(m0 + 1u, last) * p.lda, b + min(m0 + 2u, last) * p.lda, b + min(m0 + 3u, last) * p.lda,
        b + min(m0 + 4u, last) * p.lda, b + min(m0 + 5u, last) * p.lda, b + min(m0 + 6u, last) * p.lda, b + min(m0 + 7u, last) * p.lda);
}

// `linear`: offsets of the B rows for columns n0 + 4q .. n0 + 4q + 3, clamped to the last one.
fn b_rows4(t: Tile, q: u32) -> vec4<u32> {
    let cols = min(vec4<u32>(t.n0 + 4u * q) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.n - 1u));
    return vec4<u32>(t.b_base) + cols * p.ldb;
}

// One 4-wide k step: k0 = its first k, kc = k0 .. k0 + 3 clamped to k − 1, km = (k0 + i < k).
// Values at k ≥ k (only in the last step when k % 4 ≠ 0) are zeroed with `select` in both
// operands, so nothing read past a row (the next row, or bounds-checked reads past the buffer)
// reaches an accumulator; the masks cost a few ALU ops per step and save a peeled tail step
// (a second copy of the 512-FMA block: measured 20 % longer LLVM compile, no faster).

// A values of the block's 8 rows.
fn a_step(ar: array<u32, 8>, k0: u32, kc: vec4<u32>, km: vec4<bool>) -> array<vec4<f32>, 8> {
    return array<vec4<f32>, 8>(
        a_masked(ar[0], k0, kc, km), a_masked(ar[1], k0, kc, km), a_masked(ar[2], k0, kc, km), a_masked(ar[3], k0, kc, km),
        a_masked(ar[4], k0, kc, km), a_masked(ar[5], k0, kc, km), a_masked(ar[6], k0, kc, km), a_masked(ar[7], k0, kc, km));
}

fn a_masked(r: u32, k0: u32, kc: vec4<u32>, km: vec4<bool>) -> vec4<f32> {
    let z = vec4<f32>(0.0);
    if (ALIGNED) {
        return select(z, load_a4(r + k0), km);
    }
    return select(z, vec4<f32>(a1(r + kc.x), a1(r + kc.y), a1(r + kc.z), a1(r + kc.w)), km);
}

// A 4-column × 4-k block of op(B) as a matrix whose column kk holds the 4 columns' values at
// k0 + kk, so `acc += b · a4` adds Σ_kk a4[kk]·op(B)[k0 + kk][cols].
// `linear` (B rows = columns of op(B)): r = the 4 B rows' offsets.
fn b_nt(r: vec4<u32>, k0: u32, kc: vec4<u32>, km: vec4<bool>) -> mat4x4<f32> {
    if (W_F16) {
        // Weight rows are zero-padded to a multiple of 4 values: the plain load is exact.
        return transpose(mat4x4<f32>(load_b4(r.x + k0), load_b4(r.y + k0), load_b4(r.z + k0), load_b4(r.w + k0)));
    }
    let z = vec4<f32>(0.0);
    if (ALIGNED) {
        return transpose(mat4x4<f32>(
            select(z, load_b4(r.x + k0), km), select(z, load_b4(r.y + k0), km),
            select(z, load_b4(r.z + k0), km), select(z, load_b4(r.w + k0), km)));
    }
    return transpose(mat4x4<f32>(
        select(z, vec4<f32>(b1(r.x + kc.x), b1(r.x + kc.y), b1(r.x + kc.z), b1(r.x + kc.w)), km),
        select(z, vec4<f32>(b1(r.y + kc.x), b1(r.y + kc.y), b1(r.y + kc.z), b1(r.y + kc.w)), km),
        select(z, vec4<f32>(b1(r.z + kc.x), b1(r.z + kc.y), b1(r.z + kc.z), b1(r.z + kc.w)), km),
        select(z, vec4<f32>(b1(r.w + kc.x), b1(r.w + kc.y), b1(r.w + kc.z), b1(r.w + kc.w)), km)));
}

// `bmm_nn` (B is [k, n]): c = offset of the first of the 4 columns, r = offsets of the 4 B
// rows kc. Columns past n are read (bounds-checked, so safe) but only feed accumulators that
// are never stored.
fn b_nn(c: u32, r: vec4<u32>, km: vec4<bool>) -> mat4x4<f32> {
    let z = vec4<f32>(0.0);
    return mat4x4<f32>(
        select(z, load_b4(r.x + c), km.x), select(z, load_b4(r.y + c), km.y),
        select(z, load_b4(r.z + c), km.z), select(z, load_b4(r.w + c), km.w));
}

// acc[4i + q] += m_q · av[i]: one 4-wide k step of the 8×16 block.
fn step(acc: ptr<function, array<vec4<f32>, 32>>, av: array<vec4<f32>, 8>, m0: mat4x4<f32>, m1: mat4x4<f32>, m2: mat4x4<f32>, m3: mat4x4<f32>) {
    (*acc)[0] += m0 * av[0]; (*acc)[1] += m1 * av[0]; (*acc)[2] += m2 * av[0]; (*acc)[3] += m3 * av[0];
    (*acc)[4] += m0 * av[1]; (*acc)[5] += m1 * av[1]; (*acc)[6] += m2 * av[1]; (*acc)[7] += m3 * av[1];
    (*acc)[8] += m0 * av[2]; (*acc)[9] += m1 * av[2]; (*acc)[10] += m2 * av[2]; (*acc)[11] += m3 * av[2];
    (*acc)[12] += m0 * av[3]; (*acc)[13] += m1 * av[3]; (*acc)[14] += m2 * av[3]; (*acc)[15] += m3 * av[3];
    (*acc)[16] += m0 * av[4]; (*acc)[17] += m1 * av[4]; (*acc)[18] += m2 * av[4]; (*acc)[19] += m3 * av[4];
    (*acc)[20] += m0 * av[5]; (*acc)[21] += m1 * av[5]; (*acc)[22] += m2 * av[5]; (*acc)[23] += m3 * av[5];
    (*acc)[24] += m0 * av[6]; (*acc)[25] += m1 * av[6]; (*acc)[26] += m2 * av[6]; (*acc)[27] += m3 * av[6];
    (*acc)[28] += m0 * av[7]; (*acc)[29] += m1 * av[7]; (*acc)[30] += m2 * av[7]; (*acc)[31] += m3 * av[7];
}

// One row of the block: alpha·v into the columns n0 .. n0 + 15 that exist.
fn store_row(t: Tile, i: u32, v: array<vec4<f32>, 4>) {
    let row = t.m0 + i;
    if (row >= p.m) {
        return;
    }
    let o = t.c_base + row * p.ldc + t.n0;
    let cols = min(TN, p.n - t.n0);
    for (var j = 0u; j < cols; j++) {
        c[o + j] = v[j / 4u][j % 4u] * p.alpha;
    }
}

// Write the block, then (rolled loop) add the bias and apply the activation in place.
fn store_tile(t: Tile, acc: ptr<function, array<vec4<f32>, 32>>) {
    store_row(t, 0u, array<vec4<f32>, 4>((*acc)[0], (*acc)[1], (*acc)[2], (*acc)[3]));
    store_row(t, 1u, array<vec4<f32>, 4>((*acc)[4], (*acc)[5], (*acc)[6], (*acc)[7]));
    store_row(t, 2u, array<vec4<f32>, 4>((*acc)[8], (*acc)[9], (*acc)[10], (*acc)[11]));
    store_row(t, 3u, array<vec4<f32>, 4>((*acc)[12], (*acc)[13], (*acc)[14], (*acc)[15]));
    store_row(t, 4u, array<vec4<f32>, 4>((*acc)[16], (*acc)[17], (*acc)[18], (*acc)[19]));
    store_row(t, 5u, array<vec4<f32>, 4>((*acc)[20], (*acc)[21], (*acc)[22], (*acc)[23]));
    store_row(t, 6u, array<vec4<f32>, 4>((*acc)[24], (*acc)[25], (*acc)[26], (*acc)[27]));
    store_row(t, 7u, array<vec4<f32>, 4>((*acc)[28], (*acc)[29], (*acc)[30], (*acc)[31]));
    let has_bias = (p.flags & 1u) != 0u;
    if (has_bias || p.act != 0u) {
        let rows = min(TM, p.m - t.m0);
        let cols = min(TN, p.n - t.n0);
        for (var i = 0u; i < rows; i++) {
            let o = t.c_base + (t.m0 + i) * p.ldc + t.n0;
            for (var j = 0u; j < cols; j++) {
                var v = c[o + j];
                if (has_bias) {
                    v += bias[t.n0 + j];
                }
                c[o + j] = apply_act(v, p.act);
            }
        }
    }
}

@compute @workgroup_size(64)
fn linear(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = tile_of(wid, nwg, lid);
    if (!t.ok) {
        return;
    }
    let ar = a_rows(t);
    let r0 = b_rows4(t, 0u);
    let r1 = b_rows4(t, 1u);
    let r2 = b_rows4(t, 2u);
    let r3 = b_rows4(t, 3u);
    var acc: array<vec4<f32>, 32>;
    for (var k0 = 0u; k0 < p.k; k0 += 4u) {
        let kv = vec4<u32>(k0) + vec4<u32>(0u, 1u, 2u, 3u);
        let km = kv < vec4<u32>(p.k);
        let kc = min(kv, vec4<u32>(p.k - 1u));
        step(&acc, a_step(ar, k0, kc, km), b_nt(r0, k0, kc, km), b_nt(r1, k0, kc, km), b_nt(r2, k0, kc, km), b_nt(r3, k0, kc, km));
    }
    store_tile(t, &acc);
}

@compute @workgroup_size(64)
fn bmm_nn(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = tile_of(wid, nwg, lid);
    if (!t.ok) {
        return;
    }
    let ar = a_rows(t);
    let c0 = t.b_base + t.n0;
    var acc: array<vec4<f32>, 32>;
    for (var k0 = 0u; k0 < p.k; k0 += 4u) {
        let kv = vec4<u32>(k0) + vec4<u32>(0u, 1u, 2u, 3u);
        let km = kv < vec4<u32>(p.k);
        let kc = min(kv, vec4<u32>(p.k - 1u));
        let r = kc * p.ldb;
        step(&acc, a_step(ar, k0, kc, km), b_nn(c0, r, km), b_nn(c0 + 4u, r, km), b_nn(c0 + 8u, r, km), b_nn(c0 + 12u, r, km));
    }
    store_tile(t, &acc);
}

@compute @workgroup_size(64)
fn split_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y) * WG + lid;
    let mn = p.m * p.n;
    if (i >= mn) {
        return;
    }
    var v = a1(i);
    for (var z = 1u; z < p.batches; z++) {
        v += a1(z * mn + i);
    }
    let row = i / p.n;
    let col = i - row * p.n;
    v = v * p.alpha;
    if ((p.flags & 1u) != 0u) {
        v += bias[col];
    }
    c[p.c_off + row * p.ldc + col] = apply_act(v, p.act);
}

@compute @workgroup_size(64)
fn linear_naive(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y) * WG + lid;
    let mn = p.m * p.n;
    if (i >= mn * p.batches) {
        return;
    }
    let z = i / mn;
    let r = i - z * mn;
    let row = r / p.n;
    let col = r - row * p.n;
    let i0 = z / p.b1;
    let i1 = z - i0 * p.b1;
    let ao = p.a_off + i0 * p.sa0 + i1 * p.sa1 + row * p.lda;
    let bo = p.b_off + i0 * p.sb0 + i1 * p.sb1 + col * p.ldb;
    var s = 0.0;
    for (var k = 0u; k < p.k; k++) {
        var w: f32;
        if (W_F16) {
            w = b1_f16(bo + k);
        } else {
            w = b1(bo + k);
        }
        s = fma(a1(ao + k), w, s);
    }
    var v = s * p.alpha;
    if ((p.flags & 1u) != 0u) {
        v += bias[col];
    }
    c[p.c_off + i0 * p.sc0 + i1 * p.sc1 + row * p.ldc + col] = apply_act(v, p.act);
}
