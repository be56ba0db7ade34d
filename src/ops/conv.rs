//! Convolutions (`shaders/conv.wgsl`): `conv2d`, `conv1d` (conv2d with H = 1) and
//! `conv_transpose1d`, with bias and a fused activation, on NCHW / NCL f32 tensors and weights
//! kept in the PyTorch layout as a [`Weight`] (fp16 or f32 rows).
//!
//! Kernel choice ([`ConvKernel::Auto`]):
//! - 3×3, stride 1, dilation 1 → `conv2d_3x3` (input patch reused by all 9 taps);
//! - everything else (1×1, strided, dilated, 1-D, patchify) → `conv2d` (implicit-GEMM register
//!   tile, 4-wide weight loads).
//!
//! On GPUs, a conv whose grid is smaller than [`Gpu::parallel_target`] (the UNet's deep levels,
//! where the fixed cost of a step was `conv2d_3x3` dispatches running 1.2 ms each on 8 to 173
//! workgroups of an H200) is split over its reduction (split-K): `conv2d_3x3` (input channels)
//! or `conv2d` (4-wide steps of (ci, ky, kx)) writes S partial sums and `conv_split_sum` adds
//! them, the bias and the activation.
//!
//! For the 3×3 kernel the host picks the axis along which the 2×8 output patch is 8 wide ("A",
//! W or H) so that short axes (UNet's 32×2, 64×4 levels) waste the fewest tile slots.
//!
//! Measured and dropped (lavapipe, GFLOP per CPU-second, same process): a bounds-free 1×1 entry
//! (6.5 vs 6.5 for `conv2d` on 512→512 at 64×64) and a sliding-window "row" kernel for 1-D and
//! k×1 shapes (k3: 3.7 vs 6.7, k7: 6.8 vs 8.1, k11: 8.2 vs 7.8 for `conv2d`). Per-tap scalar
//! weight loads cost what the window saved.

use super::{params, split_count, u32_of, Act};
use crate::device::{Gpu, Grid};
use crate::shaders::{entry::conv as e, Entry};
use crate::tensor::{Tensor, Weight};
use crate::{Error, Result};

params!(ConvParams {
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
});

/// Work items per invocation tile, mirrored from the WGSL constants (for the grid size).
const G_TC: usize = 16;
const G_TP: usize = 8;
const P_TC: usize = 8;
const P_TB: usize = 2;
const P_TA: usize = 8;
const T_TC: usize = 4;
const T_TP: usize = 32;
/// Fewest input channels per split-K part of `conv2d_3x3` (each is 9 taps × 128 outputs per
/// invocation: below this the partial sums' traffic outweighs the loop).
const MIN_SPLIT_CHANNELS: usize = 8;
/// Fewest 4-wide reduction steps per split-K part of `conv2d` (each is 4 taps × 128 outputs).
const MIN_SPLIT_STEPS: usize = 16;
/// Invocations per workgroup of the tiled entries (the naive ones use 256).
const WG: u32 = 64;

/// Which conv2d kernel runs. `Auto` is what models use; the others exist for tests and benchmarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ConvKernel {
    #[default]
    Auto,
    /// `conv2d`: any shape.
    General,
    /// `conv2d_3x3`: needs a 3×3 kernel, stride 1, dilation 1; never split.
    Patch3x3,
    /// The kernel `Auto` picks (`conv2d_3x3` or `conv2d`), its reduction split into this many
    /// parts (≥ 1) summed by `conv_split_sum` (tests; `Auto` splits when the grid is small for
    /// the adapter).
    Split(usize),
    /// `conv2d_naive` / `conv_transpose1d_naive`: one output per invocation (baseline).
    Naive,
}

/// `nn.Conv2d` arguments besides the weight and bias. `Default` is stride 1, no padding,
/// dilation 1, one group, no activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dArgs {
    /// (sh, sw)
    pub stride: (usize, usize),
    /// (ph, pw), zeros.
    pub padding: (usize, usize),
    /// (dh, dw)
    pub dilation: (usize, usize),
    pub groups: usize,
    /// Applied after the bias.
    pub act: Act,
}

