//! RoBERTa's tokenizer as AudioLDM's CLAP calls it: `RobertaTokenizer.from_pretrained(
//! "roberta-base")(text, padding="max_length", truncation=True, max_length=512)`, the *slow*
//! Python class of transformers 4.x
//! (<https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/models/roberta/tokenization_roberta.py>,
//! with `PreTrainedTokenizer.tokenize` in `tokenization_utils.py`), reproduced id for id:
//!
//! 1. The special tokens `<s>`, `<pad>`, `</s>`, `<unk>`, `<mask>` typed in the text are matched
//!    as themselves (the slow class splits the text on them before anything else) and become
//!    their ids. `<mask>` is declared with `lstrip=True`, so whitespace left of it is dropped
//!    (Python's `str.rstrip()`, whose whitespace includes U+001C..U+001F).
//! 2. Each stretch of text between them is cut by GPT-2's pattern
//!    `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
//!    (a hand-written scanner below: Rust's `regex` has no lookahead).
//! 3. Each piece's UTF-8 bytes are BPE-merged, lowest merge rank first, every occurrence of that
//!    pair left to right in one round, as `RobertaTokenizer.bpe` does; the symbols' ids come
//!    from `vocab.json`, a byte missing from the vocabulary becomes `<unk>`.
//! 4. `<s>` … `</s>` around the ids; with `truncation=True` the text's ids are cut to
//!    `max_length - 2`, then `<pad>` fills up to `max_length` with attention mask 0.
//!
//! Nothing is normalised (no NFC, no lower-casing), as in the Python class. The only known
//! difference from `RobertaTokenizerFast` is item 1's whitespace: before `<mask>` the fast one
//! keeps U+001C..U+001F (tests/fixtures/tokenizer/roberta/expected.json lists such cases).
//!
//! Files are checked more strictly than Python checks them (it would load a broken file and emit
//! `<unk>` or `KeyError` later): every merge has two symbols that are in the vocabulary and
//! whose concatenation is too, ids are unique, the five special tokens exist.

use std::collections::{BinaryHeap, HashMap};

use super::{bytes_to_unicode, class, py_isspace, Class};
use crate::{Error, Result};

/// A RoBERTa (GPT-2 byte-level BPE) tokenizer loaded from `vocab.json` and `merges.txt`.
#[derive(Clone, Debug)]
pub struct RobertaTokenizer {
    /// The id of each byte's one-character symbol, or [`UNKNOWN`] if the vocabulary lacks it.
    byte_ids: [u32; 256],
    /// `(left id, right id)` packed as `left << 32 | right` → merge rank.
    ranks: HashMap<u64, u32>,
    /// By rank: `(left id, right id, merged id)`.
    merges: Vec<(u32, u32, u32)>,
    special: Special,
    vocab_size: usize,
    add_prefix_space: bool,
}

/// Ids of the special tokens, read from `vocab.json` (roberta-base: 0, 1, 2, 3, 50264).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Special {
    pub bos: u32,
    pub pad: u32,
    pub eos: u32,
    pub unk: u32,
    pub mask: u32,
}

/// `tokenizer(text, padding="max_length", truncation=True, max_length=n)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoding {
    /// `<s>`, the text's ids (at most `n - 2`), `</s>`, then `<pad>` up to `n`.
    pub ids: Vec<u32>,
    /// 1 for `<s>`, the text and `</s>`; 0 for padding. Length `n`.
    pub attention_mask: Vec<u32>,
    /// Whether the text had more than `n - 2` tokens and lost its tail.
    pub truncated: bool,
}

/// A symbol whose byte is not in the vocabulary: it never merges and maps to `<unk>`.
const UNKNOWN: u32 = u32::MAX;
const NONE: u32 = u32::MAX;

/// The special tokens the slow class matches in the text, and whether each strips whitespace
/// on its left (`AddedToken(lstrip=...)` in `RobertaTokenizer.__init__`).
const SPECIAL_TEXT: [(&str, bool); 5] = [("<s>", false), ("<pad>", false), ("</s>", false), ("<unk>", false), ("<mask>", true)];

impl RobertaTokenizer {
    /// Parses the two files of a Hugging Face RoBERTa/GPT-2 tokenizer. Errors name the file
    /// and, for `merges.txt`, the line.
    pub fn from_files_bytes(vocab_json: &[u8], merges_txt: &[u8]) -> Result<Self> {
        Self::parse(vocab_json, "vocab.json", merges_txt, "merges.txt")
    }

