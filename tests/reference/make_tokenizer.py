"""RoBERTa tokenizer fixtures for tests/tokenizer.rs.

Two steps, both deterministic:

  --train   trains a small byte-level BPE vocabulary with the `tokenizers` library and writes it
            in roberta-base's layout to tests/fixtures/tokenizer/roberta/{vocab.json,merges.txt}:
            `<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3, then the 256 byte symbols and the merged
            tokens, and `<mask>` last (roberta-base has it at 50264, after everything else).
            The corpus is the source text of a few stdlib modules (so it varies with the Python
            version: the committed files are the reference, rerun only to change them) plus a
            multilingual paragraph below, so that accented, CJK, Arabic and emoji bytes merge too.
  --tables  writes src/tokenize/classes.rs (the `\\p{L}`/`\\p{N}` ranges of the `regex` module).
  (always)  loads those files with transformers 4.x's *slow* `RobertaTokenizer(vocab_file,
            merges_file)` -- the Python class AudioLDM calls (`RobertaTokenizer.from_pretrained(
            "roberta-base")`; transformers 5 replaced it with the Rust-backed one) -- and writes
            expected.json: for every string, the ids of `tokenizer(text)` (with `<s>`...`</s>`),
            the ids of the fast tokenizer when they differ, and for a few strings the padded
            form `tokenizer(text, padding="max_length", truncation=True, max_length=N)` as
            AudioLDM calls it (N = 512 and 16).

Run with transformers < 5 (e.g. `python -m venv v && v/bin/pip install "transformers>=4.57,<5"
tokenizers regex`):  python tests/reference/make_tokenizer.py [--train]
"""

from __future__ import annotations

import argparse
import inspect
import json
import platform
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "fixtures" / "tokenizer" / "roberta"

MULTILINGUAL = """
Rain on a tin roof, a dog barking in the distance, traffic on a wet street.
Café, naïve, façade, Zürich, São Paulo, crème brûlée, smörgåsbord, Ångström.
Ελληνικά κείμενα, русский текст, українська мова, עברית, العربية الفصحى, हिन्दी भाषा.
日本語の文章です。東京の雨。中文文本，北京的天气。한국어 문장입니다.
Emoji: 🎵🎶🔊🐶🐱🚗🌧️👨‍👩‍👧‍👦 👍🏽 ❤️ 🇫🇷 🇯🇵 — “quotes” ‘single’ … « guillemets ».
Numbers: 1234567890, ١٢٣٤٥, ½ ¾ ², Ⅻ, 3.14159, 1,000,000, 0x1F, 10:30pm.
Contractions: it's, don't, we're, they've, I'm, we'll, he'd, IT'S, DON'T, WE'RE.
"""

SPECIALS_FIRST = ["<s>", "<pad>", "</s>", "<unk>"]
MASK = "<mask>"