impl Default for Conv2dArgs {
    fn default() -> Self {
        Conv2dArgs { stride: (1, 1), padding: (0, 0), dilation: (1, 1), groups: 1, act: Act::None }
    }
}

impl Conv2dArgs {
    /// Stride `s` and padding `p` on both axes.
    pub fn new(stride: usize, padding: usize) -> Self {
        Conv2dArgs { stride: (stride, stride), padding: (padding, padding), ..Default::default() }
    }
    pub fn dilation(self, d: usize) -> Self {
        Conv2dArgs { dilation: (d, d), ..self }
    }
    pub fn groups(self, groups: usize) -> Self {
        Conv2dArgs { groups, ..self }
    }
    pub fn act(self, act: Act) -> Self {
        Conv2dArgs { act, ..self }
    }
}

/// `nn.Conv1d` arguments besides the weight and bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv1dArgs {
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
    pub act: Act,
}

impl Default for Conv1dArgs {
    fn default() -> Self {
        Conv1dArgs { stride: 1, padding: 0, dilation: 1, groups: 1, act: Act::None }
    }
}

impl Conv1dArgs {
    pub fn new(stride: usize, padding: usize) -> Self {
        Conv1dArgs { stride, padding, ..Default::default() }
    }
    pub fn dilation(self, dilation: usize) -> Self {
        Conv1dArgs { dilation, ..self }
    }
    pub fn groups(self, groups: usize) -> Self {
        Conv1dArgs { groups, ..self }
    }
    pub fn act(self, act: Act) -> Self {
        Conv1dArgs { act, ..self }
    }
    fn to_2d(self) -> Conv2dArgs {
        Conv2dArgs { stride: (1, self.stride), padding: (0, self.padding), dilation: (1, self.dilation), groups: self.groups, act: self.act }
    }
}

/// `nn.ConvTranspose1d` arguments besides the weight and bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTranspose1dArgs {
    pub stride: usize,
    pub padding: usize,
    pub output_padding: usize,
    pub dilation: usize,
    pub groups: usize,
    pub act: Act,
}

impl Default for ConvTranspose1dArgs {
    fn default() -> Self {
        ConvTranspose1dArgs { stride: 1, padding: 0, output_padding: 0, dilation: 1, groups: 1, act: Act::None }
    }
}

impl ConvTranspose1dArgs {
    pub fn new(stride: usize, padding: usize) -> Self {
        ConvTranspose1dArgs { stride, padding, ..Default::default() }
    }
    pub fn output_padding(self, output_padding: usize) -> Self {
        ConvTranspose1dArgs { output_padding, ..self }
    }
    pub fn dilation(self, dilation: usize) -> Self {
        ConvTranspose1dArgs { dilation, ..self }
    }
    pub fn groups(self, groups: usize) -> Self {
        ConvTranspose1dArgs { groups, ..self }
    }
    pub fn act(self, act: Act) -> Self {
        ConvTranspose1dArgs { act, ..self }
    }
}

/// Output length of a convolution along one axis, or an error naming the op.
pub fn conv_out_len(op: &str, len: usize, k: usize, stride: usize, pad: usize, dil: usize) -> Result<usize> {
    let span = dil as i128 * (k as i128 - 1) + 1;
    let num = len as i128 + 2 * pad as i128 - span;
    if num < 0 {
        return Err(Error::arg(op, format!("output size ≤ 0: input {len} + 2·padding {pad} is shorter than the dilated kernel {span}")));
    }
    Ok((num / stride as i128) as usize + 1)
}

