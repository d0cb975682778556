"""A small mixed corpus that exercises every pre-tokenizer branch.

Each entry targets a trap: whitespace runs (before letters, digits, newlines and
the end), digit runs, contractions, code indentation, non-Latin scripts, emoji,
combining accents, Unicode whitespace and control characters.
"""

CORPUS = [
    "",
    "Hello world! The quick brown fox jumps over the lazy dog.",
    "I'm sure you'll see they've said it's what we'd do. DON'T SHOUT, I'LL LISTEN",
    "def f(x):\n    if x > 1:\n        return x ** 2\n\treturn None\n\n\n",
    "class A:\n  \n    pass   \n",
    "    leading spaces and trailing spaces    ",
    "  1  22   333 x  4\n 5\t6\n\n7",
    "1234567890 3.14159 1,000,000 0x1F 2024-06-25 v1.2.3",
    "price: $12.99 (was $15) -> 20% off!!!",
    "日本語のテキストと中文文本，還有한국어 텍스트。",
    "Café naïve résumé coöperate Ångström e\u0301 n\u0303",
    "emoji: 😀👍🏽 👨‍👩‍👧‍👦 🇫🇷 ✨🚀",
    "Ελληνικά и русский текст, עברית, العربية",
    "tabs\tand\u00a0nbsp\u2003em-space\u3000ideographic\u2028line-sep\u0085nel",
    "controls \x1c\x1f \x0b\x0c end",
    "a  \n\n  b\r\n\r\nc \n",
    "x=[1,2,3];y={'k':'v'}  # comment\n",
    "   \n",
    "URLs: https://example.com/path?q=1&r=two#frag and email@test.org",
    "٣٤٥ ½ ² Ⅻ numbers in other scripts",
    "'s 't 're 've 'm 'll 'd ’s",
    " " * 17 + "a" + "\n" * 5 + "9" * 12,
]

# Texts that contain special token strings (encoded with allowed_special="all").
SMOL_SPECIAL = [
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>",
    "<|endoftext|>  12<|im_end|><|im_end|>x",
]
