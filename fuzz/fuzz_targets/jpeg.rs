//! The JPEG decoder on arbitrary bytes: an image of the size its header says, or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(j) = ssv2a::media::jpeg::decode(data) {
        assert_eq!(j.data.len(), j.width * j.height * j.layout.channels());
    }
});
