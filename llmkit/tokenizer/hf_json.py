"""HF ``tokenizer.json`` / ``tokenizer_config.json`` <-> Tokenizer constructor arguments.

Only the byte-level BPE family is accepted (BPE model, ByteLevel decoder,
ByteLevel/Digits/Split pre-tokenizers); anything else raises TokenizerError
naming the part that is not supported, instead of encoding differently.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmkit.core.fileio import atomic_write_file
from llmkit.core.errors import TokenizerError
from llmkit.tokenizer.pretokenize import from_hf, to_hf

if TYPE_CHECKING:
    from llmkit.tokenizer.bpe import Tokenizer

_UNSUPPORTED = "llmkit reads byte-level BPE tokenizers (GPT-2, SmolLM2, Llama-3, Qwen2 style) only"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TokenizerError(f"{str(path)!r} does not exist", "pass a directory or file saved by a tokenizer") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TokenizerError(f"{str(path)!r} is not valid JSON ({e})", "re-save or re-download the file") from None


def parse_tokenizer_json(path_or_dict: str | Path | dict) -> dict[str, Any]:
    """Tokenizer(...) keyword arguments for an HF tokenizer.json."""
    data = path_or_dict if isinstance(path_or_dict, dict) else _read_json(Path(path_or_dict))
    model = data.get("model") or {}
    kind = model.get("type", "BPE" if "merges" in model else None)
    if kind != "BPE":
        raise TokenizerError(f"tokenizer.json model type {kind!r} is not supported", _UNSUPPORTED)
    for key, ok in (("byte_fallback", (False, None)), ("continuing_subword_prefix", ("", None)),
                    ("end_of_word_suffix", ("", None)), ("dropout", (None, 0, 0.0))):
        if model.get(key) not in ok:
            raise TokenizerError(f"BPE option {key}={model.get(key)!r} is not supported", _UNSUPPORTED)
    decoder = (data.get("decoder") or {}).get("type")
    if decoder != "ByteLevel":
        raise TokenizerError(f"tokenizer.json decoder {decoder!r} is not supported (need 'ByteLevel')",
                             _UNSUPPORTED)
    normalizer = data.get("normalizer")
    norm_type = normalizer.get("type") if normalizer else None
    if norm_type not in (None, "NFC"):
        raise TokenizerError(f"normalizer {norm_type!r} is not supported", "only none or NFC is")

    vocab: dict[str, int] = model["vocab"]
    added = data.get("added_tokens") or []
    size = max([*vocab.values(), *(a["id"] for a in added), -1]) + 1
    tokens: list[str | None] = [None] * size
    for token, i in vocab.items():
        tokens[i] = token
    unk = model.get("unk_token")
    return {
        "tokens": tokens,
        "merges": [tuple(m) if isinstance(m, list) else m for m in model.get("merges", [])],
        "pre": list(from_hf(data.get("pre_tokenizer"))),
        # Every added token is matched whole in text by HF, special or not.
        "special_tokens": {a["content"]: a["id"] for a in added},
        "ignore_merges": bool(model.get("ignore_merges", False)),
        "normalizer": norm_type,
        "unk_id": vocab.get(unk) if unk else None,
    }


def _token_string(value: Any) -> str | None:
    """tokenizer_config stores tokens as strings or as AddedToken dicts."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def load_dir(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    if not directory.is_dir():
        raise TokenizerError(f"tokenizer directory {str(directory)!r} does not exist",
                             "pass a directory written by Tokenizer.save() or an HF model directory")
    kwargs = parse_tokenizer_json(directory / "tokenizer.json")
    config_path = directory / "tokenizer_config.json"
    config = _read_json(config_path) if config_path.is_file() else {}
    ids = {t: i for i, t in enumerate(kwargs["tokens"]) if t is not None}
    ids.update(kwargs["special_tokens"])
    for key in ("bos", "eos", "pad", "unk"):
        token = _token_string(config.get(f"{key}_token"))
        if token is not None:
            if token not in ids:
                raise TokenizerError(f"tokenizer_config.json {key}_token {token!r} is not in the vocab",
                                     f"fix {key}_token in {config_path}")
            kwargs[f"{key}_id"] = ids[token]
    template = config.get("chat_template")
    if isinstance(template, list):  # HF allows several named templates
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    jinja_file = directory / "chat_template.jinja"  # newer transformers save it beside the config
    if template is None and jinja_file.is_file():
        template = jinja_file.read_text(encoding="utf-8")
    kwargs["chat_template"] = template
    return kwargs


def to_tokenizer_json(tok: Tokenizer) -> dict[str, Any]:
    tokens = tok.tokens
    specials = tok.special_tokens
    vocab: dict[str, int] = {}
    for i, t in enumerate(tokens):
        if t is not None:
            vocab.setdefault(t, i)
    merges = [[tokens[a], tokens[b]] for a, b, _ in tok.merge_ids()]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True}
                         for s, i in sorted(specials.items(), key=lambda kv: kv[1])],
        "normalizer": {"type": "NFC"} if tok.normalizer == "NFC" else None,
        "pre_tokenizer": to_hf(tok.pre_name, tok.patterns),
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE", "dropout": None,
            # No unk: bytes without a token are dropped, which is what HF does without one.
            "unk_token": None, "continuing_subword_prefix": None, "end_of_word_suffix": None,
            "fuse_unk": False, "byte_fallback": False, "ignore_merges": tok.ignore_merges,
            "vocab": vocab, "merges": merges,
        },
    }


_atomic_write = atomic_write_file  # text or bytes, written next to the target then renamed


def save_dir(tok: Tokenizer, directory: str | Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False}
    for key in ("bos", "eos", "pad", "unk"):
        token_id = getattr(tok, f"{key}_id")
        if token_id is not None:
            config[f"{key}_token"] = tok.id_to_token(token_id)
    if tok.chat_template is not None:
        config["chat_template"] = tok.chat_template
    _atomic_write(directory / "tokenizer.json", json.dumps(to_tokenizer_json(tok), ensure_ascii=False))
    _atomic_write(directory / "tokenizer_config.json", json.dumps(config, ensure_ascii=False, indent=2))

