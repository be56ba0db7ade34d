//! The pickle reader on arbitrary bytes, then everything that walks its result.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssv2a::convert::{pickle, torch};

fuzz_target!(|data: &[u8]| {
    if let Ok((value, used)) = pickle::load(data) {
        assert!(used <= data.len());
        let _ = value.to_json();
        let _ = torch::flatten(&value);
        let _ = value.at("model.0.weight");
    }
});
