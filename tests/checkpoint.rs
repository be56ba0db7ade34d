//! The PyTorch checkpoint reader and the streaming pack writer.
//!
//! Fixtures in `tests/fixtures/torch/` are written by `tests/reference/make_torch_fixtures.py`
//! with torch.save / torch.jit.save / ultralytics; each `<name>.golden.json` records what
//! `torch.load(weights_only=False)` itself reads back (names in state-dict order, dtypes,
//! shapes, and the sha256 of the values as f32), so every tensor is compared bit-exactly.
//! Malformed inputs are built here by hand (a tiny zip writer and pickle assembler).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value as J;
use sha2::Digest;
use ssv2a::convert::pack_writer::{self, PackEntry};
use ssv2a::convert::{pickle, zip, Checkpoint, DType, Format, Value};
use ssv2a::weights::{parse_header, serialize_pack, PackTensor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch").join(name)
}

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn f32_le(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Compare everything `Checkpoint` reads from `file` with the golden PyTorch read.
fn check_against_pytorch(file: &str, golden: &str) {
    let g: J = serde_json::from_slice(&std::fs::read(fixture(golden)).unwrap()).unwrap();
    let ckpt = Checkpoint::open(fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let path = g["path"].as_str().unwrap();
    let tensors = ckpt.tensors(path).unwrap_or_else(|e| panic!("{file}: {e}"));
    let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    let want: Vec<&str> = g["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    assert_eq!(names, want, "{file}: names or their order differ from torch.load");
    for (name, t) in &tensors {
        let info = &g["tensors"][name.as_str()];
        assert_eq!(t.dtype.torch_name(), info["dtype"].as_str().unwrap(), "{file}: dtype of `{name}`");
        let shape: Vec<usize> = info["shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
        assert_eq!(t.shape, shape, "{file}: shape of `{name}`");
        let raw = ckpt.read(t).unwrap_or_else(|e| panic!("{file}: reading `{name}`: {e}"));
        assert_eq!(raw.shape, shape);
        assert_eq!(raw.data.len(), t.nbytes(), "{file}: byte count of `{name}`");
        let values = raw.to_f32().unwrap();
        if let Some(bits) = info.get("bits") {
            let want: Vec<u32> = bits.as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as u32).collect();
            let got: Vec<u32> = values.iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, want, "{file}: values of `{name}` (f32 bits)");
        }
        assert_eq!(sha256_hex(&f32_le(&values)), info["sha256"].as_str().unwrap(), "{file}: values of `{name}` (sha256)");
    }
    for (p, want) in g["values"].as_object().unwrap() {
        let got = ckpt.get(p).unwrap_or_else(|| panic!("{file}: no value at `{p}`")).to_json().unwrap();
        assert_eq!(&got, want, "{file}: value at `{p}`");
    }
}

macro_rules! pytorch_fixture {
    ($test:ident, $file:expr, $golden:expr) => {
        #[test]
        fn $test() {
            check_against_pytorch($file, $golden);
        }
    };
}

pytorch_fixture!(dtypes_match_pytorch, "dtypes.pt", "dtypes.golden.json");
pytorch_fixture!(views_match_pytorch, "views.pt", "views.golden.json");
pytorch_fixture!(state_dict_matches_pytorch, "state_dict.pt", "state_dict.golden.json");
pytorch_fixture!(lightning_state_dict_matches_pytorch, "lightning.ckpt", "lightning.golden.json");
pytorch_fixture!(lightning_whole_checkpoint_matches_pytorch, "lightning.ckpt", "lightning_all.golden.json");
pytorch_fixture!(ssv2a_checkpoint_matches_pytorch, "ssv2a.pth", "ssv2a.golden.json");
pytorch_fixture!(pickled_module_matches_pytorch, "module.pt", "module.golden.json");
pytorch_fixture!(legacy_format_matches_pytorch, "legacy.pt", "legacy.golden.json");
pytorch_fixture!(protocol4_matches_pytorch, "proto4.pt", "proto4.golden.json");
pytorch_fixture!(protocol5_matches_pytorch, "proto5.pt", "proto5.golden.json");
pytorch_fixture!(renamed_archive_prefix_matches_pytorch, "prefix.pt", "prefix.golden.json");
pytorch_fixture!(torchscript_archive_matches_pytorch, "torchscript.pt", "torchscript.golden.json");
pytorch_fixture!(ultralytics_checkpoint_matches_pytorch, "yolo.pt", "yolo.golden.json");

#[test]
fn formats_and_prefixes_are_detected() {
    let c = Checkpoint::open(fixture("prefix.pt")).unwrap();
    assert!(matches!(c.format(), Format::Zip { prefix, .. } if prefix == "my-model_v2.final"), "{:?}", c.format());
    let c = Checkpoint::open(fixture("state_dict.pt")).unwrap();
    assert!(matches!(c.format(), Format::Zip { prefix, version } if prefix == "state_dict" && version.is_some()), "{:?}", c.format());
    assert_eq!(Checkpoint::open(fixture("legacy.pt")).unwrap().format(), &Format::Legacy);
}

#[test]
fn ultralytics_checkpoint_exposes_model_attributes() {
    let c = Checkpoint::open(fixture("yolo.pt")).unwrap();
    // The pickled DetectionModel is an inert object of its class.
    let model = c.get("model").unwrap().as_object().unwrap();
    assert_eq!(model.class_name(), "ultralytics.nn.tasks.DetectionModel");
    assert!(model.is_module());
    assert!(c.get("ema").unwrap().is_none());
    assert_eq!(c.get("model.names.2").and_then(|v| v.as_str()), Some("dog"));
    // `stride` is a plain tensor attribute, not in the state dict, but readable.
    let stride = c.get("model.stride").and_then(|v| v.as_tensor()).unwrap();
    assert_eq!(c.read_f32(stride).unwrap(), vec![8.0, 16.0, 32.0]);
    assert_eq!(c.get("model.yaml.backbone.0.2").and_then(|v| v.as_str()), Some("Conv"));
    assert!(c.get("train_args").and_then(|v| v.as_dict()).is_some_and(|d| d.len() > 50));
    let tensors = c.tensors("model").unwrap();
    let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    for want in ["model.0.conv.weight", "model.0.bn.running_mean", "model.22.cv2.0.0.bn.num_batches_tracked", "model.22.dfl.conv.weight"] {
        assert!(names.contains(&want), "missing {want}");
    }
    assert!(tensors.iter().all(|(n, t)| t.dtype == DType::F16 || n.ends_with("num_batches_tracked")));
    // The same tensors under the whole checkpoint, prefixed by the dict key.
    assert_eq!(c.tensors("").unwrap().len(), tensors.len());
}

#[test]
fn lightning_checkpoint_exposes_training_values() {
    let c = Checkpoint::open(fixture("lightning.ckpt")).unwrap();
    assert_eq!(c.get("epoch").and_then(|v| v.as_int()), Some(12));
    // Keys that contain dots are found whole.
    let t = c.get("state_dict.model_ema.decay").and_then(|v| v.as_tensor()).unwrap();
    assert_eq!(c.read_f32(t).unwrap(), vec![0.9999f32]);
    let t = c.get("state_dict.model.diffusion_model.out.2.weight").and_then(|v| v.as_tensor()).unwrap();
    assert_eq!(t.shape, vec![2, 8, 3, 3]);
    assert_eq!(c.get("hyper_parameters.unet_config.channel_mult.3").and_then(|v| v.as_int()), Some(5));
    let err = c.tensors("no_such_key").unwrap_err().to_string();
    assert!(err.contains("no_such_key") && err.contains("state_dict"), "{err}");
}

#[test]
fn non_persistent_buffers_are_not_in_the_state_dict() {
    let c = Checkpoint::open(fixture("module.pt")).unwrap();
    let names: Vec<String> = c.tensors("").unwrap().into_iter().map(|(n, _)| n).collect();
    assert!(!names.iter().any(|n| n == "scratch"));
    // ...but the attribute is still there.
    assert!(c.get("scratch").and_then(|v| v.as_tensor()).is_some());
    assert_eq!(c.get("note").and_then(|v| v.as_str()), Some("not a tensor"));
}

#[test]
fn safetensors_inputs_read_like_checkpoints() {
    let dir = TempDir::new("st-input");
    let src = Checkpoint::open(fixture("dtypes.pt")).unwrap();
    let tensors: Vec<_> = src.tensors("").unwrap().into_iter().filter(|(n, _)| n != "special").collect();
    let out = dir.path().join("d.safetensors");
    pack_writer::write_checkpoint_pack(&src, &tensors, &out, &BTreeMap::new(), safetensors::Dtype::F32).unwrap();
    let st = Checkpoint::open(&out).unwrap();
    assert_eq!(st.format(), &Format::Safetensors);
    for (name, t) in &tensors {
        let got = st.get(name).and_then(|v| v.as_tensor()).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(got.shape, t.shape);
        assert_eq!(st.read_f32(got).unwrap(), src.read_f32(t).unwrap(), "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-made inputs.

/// A zip archive of stored records, as torch writes them.
fn make_zip(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in records {
        let offset = out.len() as u32;
        let crc = zip::crc32(0, data);
        let mut h = Vec::new();
        h.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        h.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        h.extend_from_slice(&crc.to_le_bytes());
        h.extend_from_slice(&(data.len() as u32).to_le_bytes());
        h.extend_from_slice(&(data.len() as u32).to_le_bytes());
        h.extend_from_slice(&(name.len() as u16).to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&(data.len() as u32).to_le_bytes());
        central.extend_from_slice(&(data.len() as u32).to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0; 12]);
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&(records.len() as u16).to_le_bytes());
    out.extend_from_slice(&(records.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// A little pickle assembler (protocol 2 opcodes).
struct Pk(Vec<u8>);

impl Pk {
    fn new() -> Pk {
        Pk(vec![0x80, 2])
    }
    fn op(mut self, b: &[u8]) -> Pk {
        self.0.extend_from_slice(b);
        self
    }
    fn s(mut self, s: &str) -> Pk {
        self.0.push(b'X');
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn int(mut self, i: i32) -> Pk {
        self.0.push(b'J');
        self.0.extend_from_slice(&i.to_le_bytes());
        self
    }
    fn global(self, module: &str, name: &str) -> Pk {
        self.op(format!("c{module}\n{name}\n").as_bytes())
    }
    fn tuple(mut self, items: &[i32]) -> Pk {
        self.0.push(b'(');
        for &i in items {
            self = self.int(i);
        }
        self.op(b"t")
    }
    /// `_rebuild_tensor_v2(storage(key, FloatStorage, numel), offset, size, stride, False, OrderedDict())`.
    fn tensor(self, key: &str, numel: i32, offset: i32, size: &[i32], stride: &[i32]) -> Pk {
        self.global("torch._utils", "_rebuild_tensor_v2").tensor_args(key, numel, offset, size, stride).op(b"R")
    }
    /// The argument tuple of `_rebuild_tensor_v2`.
    fn tensor_args(self, key: &str, numel: i32, offset: i32, size: &[i32], stride: &[i32]) -> Pk {
        self.op(b"((")
            .s("storage")
            .global("torch", "FloatStorage")
            .s(key)
            .s("cpu")
            .int(numel)
            .op(b"tQ")
            .int(offset)
            .tuple(size)
            .tuple(stride)
            .op(b"\x89")
            .global("collections", "OrderedDict")
            .op(b")R")
            .op(b"t")
    }
    fn stop(self) -> Vec<u8> {
        self.op(b".").0
    }
}

fn f32_bytes(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect()
}

/// A checkpoint whose `data.pkl` is `pkl` and whose storages are `records` (key, bytes).
fn archive(pkl: &[u8], records: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut all: Vec<(String, &[u8])> = vec![("archive/data.pkl".into(), pkl), ("archive/byteorder".into(), b"little")];
    for (k, b) in records {
        all.push((format!("archive/data/{k}"), b));
    }
    let refs: Vec<(&str, &[u8])> = all.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    make_zip(&refs)
}

#[test]
fn hand_made_archive_reads_strided_views() {
    // A 3x4 storage; "w" is its transpose minus the first row: offset 1, size (4, 2), stride (1, 4).
    let pkl = Pk::new().op(b"}").s("w").tensor("0", 12, 1, &[3, 2], &[1, 4]).op(b"s").stop();
    let c = Checkpoint::from_bytes(archive(&pkl, &[("0", f32_bytes(12))]), "t.pt").unwrap();
    let t = c.tensors("").unwrap();
    assert_eq!(t[0].0, "w");
    // Element [i][j] = storage[1 + i + 4j].
    assert_eq!(c.read_f32(&t[0].1).unwrap(), vec![1.0, 5.0, 2.0, 6.0, 3.0, 7.0]);
}

#[test]
fn missing_storage_record_is_an_error() {
    let pkl = Pk::new().op(b"}").s("w").tensor("7", 4, 0, &[4], &[1]).op(b"s").stop();
    let c = Checkpoint::from_bytes(archive(&pkl, &[("0", f32_bytes(4))]), "t.pt").unwrap();
    let err = c.tensors("").unwrap_err().to_string();
    assert!(err.contains("storage `7` is missing") && err.contains("archive/data/7") && err.contains("`w`"), "{err}");
}

#[test]
fn view_past_its_storage_is_an_error() {
    // size (3, 3) stride (3, 1) needs 9 elements; the storage has 4.
    let pkl = Pk::new().op(b"}").s("w").tensor("0", 4, 0, &[3, 3], &[3, 1]).op(b"s").stop();
    let c = Checkpoint::from_bytes(archive(&pkl, &[("0", f32_bytes(4))]), "t.pt").unwrap();
    let err = c.tensors("").unwrap_err().to_string();
    assert!(err.contains("past the end") && err.contains("`w`"), "{err}");
    // The pickle claims more elements than the record holds.
    let pkl = Pk::new().op(b"}").s("w").tensor("0", 100, 0, &[100], &[1]).op(b"s").stop();
    let c = Checkpoint::from_bytes(archive(&pkl, &[("0", f32_bytes(4))]), "t.pt").unwrap();
    let err = c.tensors("").unwrap_err().to_string();
    assert!(err.contains("record holds 16 bytes"), "{err}");
    // Strides that overflow, and an expanded view far larger than its storage.
    let pkl = Pk::new().op(b"}").s("w").tensor("0", 4, 0, &[1 << 30, 1 << 30], &[1 << 30, 1 << 30]).op(b"s").stop();
    let c = Checkpoint::from_bytes(archive(&pkl, &[("0", f32_bytes(4))]), "t.pt").unwrap();
    assert!(c.tensors("").is_err());
    let pkl = Pk::new().op(b"}").s("w").tensor("0", 4, 0, &[1 << 30, 1 << 30], &[0, 0]).op(b"s").stop();
    let c = Checkpoint::from_bytes(archive(&pkl, &[("0", f32_bytes(4))]), "t.pt").unwrap();
    let err = c.tensors("").unwrap_err().to_string();
    assert!(err.contains("expand"), "{err}");
    assert!(c.read(c.get("w").unwrap().as_tensor().unwrap()).is_err());
}

#[test]
fn big_endian_archive_is_refused() {
    let pkl = Pk::new().op(b"}").stop();
    let zip = make_zip(&[("archive/data.pkl", &pkl), ("archive/byteorder", b"big")]);
    let err = Checkpoint::from_bytes(zip, "t.pt").unwrap_err().to_string();
    assert!(err.contains("little-endian"), "{err}");
}

#[test]
fn corrupt_storage_fails_its_crc() {
    let pkl = Pk::new().op(b"}").s("w").tensor("0", 4, 0, &[4], &[1]).op(b"s").stop();
    let mut bytes = archive(&pkl, &[("0", f32_bytes(4))]);
    // Flip a byte of the storage's data (it follows its local header and name).
    let at = bytes.windows(14).position(|w| w == b"archive/data/0").unwrap() + 14 + 5;
    bytes[at] ^= 0x40;
    let c = Checkpoint::from_bytes(bytes, "t.pt").unwrap();
    let err = c.read(&c.tensors("").unwrap()[0].1).unwrap_err().to_string();
    assert!(err.contains("CRC"), "{err}");
}

#[test]
fn truncated_archives_are_errors_not_panics() {
    for file in ["state_dict.pt", "module.pt", "legacy.pt"] {
        let bytes = std::fs::read(fixture(file)).unwrap();
        for cut in (0..bytes.len()).step_by(7) {
            let truncated = bytes[..cut].to_vec();
            // Either opening fails, or (legacy: the storages are at the end) reading does.
            match Checkpoint::from_bytes(truncated, file) {
                Err(_) => {}
                Ok(c) => {
                    let all_ok = c.tensors("").and_then(|ts| ts.iter().try_for_each(|(_, t)| c.read(t).map(|_| ()))).is_ok();
                    assert!(!all_ok, "{file} cut at {cut} of {} read without error", bytes.len());
                }
            }
        }
    }
}

#[test]
fn truncated_zip_reports_truncation() {
    let bytes = std::fs::read(fixture("state_dict.pt")).unwrap();
    let err = Checkpoint::from_bytes(bytes[..bytes.len() - 30].to_vec(), "cut.pt").unwrap_err().to_string();
    assert!(err.contains("cut.pt") && (err.contains("truncated") || err.contains("end-of-central-directory")), "{err}");
}

/// The data.pkl of a fixture.
fn data_pkl(file: &str) -> Vec<u8> {
    let bytes = std::fs::read(fixture(file)).unwrap();
    let mut cur = std::io::Cursor::new(bytes.as_slice());
    let entries = zip::read_directory(&mut cur, bytes.len() as u64, file).unwrap();
    let e = entries.iter().find(|e| e.name.ends_with("/data.pkl")).unwrap();
    let start = zip::data_offset(&mut cur, bytes.len() as u64, e, file).unwrap() as usize;
    bytes[start..start + e.size as usize].to_vec()
}

#[test]
fn truncated_pickles_are_errors() {
    for file in ["yolo.pt", "proto4.pt", "lightning.ckpt"] {
        let pkl = data_pkl(file);
        assert!(pickle::load(&pkl).is_ok());
        for cut in (0..pkl.len()).step_by(if pkl.len() > 20_000 { 37 } else { 1 }) {
            let err = pickle::load(&pkl[..cut]).expect_err("a truncated pickle must not load").to_string();
            assert!(err.contains("pickle:") && err.contains("byte offset"), "{err}");
        }
    }
}

#[test]
fn random_bytes_are_errors_not_panics() {
    let mut rng = ssv2a::rng::Rng::new(7);
    for round in 0..3000 {
        let len = 1 + rng.below(300) as usize;
        let mut data: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        if round % 2 == 0 {
            data.splice(0..0, [0x80, 2]);
        }
        let _ = pickle::load(&data);
        let _ = Checkpoint::from_bytes(data, "random");
    }
    // Mutations of a real pickle reach deeper paths.
    let pkl = data_pkl("module.pt");
    for _ in 0..3000 {
        let mut m = pkl.clone();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(m.len() as u64) as usize;
            m[i] = rng.next_u64() as u8;
        }
        if let Ok((v, _)) = pickle::load(&m) {
            let _ = v.to_json();
            let _ = ssv2a::convert::torch::flatten(&v);
        }
    }
}

#[test]
fn unknown_opcode_is_named_with_its_offset() {
    let err = pickle::load(b"\x80\x02N\xff.").unwrap_err().to_string();
    assert!(err.contains("0xff") && err.contains("byte offset 3"), "{err}");
    let err = pickle::load(b"\x80\x02N\x82\x01.").unwrap_err().to_string();
    assert!(err.contains("EXT1") && err.contains("byte offset 3"), "{err}");
    let err = pickle::load(b"\x80\x02\x97.").unwrap_err().to_string();
    assert!(err.contains("NEXT_BUFFER"), "{err}");
}

#[test]
fn code_execution_globals_stay_inert_data() {
    // `os.system("touch …")` as GLOBAL + REDUCE: recorded, never run.
    let marker = std::env::temp_dir().join(format!("ssv2a-pwned-{}", std::process::id()));
    let cmd = format!("touch {}", marker.display());
    let pkl = Pk::new().global("os", "system").op(b"(").s(&cmd).op(b"tR").stop();
    let (v, _) = pickle::load(&pkl).unwrap();
    let o = v.as_object().expect("a recorded call");
    assert_eq!(o.class_name(), "os.system");
    assert_eq!(o.args[0].as_str(), Some(cmd.as_str()));
    // The same inside a checkpoint, with BUILD, NEWOBJ and builtins.eval.
    let pkl = Pk::new()
        .op(b"}")
        .s("a")
        .global("builtins", "eval")
        .op(b"(")
        .s("__import__('os').system('true')")
        .op(b"tR")
        .op(b"s")
        .s("b")
        .global("subprocess", "Popen")
        .op(b")\x81}")
        .s("args")
        .s("true")
        .op(b"sb")
        .op(b"s")
        .stop();
    let c = Checkpoint::from_bytes(archive(&pkl, &[]), "evil.pt").unwrap();
    assert_eq!(c.get("a").unwrap().as_object().unwrap().class_name(), "builtins.eval");
    assert_eq!(c.get("b.args").and_then(|v| v.as_str()), Some("true"));
    assert!(c.tensors("").unwrap().is_empty());
    assert!(!marker.exists());
}

#[test]
fn absurd_length_fields_fail_before_allocating() {
    // BINUNICODE8 / BINBYTES8 claiming 10^12 bytes; LONG4 and BINUNICODE claiming ~2^31.
    for op in [0x8du8, 0x8e, 0x96] {
        let mut p = vec![0x80, 4, op];
        p.extend_from_slice(&1_000_000_000_000u64.to_le_bytes());
        let err = pickle::load(&p).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }
    for op in [b'X', b'B', 0x8b, b'T'] {
        let mut p = vec![0x80, 2, op];
        p.extend_from_slice(&0x7fff_fff0u32.to_le_bytes());
        assert!(pickle::load(&p).is_err());
    }
    // FRAME lengths are hints and never allocate.
    let mut p = vec![0x80, 4, 0x95];
    p.extend_from_slice(&u64::MAX.to_le_bytes());
    p.extend_from_slice(b"N.");
    assert_eq!(pickle::load(&p).unwrap().0, Value::None);
    // A memo index of 4 billion.
    assert!(pickle::load(b"\x80\x02Nr\xff\xff\xff\xffj\xff\xff\xff\xfe.").is_err());
    // A zip whose directory claims 65535 entries in 22 bytes, or lies past the file.
    let mut z = make_zip(&[]);
    let n = z.len();
    z[n - 12..n - 10].copy_from_slice(&0xffffu16.to_le_bytes());
    assert!(Checkpoint::from_bytes(z.clone(), "z").is_err());
    z[n - 6..n - 2].copy_from_slice(&0xffff_0000u32.to_le_bytes());
    assert!(Checkpoint::from_bytes(z, "z").is_err());
    // A safetensors header claiming 10^12 bytes.
    let mut st = 1_000_000_000_000u64.to_le_bytes().to_vec();
    st.extend_from_slice(b"{}");
    assert!(Checkpoint::from_bytes(st, "st").unwrap_err().to_string().contains("does not fit"));
    // A storage claiming 10^12 elements.
    let pkl = Pk::new().op(b"}").s("w").tensor("0", i32::MAX, 0, &[i32::MAX], &[1]).op(b"s").stop();
    let c = Checkpoint::from_bytes(archive(&pkl, &[("0", f32_bytes(4))]), "t.pt").unwrap();
    assert!(c.tensors("").is_err());
    assert!(c.read(c.get("w").unwrap().as_tensor().unwrap()).is_err());
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    // 200k nested lists: `]]]]…` then APPEND each into its parent.
    let n = 200_000;
    let mut p = vec![0x80, 2];
    p.extend(std::iter::repeat_n(b']', n));
    p.extend(std::iter::repeat_n(b'a', n - 1));
    p.push(b'.');
    let err = pickle::load(&p).unwrap_err().to_string();
    assert!(err.contains("nested deeper"), "{err}");
    // Nesting built top-down through the memo: each new list is appended to the current one,
    // which stays referenced only from its parent.
    let mut p = vec![0x80, 2, b']', b'q', 0];
    for _ in 0..100_000 {
        p.extend_from_slice(b"h\x00]q\x01a0h\x01q\x000");
    }
    p.push(b'.');
    let err = pickle::load(&p).unwrap_err().to_string();
    assert!(err.contains("nested deeper"), "{err}");
}

#[test]
fn shared_containers_do_not_blow_up() {
    // x = []; x = (x, x) sixty times: 2^60 paths through a 60-node graph.
    let mut p = vec![0x80, 2, b']', b'q', 0];
    for _ in 0..60 {
        p.extend_from_slice(b"h\x00h\x00\x86q\x00");
    }
    p.extend_from_slice(b"0h\x00.");
    let (v, _) = pickle::load(&p).unwrap();
    let err = v.to_json().unwrap_err().to_string();
    assert!(err.contains("too large"), "{err}");
    assert!(ssv2a::convert::torch::flatten(&v).is_err());
    // A list that contains itself.
    let (v, _) = pickle::load(b"\x80\x02]q\x00h\x00a.").unwrap();
    assert_eq!(v, Value::List(vec![Value::Cycle].into()));
}

#[test]
fn memo_sharing_has_reference_semantics() {
    // d = {}; memo; l = [d, d]; then d["k"] = 1 after both references exist.
    let p = b"\x80\x02}q\x00]q\x01(h\x00h\x00eh\x00X\x01\x00\x00\x00kK\x01s0.";
    let (v, _) = pickle::load(p).unwrap();
    let l = v.as_seq().unwrap();
    for d in l {
        assert_eq!(d.get("k").and_then(|x| x.as_int()), Some(1));
    }
}

// ---------------------------------------------------------------------------------------------
// Pack writer.

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("ssv2a-checkpoint-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
    fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn pack_round_trips_and_matches_serialize_pack() {
    let dir = TempDir::new("roundtrip");
    let c = Checkpoint::open(fixture("state_dict.pt")).unwrap();
    let tensors = c.tensors("").unwrap();
    let meta = ssv2a::weights::pack_metadata("test", "{\"a\":1}", "f16");
    let out = dir.path().join("p.safetensors");
    let stats = pack_writer::write_checkpoint_pack(&c, &tensors, &out, &meta, safetensors::Dtype::F16).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(stats.bytes, bytes.len() as u64);
    assert_eq!(stats.tensors, tensors.len());
    let (data_start, infos, metadata) = parse_header(&bytes, "p").unwrap();
    assert_eq!(data_start % 8, 0);
    assert_eq!(metadata, meta);
    // Byte-identical to the in-memory serializer given the same tensors.
    let mut mem = Vec::new();
    for (name, t) in &tensors {
        let v = c.read_f32(t).unwrap();
        let info = &infos[name];
        assert_eq!(info.shape, t.shape);
        let (a, b) = info.data_offsets;
        let got = &bytes[data_start + a..data_start + b];
        if t.dtype.is_float() {
            assert_eq!(info.dtype, safetensors::Dtype::F16);
            let want: Vec<u8> = v.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect();
            assert_eq!(got, want.as_slice(), "{name}");
            mem.push(PackTensor::f16(name.clone(), t.shape.clone(), &v));
        } else {
            assert_eq!(info.dtype, safetensors::Dtype::I64, "{name}");
            mem.push(PackTensor { name: name.clone(), shape: t.shape.clone(), dtype: safetensors::Dtype::I64, data: got.to_vec() });
        }
    }
    assert_eq!(serialize_pack(&mem, &meta).unwrap(), bytes);
    assert_eq!(dir.files(), vec!["p.safetensors".to_string()]);
}

#[test]
fn failed_write_leaves_no_file_and_keeps_the_old_one() {
    let dir = TempDir::new("atomic");
    let out = dir.path().join("pack.safetensors");
    std::fs::write(&out, b"old pack").unwrap();
    let entries = vec![PackEntry::new("a", safetensors::Dtype::F32, vec![2]), PackEntry::new("b", safetensors::Dtype::F32, vec![3])];
    // The producer fails on the second tensor (after the first was written).
    let err = pack_writer::write_pack(&out, &BTreeMap::new(), entries.clone(), |e| {
        if e.name == "b" {
            Err(ssv2a::Error::Format("boom".into()))
        } else {
            Ok(f32_le(&[1.0, 2.0]))
        }
    })
    .unwrap_err();
    assert!(err.to_string().contains("boom"));
    assert_eq!(std::fs::read(&out).unwrap(), b"old pack");
    assert_eq!(dir.files(), vec!["pack.safetensors".to_string()]);
    // A producer returning the wrong number of bytes.
    let err = pack_writer::write_pack(&out, &BTreeMap::new(), entries.clone(), |_| Ok(f32_le(&[1.0, 2.0]))).unwrap_err();
    assert!(err.to_string().contains("`b`") && err.to_string().contains("expected 12"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"old pack");
    assert_eq!(dir.files(), vec!["pack.safetensors".to_string()]);
    // Duplicate names are refused before anything is created.
    let dup = vec![PackEntry::new("a", safetensors::Dtype::F32, vec![1]), PackEntry::new("a", safetensors::Dtype::F32, vec![1])];
    assert!(pack_writer::write_pack(&out, &BTreeMap::new(), dup, |_| Ok(f32_le(&[1.0]))).is_err());
    // An output directory that does not exist.
    let missing = dir.path().join("nope/pack.safetensors");
    assert!(pack_writer::write_pack(&missing, &BTreeMap::new(), entries.clone(), |e| Ok(f32_le(&vec![0.0; e.shape[0]]))).is_err());
    assert!(!missing.exists());
    // Success replaces the old pack.
    pack_writer::write_pack(&out, &BTreeMap::new(), entries, |e| Ok(f32_le(&vec![0.5; e.shape[0]]))).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    let (_, infos, _) = parse_header(&bytes, "pack").unwrap();
    assert_eq!(infos.len(), 2);
    assert_eq!(dir.files(), vec!["pack.safetensors".to_string()]);
}

#[test]
fn sha256_of_a_file() {
    let dir = TempDir::new("sha");
    let f = dir.path().join("abc");
    std::fs::write(&f, b"abc").unwrap();
    assert_eq!(pack_writer::sha256_file(&f).unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&f, &big).unwrap();
    assert_eq!(pack_writer::sha256_file(&f).unwrap(), sha256_hex(&big));
}

/// Convert a large checkpoint to an f16 pack and report time and peak memory:
/// `SSV2A_BIG_CHECKPOINT=/tmp/big.pt cargo test --release --no-default-features --test checkpoint -- --ignored --nocapture big_checkpoint`
#[test]
#[ignore = "needs a large checkpoint in SSV2A_BIG_CHECKPOINT (see make_torch_fixtures.py's docstring)"]
fn big_checkpoint_converts_in_bounded_memory() {
    let Ok(path) = std::env::var("SSV2A_BIG_CHECKPOINT") else {
        eprintln!("SKIP: SSV2A_BIG_CHECKPOINT not set");
        return;
    };
    let t0 = std::time::Instant::now();
    let sha = pack_writer::sha256_file(&path).unwrap();
    let t_sha = t0.elapsed();
    let c = Checkpoint::open(&path).unwrap();
    let tensors = c.tensors(&std::env::var("SSV2A_BIG_CHECKPOINT_PATH").unwrap_or_default()).unwrap();
    let mut meta = ssv2a::weights::pack_metadata("test", "{}", "f16");
    meta.insert("source_sha256".into(), sha);
    let out = format!("{path}.f16.safetensors");
    let stats = pack_writer::write_checkpoint_pack(&c, &tensors, &out, &meta, safetensors::Dtype::F16).unwrap();
    let total = t0.elapsed();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status.lines().find(|l| l.starts_with("VmHWM")).unwrap_or("VmHWM: ?").to_string();
    eprintln!(
        "converted {} tensors: input {} bytes -> pack {} bytes in {:.1}s (sha256 {:.1}s); peak RSS {hwm}",
        stats.tensors,
        std::fs::metadata(&path).unwrap().len(),
        stats.bytes,
        total.as_secs_f64(),
        t_sha.as_secs_f64()
    );
    std::fs::remove_file(&out).unwrap();
}

#[test]
fn values_beyond_f16_are_an_error_not_infinity() {
    let big = ssv2a::convert::RawTensor { dtype: DType::F32, shape: vec![3], data: f32_le(&[1.0, -70000.0, f32::INFINITY]) };
    assert_eq!(big.f16_overflow().unwrap(), Some(70000.0));
    let err = pack_writer::encode(&big, safetensors::Dtype::F16).unwrap_err().to_string();
    assert!(err.contains("70000") && err.contains("f32"), "{err}");
    // Infinities that were already there, and the largest value that rounds to 65504, are fine.
    let ok = ssv2a::convert::RawTensor { dtype: DType::F32, shape: vec![3], data: f32_le(&[65519.0, f32::NEG_INFINITY, -0.0]) };
    let bytes = pack_writer::encode(&ok, safetensors::Dtype::F16).unwrap();
    let back: Vec<f32> = bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect();
    assert_eq!(back[0], 65504.0);
    assert_eq!(back[1], f32::NEG_INFINITY);
    assert!(back[2] == 0.0 && back[2].is_sign_negative());
    assert_eq!(pack_writer::encode(&big, safetensors::Dtype::F32).unwrap(), big.data);
}

#[test]
fn tensor_subclass_wrappers_unwrap() {
    // _rebuild_from_type_v2(_rebuild_from_type_v2, Sub, (_rebuild_tensor_v2, Sub, args, {}), {}).
    let pkl = Pk::new()
        .op(b"}")
        .s("w")
        .global("torch._tensor", "_rebuild_from_type_v2")
        .op(b"(")
        .global("torch._tensor", "_rebuild_from_type_v2")
        .global("my", "Sub")
        .op(b"(")
        .global("torch._utils", "_rebuild_tensor_v2")
        .global("my", "Sub")
        .tensor_args("0", 4, 0, &[2, 2], &[2, 1])
        .op(b"}t")
        .op(b"}tR")
        .op(b"s")
        .stop();
    let c = Checkpoint::from_bytes(archive(&pkl, &[("0", f32_bytes(4))]), "t.pt").unwrap();
    let t = c.tensors("").unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(c.read_f32(&t[0].1).unwrap(), vec![0.0, 1.0, 2.0, 3.0]);
}