    /// Reads `vocab.json` and `merges.txt` from disk; errors carry the paths.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_files(vocab_json: &std::path::Path, merges_txt: &std::path::Path) -> Result<Self> {
        let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| Error::io(format!("reading {}", p.display()), e));
        let (v, m) = (read(vocab_json)?, read(merges_txt)?);
        Self::parse(&v, &vocab_json.display().to_string(), &m, &merges_txt.display().to_string())
    }

    fn parse(vocab_json: &[u8], vocab_name: &str, merges_txt: &[u8], merges_name: &str) -> Result<Self> {
        let vocab = parse_vocab(vocab_json, vocab_name)?;
        let id = |tok: &str| vocab.get(tok).copied();
        let special_id = |tok: &str| id(tok).ok_or_else(|| Error::Format(format!("{vocab_name}: the special token `{tok}` is missing")));
        let special =
            Special { bos: special_id("<s>")?, pad: special_id("<pad>")?, eos: special_id("</s>")?, unk: special_id("<unk>")?, mask: special_id("<mask>")? };
        let byte_chars = bytes_to_unicode();
        let mut byte_ids = [UNKNOWN; 256];
        for (b, c) in byte_chars.iter().enumerate() {
            byte_ids[b] = id(c.encode_utf8(&mut [0; 4])).unwrap_or(UNKNOWN);
        }
        let (ranks, merges) = parse_merges(merges_txt, merges_name, &vocab, vocab_name)?;
        Ok(RobertaTokenizer { byte_ids, ranks, merges, special, vocab_size: vocab.len(), add_prefix_space: false })
    }

    /// `add_prefix_space=True`: a space is put before text that does not start with whitespace,
    /// so the first word is tokenized like any other. roberta-base and AudioLDM leave it off.
    pub fn with_add_prefix_space(mut self, on: bool) -> Self {
        self.add_prefix_space = on;
        self
    }

    /// The special tokens' ids.
    pub fn special(&self) -> Special {
        self.special
    }

    /// Entries in `vocab.json` (roberta-base: 50265).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// `tokenizer(text)["input_ids"]`: `<s>`, the text's ids, `</s>`; no truncation.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = vec![self.special.bos];
        self.tokenize(text, &mut ids, usize::MAX);
        ids.push(self.special.eos);
        ids
    }

    /// `tokenizer(text, padding="max_length", truncation=True, max_length=max_len)` as AudioLDM
    /// calls it (`max_len` 512). Tokenizing stops after the piece that yields the `max_len - 1`th
    /// text token, so a 100,000-character prompt of words costs about what 512 tokens cost.
    ///
    /// `max_len` must hold `<s>` and `</s>`, and one text token more when the text has any: the
    /// Python class, asked to cut a text to nothing, logs an error and returns it uncut.
    pub fn encode_padded(&self, text: &str, max_len: usize) -> Result<Encoding> {
        crate::ensure!(max_len >= 2, "tokenize", "max_length {max_len} leaves no room for <s> and </s>");
        let room = max_len - 2;
        let mut ids = Vec::with_capacity(max_len + 1);
        ids.push(self.special.bos);
        // One token past the room (after `<s>`) tells whether anything was cut.
        self.tokenize(text, &mut ids, 1 + room + 1);
        let truncated = ids.len() - 1 > room;
        crate::ensure!(!(truncated && room == 0), "tokenize", "max_length 2 leaves no room for the text's tokens (the Python tokenizer would not truncate)");
        ids.truncate(1 + room);
        ids.push(self.special.eos);
        let used = ids.len();
        ids.resize(max_len, self.special.pad);
        let attention_mask = (0..max_len).map(|i| u32::from(i < used)).collect();
        Ok(Encoding { ids, attention_mask, truncated })
    }

    /// Appends the ids of `text` (no `<s>`/`</s>`) to `out`, stopping once `out` holds `limit`
    /// ids or more (it may hold more: a piece's ids are appended whole).
    fn tokenize(&self, text: &str, out: &mut Vec<u32>, limit: usize) {
        // `prepare_for_tokenization`: Python's isspace() decides whether a space is needed.
        let prefixed;
        let text = if self.add_prefix_space && text.chars().next().is_some_and(|c| !py_isspace(c)) {
            prefixed = format!(" {text}");
            prefixed.as_str()
        } else {
            text
        };
        let mut rest = text;
        while out.len() < limit {
            match find_special(rest) {
                Some((at, tok, lstrip)) => {
                    let before = &rest[..at];
                    let before = if lstrip { before.trim_end_matches(py_isspace) } else { before };
                    self.tokenize_plain(before, out, limit);
                    if out.len() >= limit {
                        break;
                    }
                    out.push(self.special_id_of(tok));
                    rest = &rest[at + tok.len()..];
                }
                None => {
                    self.tokenize_plain(rest, out, limit);
                    break;
                }
            }
        }
    }

    fn special_id_of(&self, tok: &str) -> u32 {
        let s = self.special;
        match tok {
            "<s>" => s.bos,
            "<pad>" => s.pad,
            "</s>" => s.eos,
            "<unk>" => s.unk,
            _ => s.mask,
        }
    }

    /// Text without special tokens: pre-tokenize, then BPE each piece.
    fn tokenize_plain(&self, text: &str, out: &mut Vec<u32>, limit: usize) {
        let mut i = 0;
        let mut bpe = Bpe::default();
        while i < text.len() && out.len() < limit {
            let end = piece_end(text, i);
            bpe.run(self, &text.as_bytes()[i..end], out);
            i = end;
        }
    }
}

