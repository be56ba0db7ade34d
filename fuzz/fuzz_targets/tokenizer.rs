//! The RoBERTa tokenizer on arbitrary bytes. The first byte picks what the rest is: a
//! `vocab.json` (with the fixture's merges), a `merges.txt` (with the fixture's vocabulary), or
//! a prompt for the fixture's tokenizer. Files load or give an error; prompts are UTF-8-checked,
//! then encoded with and without padding, whose output must have the promised shape.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ssv2a::tokenize::{prompt_from_utf8, RobertaTokenizer};

const VOCAB: &[u8] = include_bytes!("../../tests/fixtures/tokenizer/roberta/vocab.json");
const MERGES: &[u8] = include_bytes!("../../tests/fixtures/tokenizer/roberta/merges.txt");

fn fixture() -> &'static RobertaTokenizer {
    static TOK: OnceLock<RobertaTokenizer> = OnceLock::new();
    TOK.get_or_init(|| RobertaTokenizer::from_files_bytes(VOCAB, MERGES).expect("the fixture loads"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 3 {
        0 => {
            if let Ok(t) = RobertaTokenizer::from_files_bytes(rest, MERGES) {
                t.encode("rain on a tin roof <mask>");
            }
        }
        1 => {
            if let Ok(t) = RobertaTokenizer::from_files_bytes(VOCAB, rest) {
                t.encode("rain on a tin roof <mask>");
            }
        }
        _ => {
            let Ok(text) = prompt_from_utf8(rest) else { return };
            let tok = fixture();
            let ids = tok.encode(text);
            assert!(ids.len() >= 2 && ids.len() <= 2 + text.len());
            let max_len = 2 + usize::from(mode) % 40;
            if let Ok(enc) = tok.encode_padded(text, max_len) {
                assert_eq!(enc.ids.len(), max_len);
                assert_eq!(enc.attention_mask.len(), max_len);
                let used = enc.attention_mask.iter().filter(|&&m| m == 1).count();
                assert_eq!(enc.ids[..used - 1], ids[..used - 1]);
                assert_eq!(enc.truncated, ids.len() > max_len);
            }
        }
    }
});