def train() -> None:
    import string, textwrap, json as json_mod, argparse as argparse_mod, random as random_mod
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    corpus = [inspect.getsource(m) for m in (string, textwrap, json_mod, argparse_mod, random_mod)]
    corpus += [MULTILINGUAL] * 20
    tok = Tokenizer(models.BPE())
    # add_prefix_space=False as roberta-base; use_regex=True is GPT-2's pre-tokenisation regex.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=len(SPECIALS_FIRST) + 256 + 1500,
        min_frequency=2,
        special_tokens=SPECIALS_FIRST,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    vocab: dict[str, int] = model["vocab"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    for i, s in enumerate(SPECIALS_FIRST):
        assert vocab[s] == i, (s, vocab[s])
    assert MASK not in vocab
    vocab[MASK] = len(vocab)
    assert sorted(vocab.values()) == list(range(len(vocab)))
    OUT.mkdir(parents=True, exist_ok=True)
    # The layout of roberta-base's files: one JSON object, merges with the `#version` header and
    # a trailing newline (the slow tokenizer drops the last line of merges.txt, see the Rust docs).
    (OUT / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (OUT / "merges.txt").write_text("#version: 0.2\n" + "".join(m + "\n" for m in merges), encoding="utf-8")
    print(f"trained: {len(vocab)} tokens, {len(merges)} merges")


def tables() -> None:
    """Writes src/tokenize/classes.rs: the code point ranges of `\\p{L}` and `\\p{N}` as the `regex`
    module (which runs the slow tokenizer's pattern) sees them, so the Rust scanner classifies
    every code point exactly as the reference does, whatever Unicode version Rust's std has.
    (`\\s` there is Unicode White_Space, which is Rust's `char::is_whitespace`; checked here.)"""
    import regex

    letter, number, space = (regex.compile(p) for p in (r"\p{L}", r"\p{N}", r"\s"))
    ws = [c for c in range(0x110000) if space.match(chr(c))]
    rust_ws = [0x9, 0xA, 0xB, 0xC, 0xD, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
    assert ws == rust_ws, "regex's \\s is no longer Unicode White_Space"

    def ranges(pat):
        out, start = [], None
        for c in range(0x110001):
            hit = c < 0x110000 and pat.match(chr(c)) is not None
            if hit and start is None:
                start = c
            elif not hit and start is not None:
                out.append((start, c - 1))
                start = None
        return out

    def table(name, rs):
        rows = [", ".join(f"(0x{a:X}, 0x{b:X})" for a, b in rs[i : i + 6]) for i in range(0, len(rs), 6)]
        return f"#[rustfmt::skip]\npub(super) const {name}: &[(u32, u32)] = &[\n" + "".join(f"    {r},\n" for r in rows) + "];\n"

    src = (
        "//! Generated by tests/reference/make_tokenizer.py --tables from the Python `regex` module\n"
        f"//! {regex.__version__} (the module the slow RobertaTokenizer's pattern runs in); do not edit.\n"
        "//! Inclusive code point ranges, sorted, for binary search.\n\n"
        "/// `\\p{L}`: general categories Lu, Ll, Lt, Lm, Lo.\n"
        + table("LETTER", ranges(letter))
        + "\n/// `\\p{N}`: general categories Nd, Nl, No.\n"
        + table("NUMBER", ranges(number))
    )
    path = REPO / "src" / "tokenize" / "classes.rs"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(src, encoding="utf-8")
    print(f"wrote {path.relative_to(REPO)}")


def strings() -> list[str]:
    s: list[str] = [
        "", " ", "  ", "\t", "\n", "\r\n", " \n ", "a", " a", "a ", "  a  ",
        "rain on a tin roof", "A dog barking in the distance.", "Hello world", " Hello world",
        "Hello  world", "Hello   world", "Hello\tworld", "Hello\nworld", "Hello\r\nworld",
        "Hello \n world", "line one\r\nline two\r\n", "trailing spaces   ", "   leading spaces",
        "\n\n\nparagraph\n\n", "tabs\t\t\tand spaces \t \t", "mixed \u00a0nbsp", "nbsp\u00a0\u00a0x",
        "\u00a0", "\u3000ideographic space\u3000", "en\u2002space em\u2003space", "line\u2028sep",
        "para\u2029sep", "nel\u0085next", "thin\u2009space", "narrow\u202fnbsp", "ogham\u1680space",
        "zero\u200bwidth", "joiner\u200dhere", "bom\ufeffhere", "soft\u00adhyphen",
        "vertical\x0btab", "form\x0cfeed", "file\x1csep", "group\x1dsep\x1e\x1f", "bell\x07char",
        "null\x00byte", "del\x7fchar", "c1\x80\x9fcontrols", "escape\x1b[31mred",
        # contractions, both cases and at odd places
        "it's", "It's", "IT'S", "don't", "DON'T", "we're", "WE'RE", "they've", "THEY'VE", "I'm",
        "I'M", "we'll", "WE'LL", "he'd", "HE'D", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d",
        "'S", "'x", "''s", "'''", "rock'n'roll", "the dog's bark", "dogs' barks", " 's", "!'s",
        "'sss", "'llama", "'dd", "o'clock", "it’s (curly)", "Ma'am's car'll",
        # digits and punctuation
        "0", "123", "1234567890", "3.14159", "1,000,000", "10:30pm", "-5", "+1 (555) 123-4567",
        "2026-12-04T16:35:00Z", "v1.2.3-rc.4", "0x1F 0b1010", "٣٤٥ Arabic-Indic", "½ ¾ ² ³ ⅓",
        "Ⅻ Roman twelve", "①②③", "𝟙𝟚𝟛 math digits", "a1b2c3", "abc123def", "123abc", " 123",
        "!!!", "???!!!", "...", "…", "--", "—", "()", "[{<>}]", "@#$%^&*", "a.b,c;d:e", "\"quoted\"",
        "“curly” ‘quotes’", "«guillemets»", "path/to/file.wav", "C:\\Windows\\System32",
        "https://example.com/a?b=c&d=e#f", "user@example.com", "#hashtag @mention",
        "$100.00 €50 £20 ¥1000", "100%", "a+b=c", "x^2 + y^2 = z^2", "~/.config", "`code`",
        "_underscore_", "__init__", "snake_case_name", "CamelCaseName", "kebab-case-name",
        # letters: accents, combining marks, scripts
        "Café", "café", "naïve façade", "Zürich", "São Paulo", "crème brûlée", "Ångström",
        "cafe\u0301 (combining)", "e\u0301\u0301\u0301", "\u0301 leading mark", "a\u0308o\u0308u\u0308",
        "Z\u0351\u0352\u0353algo", "ﬁ ligature", "Straße", "İstanbul", "ǅ titlecase",
        "Ελληνικά κείμενα", "русский текст", "українська", "עברית", "العربية الفصحى",
        "مرحبا بالعالم", "हिन्दी भाषा", "தமிழ்", "ไทย ภาษา", "ქართული", "Հայերեն", "አማርኛ",
        "日本語の文章です。", "東京の雨", "中文文本，北京的天气。", "한국어 문장입니다", "ｆｕｌｌｗｉｄｔｈ",
        "ﾊﾝｶｸ", "𠀀𠀁 CJK ext B", "漢字かなカナ", "mixed日本語and English",
        # emoji and symbols
        "🎵", "🎵🎶🔊", "🐶 barking", "rain 🌧️ on roof", "👨‍👩‍👧‍👦", "👍🏽", "❤️", "🇫🇷🇯🇵",
        "🏳️‍🌈", "🧑🏿‍🚀", "emoji🎵in🎶words", "😀 😃 😄", "©®™", "♠♣♥♦", "→←↑↓", "∑∫∂√∞",
        "\ufffd replacement", "\U0010ffff max", "\ue000 private use", "\U000e0001 tag",
        # special tokens typed in the text
        "<s>", "</s>", "<pad>", "<unk>", "<mask>", "<s>hello</s>", "hello <mask> world",
        "hello<mask>world", "hello   <mask>", "hello\n\t <mask>", "hello\u00a0<mask>",
        "hello\x1c<mask>", "<mask> starts", " <mask>", "<mask><mask>", "<mask> <mask>",
        "<s><s>", "<s <s>", "<<s>>", "<</s>>", "<s<s>", "</s", "<mask", "mask>", "<MASK>", "<S>",
        "< s >", "<pad><unk>", "a <pad> b <unk> c", "<s> </s> <mask> <pad> <unk>",
        "text </s> more <s>", "    <mask>    ", "x<mask> ", "\n<mask>\n",
    ]
    # Whitespace runs of every length against letters, digits and punctuation.
    for n in range(1, 5):
        for ws in (" ", "\t", "\n", "\u00a0", " \t"):
            s.append(f"a{ws * n}b")
            s.append(f"1{ws * n}2")
            s.append(f"!{ws * n}?")
            s.append(f"{ws * n}end")
    # Seeded random mixtures of the interesting characters.
    rng = random.Random(1234)
    pool = list("aZ 0 9 ' s t re\t\n\r\u00a0!?.,;-\u0301é日本🎵\u200d👍🏽<>/") + ["<s>", "<mask>", "</s>", "'s", "'ll", "  "]
    for _ in range(40):
        s.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 40))))
    # Long inputs: 600 words (truncates at 512) and single very long words.
    words = "rain falls on the old tin roof while a dog barks and cars pass by".split()
    s.append(" ".join(words[i % len(words)] for i in range(600)))
    s.append("a" * 3000)
    s.append("ab" * 2000)
    s.append("supercalifragilisticexpialidocious" * 40)
    s.append("日本" * 500)
    s.append("🎵" * 300)
    s.append("!" * 1000)
    s.append("1" * 1000)
    s.append(" " * 1000)
    s.append(" " * 999 + "x")
    return s


