//! Text tokenizers, on the CPU, identical to the Python tokenizers the original models run.
//!
//! - [`roberta::RobertaTokenizer`]: CLAP's text tower (RoBERTa-base inside AudioLDM), the slow
//!   `transformers.RobertaTokenizer` (byte-level BPE with GPT-2's pre-tokenisation).
//!
//! Shared here: GPT-2's byte ↔ symbol map (which CLIP's BPE uses too) and the check that turns
//! prompt bytes from outside (the web API, files) into text with an error instead of a panic.

pub mod roberta;

mod classes;

pub use roberta::{Encoding, RobertaTokenizer, Special};

use crate::{Error, Result};

/// GPT-2's `bytes_to_unicode()`: byte-level BPE vocabularies spell every byte as one printable
/// character, so no token contains whitespace or control characters. Printable Latin-1 bytes
/// (`!`..`~`, `¡`..`¬`, `®`..`ÿ`) stand for themselves; the other 68 bytes map, in byte order, to
/// U+0100, U+0101, … (so the space 0x20 is `Ġ` U+0120 and the newline 0x0A is `Ċ` U+010A).
pub fn bytes_to_unicode() -> [char; 256] {
    let mut map = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        map[b as usize] = if printable {
            char::from(b)
        } else {
            n += 1;
            char::from_u32(255 + n).expect("U+0100..U+0143 are chars")
        };
    }
    map
}

/// Prompt bytes (from a file or a caller that hands over raw bytes) as text, or an error that
/// names the first invalid byte. Tokenizers take `&str`; this is the bytes entry point.
pub fn prompt_from_utf8(bytes: &[u8]) -> Result<&str> {
    std::str::from_utf8(bytes).map_err(|e| Error::Format(format!("prompt is not valid UTF-8: invalid byte at offset {} of {}", e.valid_up_to(), bytes.len())))
}

/// Python's `str.isspace()`: Unicode White_Space plus U+001C..U+001F (Python counts the
/// information separators as whitespace because their bidi class is B or S; Rust and the
/// `regex` module's `\s` do not). The slow tokenizer strips text left of `<mask>` with it.
pub(crate) fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1C}'..='\u{1F}').contains(&c)
}

/// The character classes of GPT-2's pre-tokenisation pattern.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Class {
    /// `\p{L}`
    Letter,
    /// `\p{N}`
    Number,
    /// `\s` (Unicode White_Space)
    Space,
    /// everything else: `[^\s\p{L}\p{N}]`
    Other,
}

/// The class of `c` as the Python `regex` module sees it (tables generated from it).
pub(crate) fn class(c: char) -> Class {
    if c.is_ascii() {
        return match c {
            'a'..='z' | 'A'..='Z' => Class::Letter,
            '0'..='9' => Class::Number,
            '\t' | '\n' | '\u{B}' | '\u{C}' | '\r' | ' ' => Class::Space,
            _ => Class::Other,
        };
    }
    let in_table = |t: &[(u32, u32)]| {
        let c = c as u32;
        // The last range starting at or before `c`.
        let i = t.partition_point(|&(lo, _)| lo <= c);
        i > 0 && c <= t[i - 1].1
    };
    if in_table(classes::LETTER) {
        Class::Letter
    } else if in_table(classes::NUMBER) {
        Class::Number
    } else if c.is_whitespace() {
        Class::Space
    } else {
        Class::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_to_unicode_matches_gpt2() {
        let m = bytes_to_unicode();
        assert_eq!(m[b' ' as usize], 'Ġ');
        assert_eq!(m[b'\n' as usize], 'Ċ');
        assert_eq!(m[b'a' as usize], 'a');
        assert_eq!(m[0], '\u{100}');
        assert_eq!(m[0xAD], '\u{143}');
        let mut seen: Vec<char> = m.to_vec();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 256, "the map is a bijection");
    }

    #[test]
    fn classes_follow_unicode_categories() {
        for (c, k) in [
            ('a', Class::Letter),
            ('é', Class::Letter),
            ('日', Class::Letter),
            ('ǅ', Class::Letter),
            ('\u{301}', Class::Other), // combining mark: Mn, not L
            ('٣', Class::Number),
            ('½', Class::Number),
            ('Ⅻ', Class::Number),
            ('\u{a0}', Class::Space),
            ('\u{3000}', Class::Space),
            ('\u{1c}', Class::Other), // not White_Space, though Python's isspace() says so
            ('\u{200b}', Class::Other),
            ('🎵', Class::Other),
            ('\'', Class::Other),
        ] {
            assert_eq!(class(c), k, "{c:?}");
        }
        assert!(py_isspace('\u{1c}') && !py_isspace('\u{200b}'));
    }

    #[test]
    fn invalid_utf8_prompt_is_an_error() {
        assert_eq!(prompt_from_utf8("rain ☔".as_bytes()).unwrap(), "rain ☔");
        let e = prompt_from_utf8(b"rain \xE2\x98").unwrap_err().to_string();
        assert!(e.contains("offset 5 of 7"), "{e}");
    }
}
