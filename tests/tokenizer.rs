//! The RoBERTa tokenizer against transformers' slow `RobertaTokenizer` (the class AudioLDM's CLAP
//! calls), token for token, on a vocabulary trained for the test
//! (tests/fixtures/tokenizer/roberta/, made by tests/reference/make_tokenizer.py), plus the
//! file and input errors.

use std::path::PathBuf;

use serde::Deserialize;
use ssv2a::tokenize::{prompt_from_utf8, RobertaTokenizer};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer/roberta")
}

fn files() -> (Vec<u8>, Vec<u8>) {
    let d = fixture_dir();
    (std::fs::read(d.join("vocab.json")).unwrap(), std::fs::read(d.join("merges.txt")).unwrap())
}

fn tokenizer() -> RobertaTokenizer {
    let (v, m) = files();
    RobertaTokenizer::from_files_bytes(&v, &m).unwrap()
}

#[derive(Deserialize)]
struct Expected {
    cases: Vec<Case>,
    odd_merges: OddMerges,
}

/// A hand-made vocabulary whose merge ranks are out of training order and which lacks some
/// byte symbols (see `odd_merges` in make_tokenizer.py).
#[derive(Deserialize)]
struct OddMerges {
    vocab: serde_json::Value,
    merges: Vec<String>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
    /// The fast tokenizer's ids where they differ from the slow one's (informational).
    fast_ids: Option<Vec<u32>>,
    #[serde(default)]
    padded: Vec<Padded>,
}

#[derive(Deserialize)]
struct Padded {
    max_length: usize,
    ids: Vec<u32>,
    attention_mask: Vec<u32>,
}