PADDED = {
    "": (512, 16),
    "rain on a tin roof": (512, 16),
    "<mask> starts": (16,),
    "A dog barking in the distance.": (16, 7, 2),
}


def odd_merges(RobertaTokenizer, RobertaTokenizerFast) -> dict:
    """A hand-made vocabulary whose merge ranks are not in training order: `aa a` ranks before
    `a a`, so merging `a a` creates a pair of *lower* rank than the one being merged. The slow
    class finishes the round (all `a a` occurrences) before it looks again; a plain priority
    queue would merge `aa a` at once. Also two byte symbols are left out of the vocabulary."""
    import tempfile

    chars = "".join(sorted(set("abcĠ")))
    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", *chars, "aa", "aaa", "aaaa", "ab", "aab", "Ġa", "<mask>"])}
    merges = ["aa a", "a a", "aa aa", "a b", "aa b", "Ġ a"]
    texts = ["a", "aa", "aaa", "aaaa", "aaaaa", "aaaaaa", "aaaaaaa", "aab", "aaab", "aaaab", "abab", " aaaa", "aaaa aaa", "xa", "aza"]
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        (Path(d) / "merges.txt").write_text("#version: 0.2\n" + "".join(m + "\n" for m in merges), encoding="utf-8")
        slow = RobertaTokenizer(str(Path(d) / "vocab.json"), str(Path(d) / "merges.txt"))
        fast = RobertaTokenizerFast(str(Path(d) / "vocab.json"), str(Path(d) / "merges.txt"))
        cases = []
        for t in texts:
            case = {"text": t, "ids": slow(t)["input_ids"]}
            if fast(t)["input_ids"] != case["ids"]:
                case["fast_ids"] = fast(t)["input_ids"]
            cases.append(case)
    return {"vocab": vocab, "merges": merges, "cases": cases}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", action="store_true")
    ap.add_argument("--tables", action="store_true")
    args = ap.parse_args()
    if args.tables:
        tables()
    if args.train:
        train()

    import tokenizers
    import transformers
    from transformers import RobertaTokenizer, RobertaTokenizerFast

    assert transformers.__version__.split(".")[0] == "4", "the slow RobertaTokenizer needs transformers 4.x"
    vocab, merges = str(OUT / "vocab.json"), str(OUT / "merges.txt")
    slow = RobertaTokenizer(vocab, merges)
    fast = RobertaTokenizerFast(vocab, merges)

    texts = strings()
    long_600 = " ".join("rain falls on the old tin roof while a dog barks and cars pass by".split()[i % 14] for i in range(600))
    for t in (long_600, "a" * 3000):
        PADDED[t] = (512, 16)
    cases = []
    n_diff = 0
    for t in texts:
        ids = slow(t)["input_ids"]
        case = {"text": t, "ids": ids}
        fids = fast(t)["input_ids"]
        if fids != ids:
            case["fast_ids"] = fids
            n_diff += 1
        if t in PADDED:
            case["padded"] = []
            for n in PADDED[t]:
                enc = slow(t, padding="max_length", truncation=True, max_length=n)
                case["padded"].append(
                    {"max_length": n, "ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
                )
        cases.append(case)
    odd = odd_merges(RobertaTokenizer, RobertaTokenizerFast)
    meta = {
        "script": "tests/reference/make_tokenizer.py",
        "python": platform.python_version(),
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "reference": "transformers.RobertaTokenizer (slow, Python) on vocab.json + merges.txt",
        "fast_differs": n_diff,
    }
    out = OUT / "expected.json"
    # One case per line: small, and a diff names the strings that changed.
    body = ",\n".join(json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in cases)
    meta_s = json.dumps(meta, ensure_ascii=False)
    odd_s = json.dumps(odd, ensure_ascii=False, separators=(",", ":"))
    out.write_text(f'{{"meta":{meta_s},\n"odd_merges":{odd_s},\n"cases":[\n{body}\n]}}\n', encoding="utf-8")
    print(f"{len(cases)} strings, {n_diff} where the fast tokenizer differs -> {out.relative_to(REPO)}")
    for c in cases + odd["cases"]:
        if "fast_ids" in c:
            print("  slow != fast:", repr(c["text"][:60]), c["ids"][:12], c["fast_ids"][:12])


if __name__ == "__main__":
    sys.exit(main())