/// Output length of a transposed convolution, or an error naming the op.
pub fn conv_transpose_out_len(op: &str, len: usize, k: usize, a: &ConvTranspose1dArgs) -> Result<usize> {
    let out = (len as i128 - 1) * a.stride as i128 - 2 * a.padding as i128 + a.dilation as i128 * (k as i128 - 1) + a.output_padding as i128 + 1;
    if out <= 0 || len == 0 {
        return Err(Error::arg(op, format!("output size {out} ≤ 0 for input length {len}, kernel {k}, {a:?}")));
    }
    Ok(out as usize)
}

fn check_common(op: &str, x: &Tensor, w: &Weight, bias: Option<&Tensor>, cout: usize) -> Result<()> {
    if !w.gpu().same(x.gpu()) || bias.is_some_and(|b| !b.gpu().same(x.gpu())) {
        return Err(Error::arg(op, "tensors live on different GPU devices"));
    }
    if let Some(b) = bias {
        b.expect(&format!("{op}.bias"), &[cout])?;
    }
    Ok(())
}

/// Everything a launch needs, resolved from the shapes.
struct Plan {
    entry: Entry,
    params: ConvParams,
    items: u64,
    wg: u32,
}

impl Tensor {
    /// 2-D convolution (PyTorch `F.conv2d`) with optional bias and a fused activation.
    /// x: [n, cin, h, w], weight: [cout, cin/groups, kh, kw], bias: [cout] -> [n, cout, ho, wo]
    /// with ho = (h + 2·ph − dh·(kh − 1) − 1)/sh + 1 (likewise wo).
    pub fn conv2d(&self, weight: &Weight, bias: Option<&Tensor>, args: &Conv2dArgs) -> Result<Tensor> {
        self.conv2d_with(weight, bias, args, ConvKernel::Auto)
    }

    /// [`Tensor::conv2d`] with an explicit kernel choice (tests, benchmarks). A kernel that
    /// cannot run this shape is an error.
    pub fn conv2d_with(&self, weight: &Weight, bias: Option<&Tensor>, args: &Conv2dArgs, kernel: ConvKernel) -> Result<Tensor> {
        let op = "conv2d";
        let [n, cin, h, w] = self.dims(op)?;
        let ws = weight.shape();
        if ws.len() != 4 {
            return Err(Error::shape("conv2d.weight", "[cout, cin/groups, kh, kw]", ws));
        }
        let (cout, kh, kw) = (ws[0], ws[2], ws[3]);
        self.conv_nd(op, [n, cin, h, w], weight, [cout, ws[1], kh, kw], bias, args, kernel, false)
    }

    /// 1-D convolution (PyTorch `F.conv1d`) with optional bias and a fused activation.
    /// x: [n, cin, l], weight: [cout, cin/groups, k], bias: [cout] -> [n, cout, lo]
    /// with lo = (l + 2·padding − dilation·(k − 1) − 1)/stride + 1.
    pub fn conv1d(&self, weight: &Weight, bias: Option<&Tensor>, args: &Conv1dArgs) -> Result<Tensor> {
        self.conv1d_with(weight, bias, args, ConvKernel::Auto)
    }

    /// [`Tensor::conv1d`] with an explicit kernel choice (tests, benchmarks).
    pub fn conv1d_with(&self, weight: &Weight, bias: Option<&Tensor>, args: &Conv1dArgs, kernel: ConvKernel) -> Result<Tensor> {
        let op = "conv1d";
        let [n, cin, l] = self.dims(op)?;
        let ws = weight.shape();
        if ws.len() != 3 {
            return Err(Error::shape("conv1d.weight", "[cout, cin/groups, k]", ws));
        }
        let y = self.conv_nd(op, [n, cin, 1, l], weight, [ws[0], ws[1], 1, ws[2]], bias, &args.to_2d(), kernel, true)?;
        let s = y.shape().to_vec();
        y.reshape([s[0], s[1], s[3]])
    }

