"""`llmkit tokenizer train|encode|decode`: thin handlers over llmkit.tokenizer.api.

Wire-up (llmkit/cli/main.py): EXTRA_MODULES += ("llmkit.cli.tokenizer",), EXTRA_VERBS += ("tokenizer",).
"""

from __future__ import annotations

import argparse
import json
import sys

from llmkit.core.assets import ASSETS
from llmkit.tokenizer import Tokenizer

TOKENIZER_HELP = ("a tokenizer directory (tokenizer.json), a checkpoint or HF model directory, a .gguf or .tiktoken "
                  "file, or a packaged name: " + ", ".join([*ASSETS, "gpt2"]) + " (default %(default)s)")


def load_tokenizer(spec: str) -> Tokenizer:
    """Only the tokenizer of ``spec`` (a GGUF's metadata is read, never its weights)."""
    from llmkit.data.tokenizer_spec import resolve_tokenizer

    return resolve_tokenizer(spec)


def cmd_train(a: argparse.Namespace) -> None:
    from llmkit.tokenizer.api import train_tokenizer

    r = train_tokenizer(a.data, a.vocab_size, a.out, pattern=a.pattern,
                        special_tokens=("<|endoftext|>",) if a.special is None else a.special,
                        field=a.field, include=a.include or (), max_bytes=a.max_bytes,
                        workers=a.workers, progress=not a.quiet)
    source = ", ".join(a.data) if a.data else "the Python standard library"
    print(f"trained on      {r.train_bytes / 1e6:.2f} MB of {source} in {r.seconds:.1f} s")
    short = f" — the corpus ran out of pairs before {a.vocab_size}" if r.vocab_size < a.vocab_size else ""
    n_special = len(r.tokenizer.special_tokens)
    print(f"vocab size      {r.vocab_size} ({r.n_merges} merges + 256 bytes + {n_special} special){short}")
    print(f"compression     {r.bytes_per_token:.2f} bytes/token on {r.eval_bytes / 1e6:.2f} MB of {r.eval_on} text")
    for f in r.files:
        print(f"wrote           {f}")


def cmd_encode(a: argparse.Namespace) -> None:
    tok = load_tokenizer(a.tokenizer)
    text = sys.stdin.read() if a.text == "-" else a.text
    # From a shell, special-token strings are plain text unless asked for.
    ids = tok.encode(text, allowed_special="all", disallowed_special=()) if a.allow_special else \
        tok.encode(text, disallowed_special=())
    if a.json:
        pieces = [tok.token_bytes(i).decode("utf-8", "backslashreplace") for i in ids]  # partial UTF-8 shows as \xNN
        print(json.dumps({"ids": ids, "tokens": pieces, "count": len(ids)}, ensure_ascii=False))
    else:
        print(" ".join(map(str, ids)))


def cmd_decode(a: argparse.Namespace) -> None:
    from llmkit.tokenizer.api import parse_ids

    sys.stdout.write(load_tokenizer(a.tokenizer).decode(parse_ids(a.ids)) + "\n")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tokenizer", help="train, encode and decode byte-level BPE tokenizers",
                       description="Train a byte-level BPE tokenizer, or encode/decode text with one.")
    actions = p.add_subparsers(dest="tokenizer_action", metavar="ACTION", required=True)

    t = actions.add_parser("train", help="train a BPE tokenizer on text files, directories or JSONL",
                           description="Train byte-level BPE. With no --data, trains on the Python standard library.")
    t.add_argument("--data", action="append", default=[], metavar="PATH",
                   help="text file, directory (recursive) or .jsonl file; repeatable (default: the stdlib)")
    t.add_argument("--vocab-size", type=int, required=True,
                   help="tokens in the vocab: 256 bytes + merges + special tokens")
    t.add_argument("--out", required=True,
                   help="directory for tokenizer.json, tokenizer_config.json, tokenizer.tiktoken")
    t.add_argument("--pattern", default="gpt4",
                   help="pre-split regex: gpt4 (cl100k), gpt2, llama3, or a regex (default %(default)s)")
    t.add_argument("--special", action="append", default=None, metavar="TOKEN",
                   help="special token, repeatable; ids follow the merges (default <|endoftext|>)")
    t.add_argument("--field", default="text", help="JSONL field holding the text (default %(default)s)")
    t.add_argument("--include", action="append", default=None, metavar="GLOB",
                   help="file globs to read in directories, repeatable (default: common text and code suffixes)")
    t.add_argument("--max-bytes", type=int, default=None,
                   help="read at most this many bytes; 0 = all (default: 20 MB of the stdlib, all of --data)")
    t.add_argument("--workers", type=int, default=None, help="processes that split the text (default: CPU count)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=cmd_train)

    e = actions.add_parser("encode", help="print the token ids of TEXT", description="Encode TEXT into token ids.")
    e.add_argument("text", help="the text to encode; - reads stdin")
    e.add_argument("--tokenizer", "-t", default="smollm2", help=TOKENIZER_HELP)
    e.add_argument("--json", action="store_true", help="print {ids, tokens, count} as JSON")
    e.add_argument("--allow-special", action="store_true",
                   help="encode special-token strings as their ids (default: as plain text)")
    e.set_defaults(func=cmd_encode)

    d = actions.add_parser("decode", help="print the text of token IDS", description="Decode token ids into text.")
    d.add_argument("ids", nargs="+", help="token ids: 15496 995, 15496,995 or [15496, 995]")
    d.add_argument("--tokenizer", "-t", default="smollm2", help=TOKENIZER_HELP)
    d.set_defaults(func=cmd_decode)