/// The first special token in `s`: its byte offset, text and `lstrip`. None of the five is a
/// substring of another, so the leftmost match is the one the slow class's trie finds.
fn find_special(s: &str) -> Option<(usize, &'static str, bool)> {
    let bytes = s.as_bytes();
    let mut from = 0;
    while let Some(p) = bytes[from..].iter().position(|&b| b == b'<') {
        let at = from + p;
        if let Some(&(tok, lstrip)) = SPECIAL_TEXT.iter().find(|(t, _)| s[at..].starts_with(t)) {
            return Some((at, tok, lstrip));
        }
        from = at + 1;
    }
    None
}

/// The end (byte offset) of the pre-tokenizer piece that starts at byte `i` of `s`: what the
/// pattern `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+` matches
/// there. The alternatives are tried in order, as the regex engine does; every character
/// matches one of them, so the piece is never empty.
fn piece_end(s: &str, i: usize) -> usize {
    let rest = &s[i..];
    let mut chars = rest.chars();
    let c = chars.next().expect("piece_end inside the text");
    // Contractions, lower case only (the pattern has no IGNORECASE): "'S" is "'" then "S".
    if c == '\'' {
        for suffix in ["s", "t", "re", "ve", "m", "ll", "d"] {
            if rest[1..].starts_with(suffix) {
                return i + 1 + suffix.len();
            }
        }
    }
    // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional space, then a run of one class.
    let (start, k) = match class(c) {
        Class::Space if c == ' ' => match chars.next().map(class) {
            Some(k) if k != Class::Space => (i + 1, k),
            _ => (i, Class::Space),
        },
        k => (i, k),
    };
    if k != Class::Space {
        return run_end(s, start, k);
    }
    // `\s+(?!\S)`: the whitespace run, less its last character when a non-space follows (that
    // character then opens the next piece, e.g. the space of " word"); if that leaves nothing,
    // `\s+` takes the single whitespace character.
    let end = run_end(s, i, Class::Space);
    if end == s.len() {
        return end;
    }
    let last = s[..end].char_indices().next_back().map_or(i, |(p, _)| p);
    if last > i {
        last
    } else {
        end
    }
}

/// The end of the run of class-`k` characters starting at byte `i`.
fn run_end(s: &str, i: usize, k: Class) -> usize {
    s[i..].char_indices().find(|&(_, c)| class(c) != k).map_or(s.len(), |(p, _)| i + p)
}

/// Scratch space for BPE on one piece, reused across pieces.
#[derive(Default)]
struct Bpe {
    /// Symbol ids; position = index of the symbol's first byte in the piece.
    ids: Vec<u32>,
    next: Vec<u32>,
    prev: Vec<u32>,
    alive: Vec<bool>,
    /// Candidate merges `(rank, left position)`, min-first; entries go stale when a neighbour
    /// merges and are checked against the current ids when popped.
    heap: BinaryHeap<std::cmp::Reverse<(u32, u32)>>,
    round: Vec<u32>,
}

