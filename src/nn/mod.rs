//! Reusable layers with strict, shape-checked loading (`load`) and a `forward`: the PyTorch
//! modules every model here is built from. Field names are the state-dict keys.

use crate::ops::conv::{Conv1dArgs, Conv2dArgs, ConvTranspose1dArgs};
use crate::ops::Act;
use crate::tensor::{Tensor, Weight};
use crate::weights::Weights;
use crate::Result;

/// `nn.Linear`. weight: [out, in], bias: [out].
pub struct Linear {
    pub weight: Weight,
    pub bias: Option<Tensor>,
}

impl Linear {
    pub fn load(w: &Weights, d_in: usize, d_out: usize, bias: bool) -> Result<Linear> {
        Ok(Linear { weight: w.weight("weight", &[d_out, d_in])?, bias: if bias { Some(w.tensor("bias", &[d_out])?) } else { None } })
    }

    /// A 1×1 convolution stored as [out, in, 1, 1] used as a Linear over channels.
    pub fn load_conv1x1(w: &Weights, d_in: usize, d_out: usize, bias: bool) -> Result<Linear> {
        Ok(Linear { weight: w.weight("weight", &[d_out, d_in, 1, 1])?, bias: if bias { Some(w.tensor("bias", &[d_out])?) } else { None } })
    }

    /// x: [.., in] -> [.., out]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.linear(&self.weight, self.bias.as_ref(), Act::None)
    }

    /// x: [.., in] -> act([.., out])
    pub fn forward_act(&self, x: &Tensor, act: Act) -> Result<Tensor> {
        x.linear(&self.weight, self.bias.as_ref(), act)
    }
}

/// `nn.Conv2d`. weight: [out, in/groups, kh, kw], bias: [out].
pub struct Conv2d {
    pub weight: Weight,
    pub bias: Option<Tensor>,
    pub args: Conv2dArgs,
}

impl Conv2d {
    pub fn load(w: &Weights, cin: usize, cout: usize, k: usize, args: Conv2dArgs, bias: bool) -> Result<Conv2d> {
        Ok(Conv2d {
            weight: w.weight("weight", &[cout, cin / args.groups.max(1), k, k])?,
            bias: if bias { Some(w.tensor("bias", &[cout])?) } else { None },
            args,
        })
    }
    /// x: [n, in, h, w] -> [n, out, h', w']
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.conv2d(&self.weight, self.bias.as_ref(), &self.args)
    }
    /// With a fused activation after the bias.
    pub fn forward_act(&self, x: &Tensor, act: Act) -> Result<Tensor> {
        x.conv2d(&self.weight, self.bias.as_ref(), &Conv2dArgs { act, ..self.args })
    }
}

/// `nn.Conv1d`. weight: [out, in/groups, k], bias: [out].
pub struct Conv1d {
    pub weight: Weight,
    pub bias: Option<Tensor>,
    pub args: Conv1dArgs,
}

impl Conv1d {
    pub fn load(w: &Weights, cin: usize, cout: usize, k: usize, args: Conv1dArgs, bias: bool) -> Result<Conv1d> {
        Ok(Conv1d { weight: w.weight("weight", &[cout, cin / args.groups.max(1), k])?, bias: if bias { Some(w.tensor("bias", &[cout])?) } else { None }, args })
    }
    /// x: [n, in, l] -> [n, out, l']
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.conv1d(&self.weight, self.bias.as_ref(), &self.args)
    }
}

/// `nn.ConvTranspose1d`. weight: [in, out/groups, k], bias: [out].
pub struct ConvTranspose1d {
    pub weight: Weight,
    pub bias: Option<Tensor>,
    pub args: ConvTranspose1dArgs,
}

impl ConvTranspose1d {
    pub fn load(w: &Weights, cin: usize, cout: usize, k: usize, args: ConvTranspose1dArgs, bias: bool) -> Result<ConvTranspose1d> {
        Ok(ConvTranspose1d {
            weight: w.weight("weight", &[cin, cout / args.groups.max(1), k])?,
            bias: if bias { Some(w.tensor("bias", &[cout])?) } else { None },
            args,
        })
    }
    /// x: [n, in, l] -> [n, out, l']
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.conv_transpose1d(&self.weight, self.bias.as_ref(), &self.args)
    }
}

/// `nn.LayerNorm` over the last dim (elementwise affine optional).
pub struct LayerNorm {
    pub weight: Option<Tensor>,
    pub bias: Option<Tensor>,
    pub eps: f32,
}

impl LayerNorm {
    pub fn load(w: &Weights, dim: usize, eps: f32) -> Result<LayerNorm> {
        Ok(LayerNorm { weight: Some(w.tensor("weight", &[dim])?), bias: Some(w.tensor("bias", &[dim])?), eps })
    }
    /// x: [.., dim] -> [.., dim]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.layer_norm(self.weight.as_ref(), self.bias.as_ref(), self.eps)
    }
}

/// `nn.GroupNorm` (affine).
pub struct GroupNorm {
    pub groups: usize,
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f32,
}

impl GroupNorm {
    pub fn load(w: &Weights, groups: usize, channels: usize, eps: f32) -> Result<GroupNorm> {
        Ok(GroupNorm { groups, weight: w.tensor("weight", &[channels])?, bias: w.tensor("bias", &[channels])?, eps })
    }
    /// x: [n, c, ..] -> [n, c, ..]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.group_norm(self.groups, Some(&self.weight), Some(&self.bias), self.eps, false)
    }
    /// GroupNorm followed by SiLU, fused.
    pub fn forward_silu(&self, x: &Tensor) -> Result<Tensor> {
        x.group_norm(self.groups, Some(&self.weight), Some(&self.bias), self.eps, true)
    }
}