    #[allow(clippy::too_many_arguments)]
    fn conv_nd(
        &self,
        op: &str,
        [n, cin, h, w]: [usize; 4],
        weight: &Weight,
        [cout, wcin, kh, kw]: [usize; 4],
        bias: Option<&Tensor>,
        a: &Conv2dArgs,
        kernel: ConvKernel,
        one_d: bool,
    ) -> Result<Tensor> {
        let g = a.groups;
        crate::ensure!(g > 0, op, "groups must be ≥ 1");
        crate::ensure!(a.stride.0 > 0 && a.stride.1 > 0, op, "stride must be ≥ 1, got {:?}", a.stride);
        crate::ensure!(a.dilation.0 > 0 && a.dilation.1 > 0, op, "dilation must be ≥ 1, got {:?}", a.dilation);
        crate::ensure!(cin % g == 0, op, "{cin} input channels are not divisible by groups = {g}");
        crate::ensure!(cout % g == 0, op, "{cout} output channels are not divisible by groups = {g}");
        crate::ensure!(kh > 0 && kw > 0 && cout > 0, op, "empty weight {:?}", weight.shape());
        if wcin != cin / g {
            let want: Vec<usize> = if one_d { vec![cout, cin / g, kw] } else { vec![cout, cin / g, kh, kw] };
            return Err(Error::shape(format!("{op}.weight"), want, weight.shape()));
        }
        check_common(op, self, weight, bias, cout)?;
        let ho = conv_out_len(op, h, kh, a.stride.0, a.padding.0, a.dilation.0)?;
        let wo = conv_out_len(op, w, kw, a.stride.1, a.padding.1, a.dilation.1)?;
        let shape = if one_d { vec![n, cout, 1, wo] } else { vec![n, cout, ho, wo] };
        let y = Tensor::empty(self.gpu(), shape)?;
        if y.numel() == 0 {
            return Ok(y);
        }
        u32_of(op, self.numel())?;
        u32_of(op, y.numel())?;
        let u = |v: usize| u32_of(op, v);
        let mut p = ConvParams {
            n: u(n)?,
            cin: u(cin)?,
            cout: u(cout)?,
            groups: u(g)?,
            cin_g: u(cin / g)?,
            cout_g: u(cout / g)?,
            cols: u(weight.cols())?,
            row_stride: u(weight.row_stride())?,
            h: u(h)?,
            w: u(w)?,
            ho: u(ho)?,
            wo: u(wo)?,
            kh: u(kh)?,
            kw: u(kw)?,
            sh: u(a.stride.0)?,
            sw: u(a.stride.1)?,
            ph: u(a.padding.0)?,
            pw: u(a.padding.1)?,
            dh: u(a.dilation.0)?,
            dw: u(a.dilation.1)?,
            has_bias: bias.is_some() as u32,
            act: a.act as u32,
            ..Default::default()
        };
        let plan = plan_conv2d(op, &mut p, kernel)?;
        u32_of(op, plan.items as usize)?; // kernels compute the item count in u32
        let b = bias.map(|b| b.raw());
        let workgroups = plan.items.div_ceil(plan.wg as u64);
        let splits = match kernel {
            ConvKernel::Split(s) => s,
            ConvKernel::Auto if plan.entry == e::CONV2D_3X3 => split_count(self.gpu(), workgroups, cin / g, MIN_SPLIT_CHANNELS, |_| true),
            ConvKernel::Auto if plan.entry == e::CONV2D => split_count(self.gpu(), workgroups, weight.cols().div_ceil(4), MIN_SPLIT_STEPS, |_| true),
            _ => 1,
        };
        if splits > 1 {
            return self.conv2d_split(weight, bias, plan, y, splits);
        }
        self.gpu().launch(
            plan.entry,
            &weight.overrides(),
            &plan.params,
            &[Some(self.raw()), Some(weight.raw()), b, Some(y.raw())],
            Grid::threads(plan.items, plan.wg)?,
        )?;
        Ok(y)
    }