impl Bpe {
    /// BPE-merges the bytes of one piece and appends the resulting ids.
    ///
    /// Python's `bpe` repeats: take the pair with the lowest rank, merge all its occurrences left
    /// to right (non-overlapping), until no pair has a rank. A heap reproduces that in
    /// O(n log n) (a 100,000-byte word would be O(n²) in Python's loop) as long as each round
    /// takes *all* entries of the lowest rank before any merge it creates: a merge can create a
    /// pair of lower rank than the current one, which Python only sees in its next round.
    fn run(&mut self, tok: &RobertaTokenizer, piece: &[u8], out: &mut Vec<u32>) {
        let n = piece.len();
        self.ids.clear();
        self.ids.extend(piece.iter().map(|&b| tok.byte_ids[b as usize]));
        if n > 1 {
            self.next.clear();
            self.next.extend((1..=n as u32).map(|j| if j as usize == n { NONE } else { j }));
            self.prev.clear();
            self.prev.extend((0..n as u32).map(|j| if j == 0 { NONE } else { j - 1 }));
            self.alive.clear();
            self.alive.resize(n, true);
            self.heap.clear();
            for p in 0..n - 1 {
                self.push(tok, p as u32);
            }
            while let Some(std::cmp::Reverse((rank, first))) = self.heap.pop() {
                // All entries of this rank, left to right.
                self.round.clear();
                self.round.push(first);
                while let Some(&std::cmp::Reverse((r, p))) = self.heap.peek() {
                    if r != rank {
                        break;
                    }
                    self.round.push(p);
                    self.heap.pop();
                }
                self.round.sort_unstable();
                let (left, right, merged) = tok.merges[rank as usize];
                for k in 0..self.round.len() {
                    let p = self.round[k];
                    let q = self.next[p as usize];
                    if !self.alive[p as usize] || q == NONE || self.ids[p as usize] != left || self.ids[q as usize] != right {
                        continue; // stale: a neighbour merged since this entry was pushed
                    }
                    self.ids[p as usize] = merged;
                    self.alive[q as usize] = false;
                    let r = self.next[q as usize];
                    self.next[p as usize] = r;
                    if r != NONE {
                        self.prev[r as usize] = p;
                        self.push(tok, p);
                    }
                    let before = self.prev[p as usize];
                    if before != NONE {
                        self.push(tok, before);
                    }
                }
            }
        }
        let unk = tok.special.unk;
        let mut p = 0u32;
        while (p as usize) < n {
            let id = self.ids[p as usize];
            out.push(if id == UNKNOWN { unk } else { id });
            p = if n > 1 { self.next[p as usize] } else { NONE };
            if p == NONE {
                break;
            }
        }
    }

    /// Queues the pair that starts at position `p`, if it has a merge rank.
    fn push(&mut self, tok: &RobertaTokenizer, p: u32) {
        let q = self.next[p as usize];
        let (a, b) = (self.ids[p as usize], self.ids[q as usize]);
        if a == UNKNOWN || b == UNKNOWN {
            return;
        }
        if let Some(&rank) = tok.ranks.get(&pair_key(a, b)) {
            self.heap.push(std::cmp::Reverse((rank, p)));
        }
    }
}

fn pair_key(a: u32, b: u32) -> u64 {
    (u64::from(a) << 32) | u64::from(b)
}

/// `vocab.json`: one JSON object of token → id (a non-negative integer below 2^32), keys and
/// ids unique. Python's `json.load` keeps the last of duplicate keys; a file with duplicates is
/// broken, so it is an error here.
fn parse_vocab(bytes: &[u8], name: &str) -> Result<HashMap<String, u32>> {
    use serde::de::{Deserializer as _, MapAccess, Visitor};

    struct Entries;
    impl<'de> Visitor<'de> for Entries {
        type Value = Vec<(String, u64)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object of token -> id")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
            let mut v = Vec::new();
            while let Some(entry) = map.next_entry::<String, u64>()? {
                v.push(entry);
            }
            Ok(v)
        }
    }

    let bad = |msg: String| Error::Format(format!("{name}: {msg}"));
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let entries = de.deserialize_map(Entries).map_err(|e| bad(e.to_string()))?;
    de.end().map_err(|e| bad(e.to_string()))?;
    if entries.is_empty() {
        return Err(bad("the vocabulary is empty".into()));
    }
    let mut vocab = HashMap::with_capacity(entries.len());
    let mut owner: HashMap<u32, usize> = HashMap::with_capacity(entries.len());
    for (k, (token, id)) in entries.iter().enumerate() {
        let id = u32::try_from(*id)
            .ok()
            .filter(|&id| id != u32::MAX)
            .ok_or_else(|| bad(format!("token {token:?} has id {id}, out of range (ids are below 2^32 - 1)")))?;
        if let Some(&other) = owner.get(&id) {
            return Err(bad(format!("tokens {:?} and {token:?} share id {id}", entries[other].0)));
        }
        owner.insert(id, k);
        if vocab.insert(token.clone(), id).is_some() {
            return Err(bad(format!("token {token:?} appears twice")));
        }
    }
    Ok(vocab)
}

