//! PyTorch golden fixtures (`tests/fixtures/*.safetensors`, written by `tests/reference/`):
//! `state.<key>` (the original checkpoint's state dict), `in.*`, `out.*`, `inter.*` and
//! metadata. Model tests convert the state dict in memory with the real converter rules, run
//! the model, and compare the output and every intermediate, so a failure names the first
//! diverging stage.
#![allow(dead_code)]

use std::collections::BTreeMap;

use ssv2a::convert::plan::MemSource;
use ssv2a::tensor::HostTensor;
use ssv2a::{Gpu, Tensor};

use super::{assert_close, Tol};

pub struct Golden {
    pub name: String,
    pub tensors: BTreeMap<String, HostTensor>,
    pub metadata: BTreeMap<String, String>,
}

impl Golden {
    pub fn load(name: &str) -> Golden {
        let path = format!("{}/tests/fixtures/{name}.safetensors", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let (start, infos, metadata) = ssv2a::weights::parse_header(&bytes, &path).unwrap();
        let mut tensors = BTreeMap::new();
        for (k, info) in infos {
            let (a, b) = info.data_offsets;
            let data = ssv2a::weights::decode_f32(info.dtype, &bytes[start + a..start + b], &k).unwrap();
            tensors.insert(k, HostTensor { shape: info.shape.clone(), data });
        }
        Golden { name: name.into(), tensors, metadata }
    }

    pub fn get(&self, key: &str) -> &HostTensor {
        self.tensors.get(key).unwrap_or_else(|| panic!("{}: no tensor `{key}`", self.name))
    }

    pub fn config(&self) -> serde_json::Value {
        serde_json::from_str(self.metadata.get("config").expect("config metadata")).unwrap()
    }

    /// The `state.*` tensors as a converter source (prefix stripped).
    pub fn state(&self) -> MemSource {
        let tensors = self.tensors.iter().filter_map(|(k, v)| k.strip_prefix("state.").map(|s| (s.to_string(), v.clone()))).collect();
        MemSource { name: format!("{}.safetensors", self.name), tensors }
    }

    pub fn upload(&self, gpu: &Gpu, key: &str) -> Tensor {
        Tensor::upload(gpu, self.get(key)).unwrap()
    }

    /// Intermediate names in execution order.
    pub fn intermediates(&self) -> Vec<String> {
        self.metadata
            .get("intermediates")
            .map(|s| s.split(',').filter(|x| !x.is_empty()).map(|x| x.trim_start_matches("inter.").to_string()).collect())
            .unwrap_or_default()
    }
}

/// Compare a recorded trace against the fixture's `inter.*` tensors in execution order, then
/// the output; the error names the first stage outside `tol`. Also reports the max error of
/// every stage so a report shows how error grows.
pub async fn compare_trace(g: &Golden, trace: &[(String, Tensor)], prefix: &str, tol: Tol) -> Result<(), String> {
    let mut compared = 0;
    for (name, t) in trace {
        let key = format!("inter.{prefix}{name}");
        let Some(want) = g.tensors.get(&key) else { continue };
        if t.shape() != want.shape.as_slice() {
            return Err(format!("{}: stage `{name}`: shape {:?}, PyTorch {:?}", g.name, t.shape(), want.shape));
        }
        let got = t.to_vec().await.map_err(|e| e.to_string())?;
        assert_close(&format!("{}: stage `{name}`", g.name), &got, &want.data, tol)?;
        compared += 1;
    }
    if compared == 0 {
        return Err(format!("{}: no intermediate matched the trace (names: {:?})", g.name, trace.iter().map(|t| &t.0).collect::<Vec<_>>()));
    }
    Ok(())
}

/// Largest |a − b| relative to the largest |b|, and SNR in dB.
pub fn error_stats(got: &[f32], want: &[f32]) -> (f64, f64) {
    let mut max_err = 0f64;
    let mut max_ref = 0f64;
    let (mut sig, mut noise) = (0f64, 0f64);
    for (&g, &w) in got.iter().zip(want) {
        max_err = max_err.max((g as f64 - w as f64).abs());
        max_ref = max_ref.max((w as f64).abs());
        sig += (w as f64).powi(2);
        noise += (g as f64 - w as f64).powi(2);
    }
    (max_err / max_ref.max(1e-30), 10.0 * (sig / noise.max(1e-300)).log10())
}

/// Every tensor of a pack as a name -> values map (to compare packs converted from different
/// checkpoint layouts).
pub async fn pack_values(w: &ssv2a::Weights) -> BTreeMap<String, HostTensor> {
    let mut out = BTreeMap::new();
    for k in w.keys() {
        let s = w.shape_of(&k).unwrap();
        out.insert(k.clone(), w.host(&k, &s).unwrap());
    }
    out
}
