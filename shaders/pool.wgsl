// Family `pool`: 2-D pooling over NCHW f32 tensors.
//
// Bindings: 0 x: array<f32> (read), 1 y: array<f32> (write), 2 p: PoolParams (uniform).
// Params:   planes = N·C; h, w = input size; ho, wo = output size; kh, kw; sh, sw (stride);
//           ph, pw (padding).
// Grid:     one invocation per output element, 256 per workgroup, linear index folded.
// Entries:  max_pool2d — padding behaves as −∞ (PyTorch `MaxPool2d(padding=…)`): only in-range
//           inputs take part, so a window of all-negative values never returns 0 (candle's
//           zero padding gets YOLOv8's SPPF borders wrong).

struct PoolParams {
    planes: u32,
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
    pad0: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: PoolParams;

@compute @workgroup_size(256)
fn max_pool2d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y) * 256u + lid;
    if (i >= p.planes * p.ho * p.wo) { return; }
    let ox = i % p.wo;
    let oy = (i / p.wo) % p.ho;
    let plane = i / (p.wo * p.ho);
    let base = plane * p.h * p.w;
    // −∞ via a variable: Tint rejects −∞ in a constant expression.
    var bits = 0xff800000u;
    var m = bitcast<f32>(bits);
    let y0 = i32(oy * p.sh) - i32(p.ph);
    let x0 = i32(ox * p.sw) - i32(p.pw);
    for (var ky = 0; ky < i32(p.kh); ky = ky + 1) {
        let iy = y0 + ky;
        if (iy < 0 || iy >= i32(p.h)) { continue; }
        for (var kx = 0; kx < i32(p.kw); kx = kx + 1) {
            let ix = x0 + kx;
            if (ix < 0 || ix >= i32(p.w)) { continue; }
            m = max(m, x[base + u32(iy) * p.w + u32(ix)]);
        }
    }
    y[i] = m;
}
