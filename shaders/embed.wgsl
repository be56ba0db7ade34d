// Family `embed`: row gather from a weight table (token and position embeddings) or from an
// f32 activation tensor (token permutations: Swin windows, shifts, patch merging).
//
// Bindings: 0 table: array<u32> (read; a `Weight` [rows, dim]: fp16 pairs or f32 bits, rows
//           padded to `row_stride` values; or a `Tensor`'s f32 bits with W_F16 false and
//           row_stride = dim), 1 ids: array<f32> (read; row indices as f32, exact
//           up to 2^24), 2 y: array<f32> (write), 3 p: EmbedParams (uniform).
// Params:   n = number of ids; dim; row_stride (values per stored row); rows (ids are clamped to
//           [0, rows − 1]: callers validate ids on the CPU, the clamp only keeps reads in bounds).
// Override: W_F16 — true for fp16 storage, false for f32.
// Grid:     one invocation per output element (n·dim), 256 per workgroup, linear index folded.
// Entries:  gather_rows — y[i, :] = table[ids[i], :].

override W_F16: bool = true;

struct EmbedParams {
    n: u32,
    dim: u32,
    row_stride: u32,
    rows: u32,
}

@group(0) @binding(0) var<storage, read> table: array<u32>;
@group(0) @binding(1) var<storage, read> ids: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: EmbedParams;

fn load(i: u32) -> f32 {
    if (W_F16) {
        let pair = unpack2x16float(table[i / 2u]);
        return select(pair.x, pair.y, (i & 1u) == 1u);
    }
    return bitcast<f32>(table[i]);
}

@compute @workgroup_size(256)
fn gather_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y) * 256u + lid;
    if (i >= p.n * p.dim) { return; }
    let r = i / p.dim;
    let c = i - r * p.dim;
    let row = u32(clamp(ids[r], 0.0, f32(p.rows - 1u)));
    y[i] = load(row * p.row_stride + c);
}