    /// `conv2d_3x3` or `conv2d` split into `splits` parts over the reduction (see the module
    /// doc): the parts into a scratch [splits, n, cout, ho, wo], then `conv_split_sum` into `y`.
    fn conv2d_split(&self, weight: &Weight, bias: Option<&Tensor>, plan: Plan, y: Tensor, splits: usize) -> Result<Tensor> {
        let op = "conv2d";
        let gpu: &Gpu = self.gpu();
        let mut shape = vec![splits];
        shape.extend_from_slice(y.shape());
        let parts = Tensor::empty(gpu, shape)?;
        u32_of(op, parts.numel())?;
        let items = plan.items * splits as u64;
        u32_of(op, items as usize)?;
        let s = u32_of(op, splits)?;
        let pp = ConvParams { splits: s, has_bias: 0, act: 0, ..plan.params };
        gpu.launch(plan.entry, &weight.overrides(), &pp, &[Some(self.raw()), Some(weight.raw()), None, Some(parts.raw())], Grid::threads(items, plan.wg)?)?;
        let sp = ConvParams { splits: s, ..plan.params };
        gpu.launch(
            e::CONV_SPLIT_SUM,
            &weight.overrides(),
            &sp,
            &[Some(parts.raw()), None, bias.map(|b| b.raw()), Some(y.raw())],
            Grid::threads(y.numel() as u64, 256)?,
        )?;
        Ok(y)
    }

    /// 1-D transposed convolution (PyTorch `F.conv_transpose1d`) with optional bias and a fused
    /// activation. x: [n, cin, l], weight: [cin, cout/groups, k] (PyTorch ConvTranspose1d
    /// layout, used as stored), bias: [cout] -> [n, cout, lo] with
    /// lo = (l − 1)·stride − 2·padding + dilation·(k − 1) + output_padding + 1.
    pub fn conv_transpose1d(&self, weight: &Weight, bias: Option<&Tensor>, args: &ConvTranspose1dArgs) -> Result<Tensor> {
        self.conv_transpose1d_with(weight, bias, args, ConvKernel::Auto)
    }