/// `merges.txt`: a `#version` line, then one merge per line, two symbols separated by
/// whitespace, rank = order. Read as the slow class reads it: universal newlines, the first
/// line skipped, and the text after the last newline ignored (`read().split("\n")[1:-1]`):
/// files end with a newline, and of a file that does not, Python drops the last merge, so
/// this does too.
#[allow(clippy::type_complexity)]
fn parse_merges(bytes: &[u8], name: &str, vocab: &HashMap<String, u32>, vocab_name: &str) -> Result<(HashMap<u64, u32>, Vec<(u32, u32, u32)>)> {
    let text = std::str::from_utf8(bytes).map_err(|e| Error::Format(format!("{name}: not UTF-8 (invalid byte at offset {})", e.valid_up_to())))?;
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut lines: Vec<&str> = text.split('\n').collect();
    if !lines[0].starts_with("#version") {
        return Err(Error::Format(format!("{name} line 1: expected the `#version` header, found {:?}", lines[0])));
    }
    lines.pop();
    let mut ranks = HashMap::with_capacity(lines.len());
    let mut merges = Vec::with_capacity(lines.len());
    for (n, line) in lines.iter().enumerate().skip(1) {
        let at = || format!("{name} line {}", n + 1);
        let parts: Vec<&str> = line.split(py_isspace).filter(|s| !s.is_empty()).collect();
        let [a, b] = parts[..] else {
            return Err(Error::Format(format!("{}: expected two symbols, found {} in {line:?}", at(), parts.len())));
        };
        let lookup = |s: &str| vocab.get(s).copied().ok_or_else(|| Error::Format(format!("{}: symbol {s:?} is not in {vocab_name}", at())));
        let (ia, ib, im) = (lookup(a)?, lookup(b)?, lookup(&format!("{a}{b}"))?);
        let rank = merges.len() as u32;
        if ranks.insert(pair_key(ia, ib), rank).is_some() {
            return Err(Error::Format(format!("{}: the merge {a:?} {b:?} appears twice", at())));
        }
        merges.push((ia, ib, im));
    }
    Ok((ranks, merges))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pieces of the pre-tokenizer on its own (the full tokenizer is compared with Python in
    /// tests/tokenizer.rs).
    fn pieces(s: &str) -> Vec<&str> {
        let mut v = Vec::new();
        let mut i = 0;
        while i < s.len() {
            let e = piece_end(s, i);
            v.push(&s[i..e]);
            i = e;
        }
        v
    }

    #[test]
    fn pre_tokenizer_follows_gpt2_pattern() {
        assert_eq!(pieces("Hello world"), ["Hello", " world"]);
        assert_eq!(pieces("  hello"), [" ", " hello"]);
        assert_eq!(pieces("a  \n b"), ["a", "  \n", " b"]);
        assert_eq!(pieces("\nx"), ["\n", "x"]);
        assert_eq!(pieces("x   "), ["x", "   "]);
        assert_eq!(pieces("it's IT'S"), ["it", "'s", " IT", "'", "S"]);
        assert_eq!(pieces(" 's !'s"), [" '", "s", " !'", "s"]);
        assert_eq!(pieces("abc123 45!?"), ["abc", "123", " 45", "!?"]);
        assert_eq!(pieces("e\u{301} \u{a0}x"), ["e", "\u{301}", " ", "\u{a0}", "x"]);
        assert_eq!(pieces("日本語。🎵"), ["日本語", "。🎵"]);
    }

    #[test]
    fn special_tokens_are_found_leftmost() {
        assert_eq!(find_special("<<s>>"), Some((1, "<s>", false)));
        assert_eq!(find_special("<s<mask>"), Some((2, "<mask>", true)));
        assert_eq!(find_special("</s"), None);
    }
}
