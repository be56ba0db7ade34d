//! Ops: one module per WGSL family (`shaders/<family>.wgsl`). Each module has a params struct
//! mirroring the WGSL one, `impl Tensor` methods that check shapes and launch, and
//! `pub mod reference` with plain-loop CPU versions (f64 accumulation) — the executable
//! specification each kernel is tested against.

pub mod attention;
pub mod binary;
pub mod conv;
pub mod copy;
pub mod embed;
pub mod matmul;
pub mod norm;
pub mod pool;
pub mod reduce;
pub mod unary;

use crate::device::Gpu;
#[cfg(test)]
use crate::shaders::Kernel;
use crate::tensor::Tensor;
use crate::{Error, Result};

/// Declares a `#[repr(C)]` params struct mirroring a WGSL uniform struct, with its field
/// offsets for the layout test (`params_match_wgsl`).
macro_rules! params {
    ($(#[$m:meta])* $name:ident { $($f:ident : $t:ty),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
        pub(crate) struct $name { $(pub $f: $t),* }
        impl $name {
            #[allow(dead_code)]
            pub(crate) const FIELDS: &'static [(&'static str, usize)] =
                &[$((stringify!($f), std::mem::offset_of!($name, $f))),*];
        }
    };
}
pub(crate) use params;

/// A family, the size of its Rust params struct and its fields' (name, offset).
#[cfg(test)]
type ParamsMirror = (Kernel, usize, &'static [(&'static str, usize)]);

/// Every family's params mirror, for the layout test.
#[cfg(test)]
pub(crate) fn params_mirrors() -> Vec<ParamsMirror> {
    vec![
        (Kernel::Attention, std::mem::size_of::<attention::AttentionParams>(), attention::AttentionParams::FIELDS),
        (Kernel::Unary, std::mem::size_of::<unary::UnaryParams>(), unary::UnaryParams::FIELDS),
        (Kernel::Binary, std::mem::size_of::<binary::BinaryParams>(), binary::BinaryParams::FIELDS),
        (Kernel::Copy, std::mem::size_of::<copy::CopyParams>(), copy::CopyParams::FIELDS),
        (Kernel::Embed, std::mem::size_of::<embed::EmbedParams>(), embed::EmbedParams::FIELDS),
        (Kernel::Norm, std::mem::size_of::<norm::NormParams>(), norm::NormParams::FIELDS),
        (Kernel::Pool, std::mem::size_of::<pool::PoolParams>(), pool::PoolParams::FIELDS),
        (Kernel::Reduce, std::mem::size_of::<reduce::ReduceParams>(), reduce::ReduceParams::FIELDS),
        (Kernel::Matmul, std::mem::size_of::<matmul::MatmulParams>(), matmul::MatmulParams::FIELDS),
        (Kernel::Conv, std::mem::size_of::<conv::ConvParams>(), conv::ConvParams::FIELDS),
    ]
}

/// Error unless all tensors live on the same device.
pub(crate) fn same_gpu(op: &str, gpu: &Gpu, others: &[&Tensor]) -> Result<()> {
    if others.iter().all(|t| t.gpu().same(gpu)) {
        Ok(())
    } else {
        Err(Error::arg(op, "tensors live on different GPU devices"))
    }
}

/// Convert a size to u32 for a params field, or an error naming the op.
pub(crate) fn u32_of(op: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::arg(op, format!("size {v} does not fit in 32 bits")))
}

/// Most parts a split-K reduction is cut into.
const MAX_SPLITS: usize = 32;

/// Parts to cut a reduction over `units` into (split-K) so that a dispatch of `workgroups`
/// workgroups reaches [`Gpu::parallel_target`]: at least `min_units` per part, at most
/// [`MAX_SPLITS`], and a count that `ok` accepts (e.g. one that divides the reduction). 1: no
/// split (CPU adapters, grids already large enough).
pub(crate) fn split_count(gpu: &Gpu, workgroups: u64, units: usize, min_units: usize, ok: impl Fn(usize) -> bool) -> usize {
    let target = gpu.parallel_target();
    if target == 0 || workgroups >= target {
        return 1;
    }
    let want = target.div_ceil(workgroups.max(1)).min(MAX_SPLITS as u64) as usize;
    let most = want.min(units / min_units.max(1));
    (2..=most).rev().find(|&s| ok(s)).unwrap_or(1)
}

/// Fused activation applied by kernels that support it (matmul, conv), as `act` params value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Act {
    #[default]
    None = 0,
    Gelu = 1,
    GeluTanh = 2,
    QuickGelu = 3,
    Silu = 4,
    Relu = 5,
    Tanh = 6,
}

impl Act {
    /// The activation on the CPU (f64), for references.
    pub fn apply(self, v: f64) -> f64 {
        use unary::reference as r;
        match self {
            Act::None => v,
            Act::Gelu => r::gelu(v),
            Act::GeluTanh => r::gelu_tanh(v),
            Act::QuickGelu => r::quick_gelu(v),
            Act::Silu => r::silu(v),
            Act::Relu => v.max(0.0),
            Act::Tanh => v.tanh(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Act`'s discriminants are the WGSL `ACT_*` codes (shaders/shared/activations.wgsl).
    #[test]
    fn act_codes_match_wgsl() {
        let all = [Act::None, Act::Gelu, Act::GeluTanh, Act::QuickGelu, Act::Silu, Act::Relu, Act::Tanh];
        assert_eq!(crate::shaders::ACT_CODES.len(), all.len(), "an activation exists on one side only");
        for a in all {
            let mut name = String::new();
            for (i, ch) in format!("{a:?}").chars().enumerate() {
                if ch.is_uppercase() && i > 0 {
                    name.push('_');
                }
                name.push(ch.to_ascii_uppercase());
            }
            let code = crate::shaders::ACT_CODES.iter().find(|(n, _)| *n == name).map(|(_, c)| *c);
            assert_eq!(code, Some(a as u32), "Act::{a:?} vs ACT_{name}");
        }
    }

    #[test]
    fn params_match_wgsl() {
        let mirrors = params_mirrors();
        for k in Kernel::ALL {
            let (size, fields) = k.params_layout();
            let (_, rsize, rfields) =
                mirrors.iter().find(|(kk, _, _)| kk == k).unwrap_or_else(|| panic!("no Rust params mirror registered for shaders/{}.wgsl", k.name()));
            assert_eq!(size as usize, *rsize, "{}: params size", k.name());
            let w: Vec<(&str, usize)> = fields.iter().map(|(n, o)| (*n, *o as usize)).collect();
            assert_eq!(w, rfields.to_vec(), "{}: params fields (name, offset)", k.name());
        }
    }
}
