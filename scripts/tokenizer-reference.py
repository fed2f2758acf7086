#!/usr/bin/env python3
"""Writes reference-data/refs/tokenizer-generated.json: random hard strings and their GPT-2 token ids.

The ids come from OpenAI's GPT-2 encoder algorithm (encoder.py: the pre-tokenization pattern over code points with the
`regex` module, the byte-to-unicode map, BPE by merge rank), reimplemented below, over the real GPT-2 vocab.json and
merges.txt of reference-data/models/gpt2-mini. It agrees with Hugging Face tokenizers and tiktoken on all 30 strings of
refs/tokenizer.json. The strings mix scripts, letters and digits beyond U+FFFF, emoji, whitespace runs, contractions,
controls and <|endoftext|>, so a tokenizer that splits on UTF-16 units, or differs in any rule, fails on some of them.

Usage: python3 scripts/tokenizer-reference.py [COUNT] [SEED]   (needs: pip install regex)
"""
import json, os, random, sys
from functools import lru_cache
import regex as re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "reference-data", "models", "gpt2-mini")
OUT = os.path.join(ROOT, "reference-data", "refs", "tokenizer-generated.json")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


encoder = json.load(open(os.path.join(MODEL, "vocab.json"), encoding="utf-8"))
lines = open(os.path.join(MODEL, "merges.txt"), encoding="utf-8").read().split("\n")
ranks = {tuple(m.split()): i for i, m in enumerate(m for m in lines[1:] if m.strip())}
byte_encoder = bytes_to_unicode()
pattern = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


@lru_cache(maxsize=None)
def bpe(token):
    word = tuple(token)
    while len(word) > 1:
        pairs = set(zip(word, word[1:]))
        first, second = min(pairs, key=lambda p: ranks.get(p, float("inf")))
        if (first, second) not in ranks:
            break
        merged, i = [], 0
        while i < len(word):
            if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                merged.append(first + second)
                i += 2
            else:
                merged.append(word[i])
                i += 1
        word = tuple(merged)
    return word


def encode(text):
    ids = []
    for piece in pattern.findall(text):
        symbols = "".join(byte_encoder[b] for b in piece.encode("utf-8"))
        ids.extend(encoder[s] for s in bpe(symbols))
    return ids


PIECES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\r", "\u00a0", "\u2028", "\u3000", "\u200b", "\ufeff", "\x00", "\x1b", "\x7f",
          "a", "the", "The", "Hello", "world", "ing", "ZZZ", "xyzzy", "é", "ñandú", "Straße", "İ", "ǅ", "ﬁ",
          "日本語", "中文", "한국어", "Привет", "Ελλάδα", "שלום", "مرحبا", "हिन्दी", "ไทย",
          "0", "7", "42", "2024", "3.14", "1,000", "٣", "①", "Ⅻ", "½", "²",
          "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'", "''", "’", "\"",
          "!", "?", "...", "—", "-", "_", "(", ")", "[", "]", "{", "}", "<", ">", "/", "\\", "@", "#", "$", "%", "&", "*", "=", "+", "|", "~", "`", ";", ":",
          "😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "e\u0301", "\u0301", "€", "𝔘", "𐍈", "𝐇ello", "𝟙𝟚", "𠀀",
          "<|endoftext|>", "<|endoftext", "|>", "http://x.org/a?b=c", "def f(x):\n    return x", "    ", "\t\t", " \n ", "aaaaaaaaaaaaaaaaaaaa"]


def random_text(rng):
    if rng.random() < 0.15:
        ranges = [(0x20, 0x7E), (0xA0, 0x2FFF), (0x4E00, 0x9FFF), (0x1D400, 0x1D7FF), (0x10300, 0x1034F), (0x20000, 0x2A6DF), (0x1F300, 0x1FAFF)]
        return "".join(chr(rng.randint(*rng.choice(ranges))) for _ in range(rng.randint(1, 30)))
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 12)))


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 2026
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        text = random_text(rng)
        cases.append({"text": text, "ids": encode(text)})
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump({"source": "OpenAI GPT-2 encoder algorithm (scripts/tokenizer-reference.py) over gpt2-mini's vocab.json and merges.txt",
                   "seed": seed, "cases": cases}, f, ensure_ascii=True, separators=(",", ":"))
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
