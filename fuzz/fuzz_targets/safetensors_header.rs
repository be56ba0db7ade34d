//! The weight-pack header reader (`weights::parse_header`, through the `safetensors` crate),
//! and the checkpoint reader's own safetensors path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssv2a::convert::Checkpoint;
use ssv2a::weights::parse_header;

fuzz_target!(|data: &[u8]| {
    if let Ok((start, tensors, _meta)) = parse_header(data, "fuzz") {
        assert!(start <= data.len());
        // What `Weights::raw` does with the offsets: they must lie inside the buffer.
        for info in tensors.values() {
            let (a, b) = info.data_offsets;
            assert!(a <= b && start + b <= data.len(), "offsets {a}..{b} past a {}-byte buffer", data.len());
        }
    }
    if let Ok(c) = Checkpoint::from_bytes(data.to_vec(), "fuzz") {
        if let Ok(ts) = c.tensors("") {
            for (_, t) in ts.iter().take(64) {
                let _ = c.read(t).map(|r| r.to_f32());
            }
        }
    }
});