    /// [`Tensor::conv_transpose1d`] with an explicit kernel: `Auto`/`General` (tiled) or `Naive`.
    pub fn conv_transpose1d_with(&self, weight: &Weight, bias: Option<&Tensor>, a: &ConvTranspose1dArgs, kernel: ConvKernel) -> Result<Tensor> {
        let op = "conv_transpose1d";
        let [n, cin, l] = self.dims(op)?;
        let ws = weight.shape();
        if ws.len() != 3 {
            return Err(Error::shape("conv_transpose1d.weight", "[cin, cout/groups, k]", ws));
        }
        let (wcin, cout_g, k) = (ws[0], ws[1], ws[2]);
        let g = a.groups;
        crate::ensure!(g > 0, op, "groups must be ≥ 1");
        crate::ensure!(a.stride > 0, op, "stride must be ≥ 1");
        crate::ensure!(a.dilation > 0, op, "dilation must be ≥ 1");
        crate::ensure!(cin % g == 0, op, "{cin} input channels are not divisible by groups = {g}");
        crate::ensure!(k > 0 && cout_g > 0, op, "empty weight {ws:?}");
        // PyTorch requires output_padding < max(stride, dilation).
        crate::ensure!(a.output_padding < a.stride.max(a.dilation), op, "output_padding {} must be smaller than stride or dilation", a.output_padding);
        if wcin != cin {
            return Err(Error::shape("conv_transpose1d.weight", vec![cin, cout_g, k], ws));
        }
        let cout = cout_g * g;
        check_common(op, self, weight, bias, cout)?;
        let lo = conv_transpose_out_len(op, l, k, a)?;
        let y = Tensor::empty(self.gpu(), [n, cout, lo])?;
        if y.numel() == 0 {
            return Ok(y);
        }
        u32_of(op, self.numel())?;
        u32_of(op, y.numel())?;
        let u = |v: usize| u32_of(op, v);
        let gcd = gcd(a.stride, a.dilation);
        let p = ConvParams {
            n: u(n)?,
            cin: u(cin)?,
            cout: u(cout)?,
            groups: u(g)?,
            cin_g: u(cin / g)?,
            cout_g: u(cout_g)?,
            cols: u(weight.cols())?,
            row_stride: u(weight.row_stride())?,
            h: 1,
            w: u(l)?,
            ho: 1,
            wo: u(lo)?,
            kh: 1,
            kw: u(k)?,
            sh: 1,
            sw: u(a.stride)?,
            ph: 0,
            pw: u(a.padding)?,
            dh: 1,
            dw: u(a.dilation)?,
            has_bias: bias.is_some() as u32,
            act: a.act as u32,
            tk_step: u(a.stride / gcd)?,
            tx_step: u(a.dilation / gcd)?,
            ..Default::default()
        };
        let (entry, items, wg) = match kernel {
            ConvKernel::Naive => (e::CONV_TRANSPOSE1D_NAIVE, (n * cout * lo) as u64, 256),
            ConvKernel::Auto | ConvKernel::General => {
                let ex = a.dilation / gcd;
                let nu = (lo - 1 + a.padding) / a.stride + 1;
                let nub = nu.div_ceil(ex * T_TP);
                let items = nub * ex * a.stride * n * cout_g.div_ceil(T_TC) * g;
                (e::CONV_TRANSPOSE1D, items as u64, WG)
            }
            other => return Err(Error::arg(op, format!("kernel {other:?} does not implement conv_transpose1d"))),
        };
        u32_of(op, items as usize)?; // the kernel computes the item count in u32
        let b = bias.map(|b| b.raw());
        self.gpu().launch(entry, &weight.overrides(), &p, &[Some(self.raw()), Some(weight.raw()), b, Some(y.raw())], Grid::threads(items, wg)?)?;
        Ok(y)
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Tile slots used along A and B (output positions computed, including wasted ones).
fn slots(len: usize, tile: usize) -> usize {
    len.div_ceil(tile) * tile
}

/// Fill the A/B view of `p` with A = W (`swap = false`) or A = H.
fn set_axes(p: &mut ConvParams, swap: bool) {
    if !swap {
        (p.la, p.lb, p.oa, p.ob, p.pa, p.pb) = (p.w, p.h, p.wo, p.ho, p.pw, p.ph);
        (p.xsa, p.xsb, p.ysa, p.ysb) = (1, p.w, 1, p.wo);
    } else {
        (p.la, p.lb, p.oa, p.ob, p.pa, p.pb) = (p.h, p.w, p.ho, p.wo, p.ph, p.pw);
        (p.xsa, p.xsb, p.ysa, p.ysb) = (p.w, 1, p.wo, 1);
    }
    p.swap = swap as u32;
}

fn plan_conv2d(op: &str, p: &mut ConvParams, kernel: ConvKernel) -> Result<Plan> {
    let (n, groups, cout_g) = (p.n as usize, p.groups as usize, p.cout_g as usize);
    let (ho, wo) = (p.ho as usize, p.wo as usize);
    let is_3x3 = p.kh == 3 && p.kw == 3 && p.sh == 1 && p.sw == 1 && p.dh == 1 && p.dw == 1;
    let plan = match kernel {
        ConvKernel::Naive => Plan { entry: e::CONV2D_NAIVE, params: *p, items: (n * p.cout as usize * ho * wo) as u64, wg: 256 },
        ConvKernel::Split(0) => return Err(Error::arg(op, "split-K needs at least one part")),
        ConvKernel::Auto | ConvKernel::Patch3x3 | ConvKernel::Split(_) if is_3x3 => {
            // Lay the 8-wide side of the 2×8 output patch along the axis that wastes fewer slots.
            let cost_w = slots(wo, P_TA) * slots(ho, P_TB);
            let cost_h = slots(ho, P_TA) * slots(wo, P_TB);
            set_axes(p, cost_h < cost_w);
            let items = (p.oa as usize).div_ceil(P_TA) * (p.ob as usize).div_ceil(P_TB) * n * cout_g.div_ceil(P_TC) * groups;
            Plan { entry: e::CONV2D_3X3, params: *p, items: items as u64, wg: WG }
        }
        ConvKernel::Patch3x3 => {
            return Err(Error::arg(op, "the 3x3 kernel needs a 3×3 kernel, stride 1 and dilation 1"));
        }
        ConvKernel::Auto | ConvKernel::General | ConvKernel::Split(_) => {
            let items = (n * ho * wo).div_ceil(G_TP) * cout_g.div_ceil(G_TC) * groups;
            Plan { entry: e::CONV2D, params: *p, items: items as u64, wg: WG }
        }
    };
    Ok(plan)
}

/// CPU references: plain loops with f64 accumulation, the executable specification of the
/// kernels. Weights are given in their logical PyTorch layout as f32 (pass fp16-rounded values
/// to compare with an fp16 [`Weight`]).
pub mod reference {
    use super::{Conv1dArgs, Conv2dArgs, ConvTranspose1dArgs};
    use crate::tensor::HostTensor;

    /// x: [n, cin, h, w], w: [cout, cin/g, kh, kw] -> [n, cout, ho, wo]. Panics on bad shapes
    /// (it is a test oracle; the GPU op validates).
    pub fn conv2d(x: &HostTensor, w: &HostTensor, bias: Option<&[f32]>, a: &Conv2dArgs) -> HostTensor {
        let [n, cin, h, wd] = x.shape[..] else { panic!("x rank") };
        let [cout, cin_g, kh, kw] = w.shape[..] else { panic!("w rank") };
        let g = a.groups;
        let cout_g = cout / g;
        assert_eq!(cin_g * g, cin);
        let ho = (h + 2 * a.padding.0 - a.dilation.0 * (kh - 1) - 1) / a.stride.0 + 1;
        let wo = (wd + 2 * a.padding.1 - a.dilation.1 * (kw - 1) - 1) / a.stride.1 + 1;
        let mut y = vec![0f32; n * cout * ho * wo];
        for nn in 0..n {
            for co in 0..cout {
                let gi = co / cout_g;
                for oy in 0..ho {
                    for ox in 0..wo {
                        let mut acc = bias.map_or(0.0, |b| b[co] as f64);
                        for ci in 0..cin_g {
                            let c = gi * cin_g + ci;
                            for ky in 0..kh {
                                let iy = (oy * a.stride.0 + ky * a.dilation.0) as isize - a.padding.0 as isize;
                                if iy < 0 || iy >= h as isize {
                                    continue;
                                }
                                for kx in 0..kw {
                                    let ix = (ox * a.stride.1 + kx * a.dilation.1) as isize - a.padding.1 as isize;
                                    if ix < 0 || ix >= wd as isize {
                                        continue;
                                    }
                                    let xv = x.data[((nn * cin + c) * h + iy as usize) * wd + ix as usize] as f64;
                                    let wv = w.data[((co * cin_g + ci) * kh + ky) * kw + kx] as f64;
                                    acc += xv * wv;
                                }
                            }
                        }
                        y[((nn * cout + co) * ho + oy) * wo + ox] = a.act.apply(acc) as f32;
                    }
                }
            }
        }
        HostTensor { shape: vec![n, cout, ho, wo], data: y }
    }

    /// x: [n, cin, l], w: [cout, cin/g, k] -> [n, cout, lo].
    pub fn conv1d(x: &HostTensor, w: &HostTensor, bias: Option<&[f32]>, a: &Conv1dArgs) -> HostTensor {
        let [n, cin, l] = x.shape[..] else { panic!("x rank") };
        let [cout, cin_g, k] = w.shape[..] else { panic!("w rank") };
        let x4 = HostTensor { shape: vec![n, cin, 1, l], data: x.data.clone() };
        let w4 = HostTensor { shape: vec![cout, cin_g, 1, k], data: w.data.clone() };
        let y = conv2d(&x4, &w4, bias, &a.to_2d());
        let lo = y.shape[3];
        HostTensor { shape: vec![n, cout, lo], data: y.data }
    }

    /// x: [n, cin, l], w: [cin, cout/g, k] (PyTorch ConvTranspose1d layout) -> [n, cout, lo].
    /// Scatter form: every input sample adds x·w to output (l·stride − padding + kk·dilation).
    pub fn conv_transpose1d(x: &HostTensor, w: &HostTensor, bias: Option<&[f32]>, a: &ConvTranspose1dArgs) -> HostTensor {
        let [n, cin, l] = x.shape[..] else { panic!("x rank") };
        let [wcin, cout_g, k] = w.shape[..] else { panic!("w rank") };
        assert_eq!(wcin, cin);
        let g = a.groups;
        let cin_g = cin / g;
        let cout = cout_g * g;
        let lo = (l - 1) * a.stride + a.dilation * (k - 1) + a.output_padding + 1 - 2 * a.padding;
        let mut acc = vec![0f64; n * cout * lo];
        for nn in 0..n {
            for ci in 0..cin {
                let gi = ci / cin_g;
                for cog in 0..cout_g {
                    let co = gi * cout_g + cog;
                    for li in 0..l {
                        let xv = x.data[(nn * cin + ci) * l + li] as f64;
                        for kk in 0..k {
                            let t = (li * a.stride + kk * a.dilation) as isize - a.padding as isize;
                            if t < 0 || t >= lo as isize {
                                continue;
                            }
                            acc[(nn * cout + co) * lo + t as usize] += xv * w.data[(ci * cout_g + cog) * k + kk] as f64;
                        }
                    }
                }
            }
        }
        let data = acc
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let co = (i / lo) % cout;
                a.act.apply(v + bias.map_or(0.0, |b| b[co] as f64)) as f32
            })
            .collect();
        HostTensor { shape: vec![n, cout, lo], data }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn conv_references_match_hand_values() {
            // x = [1 2 3 4], w = [1 0 -1], pad 1: y[t] = x[t-1] - x[t+1] → [-2, -2, -2, 3].
            let x = HostTensor::new(vec![1, 1, 4], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
            let w = HostTensor::new(vec![1, 1, 3], vec![1.0, 0.0, -1.0]).unwrap();
            let y = conv1d(&x, &w, None, &Conv1dArgs::new(1, 1));
            assert_eq!(y.data, vec![-2.0, -2.0, -2.0, 3.0]);
            // Transposed, stride 2, k 2, w = [1 10]: y[2l] += x[l], y[2l+1] += 10·x[l]
            // → [1 10 2 20 3 30 4 40]; padding 1 trims one each side, bias 0.5.
            let wt = HostTensor::new(vec![1, 1, 2], vec![1.0, 10.0]).unwrap();
            let yt = conv_transpose1d(&x, &wt, Some(&[0.5]), &ConvTranspose1dArgs::new(2, 1));
            assert_eq!(yt.data, vec![10.5, 2.5, 20.5, 3.5, 30.5, 4.5]);
            // 2-D: 2×2 box filter, stride 2 on a 2×4 ramp → sums of 2×2 blocks.
            let x2 = HostTensor::new(vec![1, 1, 2, 4], (0..8).map(|v| v as f32).collect()).unwrap();
            let w2 = HostTensor::new(vec![1, 1, 2, 2], vec![1.0; 4]).unwrap();
            let y2 = conv2d(&x2, &w2, None, &Conv2dArgs::new(2, 0));
            assert_eq!(y2.data, vec![0.0 + 1.0 + 4.0 + 5.0, 2.0 + 3.0 + 6.0 + 7.0]);
        }
    }
}
