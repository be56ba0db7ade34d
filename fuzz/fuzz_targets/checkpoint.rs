//! Whole checkpoints (torch zip, legacy stream, safetensors) from arbitrary bytes: open, flatten,
//! read every tensor.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssv2a::convert::Checkpoint;

fuzz_target!(|data: &[u8]| {
    let Ok(c) = Checkpoint::from_bytes(data.to_vec(), "fuzz") else { return };
    let _ = c.root().to_json();
    let Ok(tensors) = c.tensors("") else { return };
    for (_, t) in tensors.iter().take(64) {
        if let Ok(raw) = c.read(t) {
            assert_eq!(raw.data.len(), t.nbytes());
            let _ = raw.to_f16_bytes();
        }
    }
});