fn expected() -> Expected {
    let text = std::fs::read_to_string(fixture_dir().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn roberta_matches_python_slow_tokenizer() {
    let tok = tokenizer();
    let cases = expected().cases;
    assert!(cases.len() >= 200, "the fixture has {} strings", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let got = tok.encode(&c.text);
        if got != c.ids {
            let first = got.iter().zip(&c.ids).position(|(a, b)| a != b).unwrap_or(got.len().min(c.ids.len()));
            failures.push(format!(
                "{:?}: first difference at {first}: got {:?}, expected {:?} (lengths {} vs {})",
                c.text.chars().take(60).collect::<String>(),
                &got[first..(first + 8).min(got.len())],
                &c.ids[first..(first + 8).min(c.ids.len())],
                got.len(),
                c.ids.len()
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} strings differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
    println!("{} strings match", cases.len());
}

#[test]
fn merge_rounds_and_missing_bytes_match_python() {
    // Merging `a a` creates `aa a`, of lower rank: Python finishes the round first (the fast
    // tokenizer does not, and differs here). Bytes missing from the vocabulary become <unk>.
    let odd = expected().odd_merges;
    let merges: String = odd.merges.iter().map(|m| format!("{m}\n")).collect();
    let tok = RobertaTokenizer::from_files_bytes(odd.vocab.to_string().as_bytes(), format!("#version: 0.2\n{merges}").as_bytes()).unwrap();
    assert!(odd.cases.iter().any(|c| c.fast_ids.is_some()), "the fixture exercises the round order");
    for c in &odd.cases {
        assert_eq!(tok.encode(&c.text), c.ids, "{:?}", c.text);
    }
}

#[test]
fn roberta_padded_matches_python() {
    let tok = tokenizer();
    let mut n = 0;
    for c in expected().cases {
        for p in &c.padded {
            let fits = p.ids.len() == p.max_length;
            match tok.encode_padded(&c.text, p.max_length) {
                Ok(enc) => {
                    assert!(fits, "{:?} max_length {}: Python returns {} ids", c.text, p.max_length, p.ids.len());
                    assert_eq!(enc.ids, p.ids, "{:?} max_length {}", c.text, p.max_length);
                    assert_eq!(enc.attention_mask, p.attention_mask, "{:?} max_length {}", c.text, p.max_length);
                    assert_eq!(enc.truncated, c.ids.len() > p.max_length, "{:?}", c.text);
                }
                // Python cannot cut the text to fit and returns it whole; here that is an error.
                Err(e) => assert!(!fits, "{:?} max_length {}: {e}", c.text, p.max_length),
            }
            n += 1;
        }
    }
    assert!(n >= 8, "{n} padded cases");
}

#[test]
fn the_empty_prompt_is_bos_eos_then_padding() {
    // The input AudioLDM's "" (unconditional) embedding is computed from.
    let enc = tokenizer().encode_padded("", 512).unwrap();
    let s = tokenizer().special();
    assert_eq!((s.bos, s.pad, s.eos, s.unk, s.mask), (0, 1, 2, 3, 1760));
    assert_eq!(&enc.ids[..3], &[0, 2, 1]);
    assert!(enc.ids[2..].iter().all(|&i| i == 1));
    assert_eq!(enc.attention_mask.iter().sum::<u32>(), 2);
    assert!(!enc.truncated);
}

#[test]
fn slow_and_fast_differ_only_in_whitespace_before_mask() {
    // Documents the fixture: the known difference is Python's isspace() (U+001C..U+001F are
    // whitespace to it) against the fast tokenizer's Unicode White_Space.
    for c in expected().cases {
        if c.fast_ids.is_some() {
            assert!(c.text.contains("<mask>") && c.text.contains(['\u{1c}', '\u{1d}', '\u{1e}', '\u{1f}']), "{:?}", c.text);
        }
    }
}

#[test]
fn prefix_space_option() {
    let tok = tokenizer();
    let spaced = tok.clone().with_add_prefix_space(true);
    assert_eq!(spaced.encode("rain"), tok.encode(" rain"));
    assert_eq!(spaced.encode(" rain"), tok.encode(" rain"));
    assert_eq!(spaced.encode(""), tok.encode(""));
}

#[test]
fn long_prompt_is_cut_to_max_length() {
    let tok = tokenizer();
    let words = ["rain", "falls", "on", "the", "tin", "roof", "🎵", "日本", "naïve", "don't"];
    let text: String = (0..20_000).map(|i| words[i % words.len()]).collect::<Vec<_>>().join(" ");
    let text: String = text.chars().take(100_000).collect();
    let t = std::time::Instant::now();
    let full = tok.encode(&text);
    let enc = tok.encode_padded(&text, 512).unwrap();
    let word: String = "ab".repeat(50_000);
    let long_word = tok.encode(&word);
    println!("100k chars: {} ids; 100k-char word: {} ids; {:?}", full.len(), long_word.len(), t.elapsed());
    assert!(enc.truncated);
    assert_eq!(&enc.ids[..511], &full[..511]);
    assert_eq!(enc.ids[511], tok.special().eos);
    assert!(enc.attention_mask.iter().all(|&m| m == 1));
}

#[test]
fn bad_files_are_errors() {
    let (vocab, merges) = files();
    let err = |v: &[u8], m: &[u8]| RobertaTokenizer::from_files_bytes(v, m).unwrap_err().to_string();
    let has = |e: String, what: &str| assert!(e.contains(what), "{e:?} lacks {what:?}");

    has(err(b"", &merges), "vocab.json");
    has(err(b"not json", &merges), "vocab.json");
    has(err(b"[1, 2]", &merges), "JSON object");
    has(err(br#"{"a": "x"}"#, &merges), "vocab.json");
    has(err(br#"{"a": -1}"#, &merges), "vocab.json");
    has(err(br#"{"a": 1.5}"#, &merges), "vocab.json");
    has(err(br#"{"a": 99999999999}"#, &merges), "out of range");
    has(err(br#"{"a": 0} trailing"#, &merges), "vocab.json");
    has(err(br#"{"a": 4294967295}"#, &merges), "out of range");
    has(err(b"{}", &merges), "empty");
    has(err(br#"{"<s>": 0, "<pad>": 0}"#, &merges), "share id 0");
    has(err(br#"{"<s>": 0, "<s>": 1}"#, &merges), "appears twice");
    has(err(br#"{"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}"#, &merges), "`<mask>` is missing");

    // merges.txt, against the fixture's vocabulary.
    has(err(&vocab, b"\xff\xfe"), "merges.txt: not UTF-8");
    has(err(&vocab, "Ġ t\n".as_bytes()), "merges.txt line 1: expected the `#version` header");
    has(err(&vocab, "#version: 0.2\nĠ t\nĠ\n".as_bytes()), "merges.txt line 3: expected two symbols, found 1");
    has(err(&vocab, "#version: 0.2\nĠ t h\n".as_bytes()), "merges.txt line 2: expected two symbols, found 3");
    has(err(&vocab, "#version: 0.2\n\nĠ t\n".as_bytes()), "merges.txt line 2: expected two symbols, found 0");
    has(err(&vocab, "#version: 0.2\nĠ t\nĠ t\n".as_bytes()), "line 3: the merge");
    has(err(&vocab, "#version: 0.2\nĠ zzzz\n".as_bytes()), "merges.txt line 2: symbol \"zzzz\" is not in vocab.json");
    has(err(&vocab, "#version: 0.2\nĠ 日\n".as_bytes()), "not in vocab.json");

    // Valid edge cases: only the header; CRLF line ends; no final newline (Python drops the
    // last line then, and so does this: "Ġt" must not merge).
    let only_header = RobertaTokenizer::from_files_bytes(&vocab, b"#version: 0.2\n").unwrap();
    assert_eq!(only_header.encode("ab").len(), 4, "bytes only, no merges");
    let crlf = RobertaTokenizer::from_files_bytes(&vocab, "#version: 0.2\r\nĠ t\r\n".as_bytes()).unwrap();
    let no_final_newline = RobertaTokenizer::from_files_bytes(&vocab, "#version: 0.2\nĠ t".as_bytes()).unwrap();
    assert_eq!(crlf.encode(" t").len(), 3);
    assert_eq!(no_final_newline.encode(" t").len(), 4);
}

#[test]
fn missing_file_names_the_path() {
    let d = fixture_dir();
    let e = RobertaTokenizer::from_files(&d.join("nope.json"), &d.join("merges.txt")).unwrap_err().to_string();
    assert!(e.contains("nope.json"), "{e}");
    let e = RobertaTokenizer::from_files(&d.join("vocab.json"), &d.join("expected.json")).unwrap_err().to_string();
    assert!(e.contains("expected.json line 1"), "{e}");
}

#[test]
fn bad_padding_lengths_are_errors() {
    let tok = tokenizer();
    assert!(tok.encode_padded("rain", 0).is_err());
    assert!(tok.encode_padded("rain", 1).is_err());
    assert!(tok.encode_padded("rain", 2).is_err());
    assert_eq!(tok.encode_padded("", 2).unwrap().ids, [0, 2]);
    assert_eq!(tok.encode_padded("rain", 3).unwrap().ids.len(), 3);
}

#[test]
fn invalid_utf8_prompt_is_an_error() {
    let e = prompt_from_utf8(b"rain\xC3(").unwrap_err().to_string();
    assert!(e.contains("not valid UTF-8") && e.contains("offset 4"), "{e}");
}
