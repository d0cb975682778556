"""`llmkit` command line: a map from verbs to typed functions, plus printing.

Every LLMKitError becomes one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys

from llmkit.core.errors import LLMKitError

VERBS = ("chat", "generate", "convert", "info")
# Verb groups that live in their own cli module: each exposes register(sub) and adds its verbs
# with set_defaults(func=...). Keep EXTRA_VERBS in sync (a test checks parser == VERBS + EXTRA_VERBS).
EXTRA_MODULES: tuple[str, ...] = (
    "llmkit.cli.tokenizer",
    "llmkit.cli.data",
    "llmkit.cli.train",
    "llmkit.cli.eval",
    "llmkit.cli.serve",
    "llmkit.cli.quantize",
    "llmkit.cli.merge",
    "llmkit.cli.rag",
    "llmkit.cli.finetune",
    "llmkit.cli.redteam",
    "llmkit.cli.agent",
)
EXTRA_VERBS: tuple[str, ...] = (
    "tokenizer",
    "data",
    "pretrain",
    "quickstart",
    "plan",
    "eval",
    "serve",
    "quantize",
    "merge",
    "lineage",
    "rag",
    "finetune",
    "lora",
    "redteam",
    "agent",
)


def _sampling_args(p: argparse.ArgumentParser, max_tokens: int = 256) -> None:
    g = p.add_argument_group("sampling")
    g.add_argument("--max-tokens", type=int, default=max_tokens, help="most tokens to generate (default %(default)s)")
    g.add_argument("--temperature", type=float, default=0.7,
                   help="randomness; 0 = greedy, deterministic (default %(default)s)")
    g.add_argument("--top-k", type=int, default=0, help="sample only from the k most likely tokens; 0 = off")
    g.add_argument("--top-p", type=float, default=0.9, help="nucleus: smallest set with this much probability (default %(default)s)")
    g.add_argument("--min-p", type=float, default=0.0, help="drop tokens below min_p × the top probability; 0 = off")
    g.add_argument("--repetition-penalty", type=float, default=1.0, help="CTRL-style penalty on seen tokens; 1 = off")
    g.add_argument("--presence-penalty", type=float, default=0.0, help="OpenAI presence penalty in [-2, 2]")
    g.add_argument("--frequency-penalty", type=float, default=0.0, help="OpenAI frequency penalty in [-2, 2]")
    g.add_argument("--seed", type=int, default=None, help="seed for reproducible sampling")
    g.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", default="smollm2",
                   help="packaged name (smollm2), .gguf file, llmkit checkpoint or HF directory (default %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default %(default)s)")
    p.add_argument("--dtype", default="auto", help="auto (fp32 on CPU, bf16 on GPU), float32, bfloat16, float16")
    weights_arg(p)


def weights_arg(p: argparse.ArgumentParser, default: str = "auto") -> None:
    p.add_argument("--weights", default=default, choices=["auto", "packed", "float"],
                   help="how a quantized GGUF runs: packed (its Q4/Q8 blocks through the quantized kernels, several "
                        "times faster at batch 1 on a CPU), float (expanded to float32 once: exact, for parity checks), or "
                        "auto: packed on a CPU in float32, float elsewhere (default %(default)s)")


def _params(a: argparse.Namespace):
    from llmkit.generate.sampling import SamplingParams

    return SamplingParams(max_tokens=a.max_tokens, temperature=a.temperature, top_k=a.top_k, top_p=a.top_p,
                          min_p=a.min_p, repetition_penalty=a.repetition_penalty,
                          presence_penalty=a.presence_penalty, frequency_penalty=a.frequency_penalty,
                          seed=a.seed, stop=a.stop)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmkit", description="The whole LLM lifecycle, offline, on your CPU.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")

    p = sub.add_parser("chat", help="interactive chat with streaming output",
                       description="Chat with a model. Commands inside: /reset, /system TEXT, /help, /exit.")
    _model_args(p)
    p.add_argument("--system", default=None, help="system prompt")
    p.add_argument("--template", default=None, help="override the chat template: chatml, llama3 or alpaca")
    _sampling_args(p, max_tokens=512)

    p = sub.add_parser("generate", help="one-shot generation for a prompt",
                       description="Generate a continuation of PROMPT, or a chat reply with --chat.")
    p.add_argument("prompt", help="the prompt text")
    _model_args(p)
    p.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    p.add_argument("--system", default=None, help="system prompt (with --chat)")
    p.add_argument("--template", default=None, help="override the chat template: chatml, llama3 or alpaca")
    p.add_argument("--num-beams", type=int, default=1, help="beam search width; 1 = sampling/greedy")
    p.add_argument("--json", action="store_true", help="print a JSON object instead of streaming text")
    _sampling_args(p)

    p = sub.add_parser("convert", help="convert between GGUF, llmkit checkpoints and HF directories",
                       description="Convert SRC (GGUF file, llmkit checkpoint, HF directory or packaged name) into DST.")
    p.add_argument("src", help="source model")
    p.add_argument("dst", help="destination directory")
    p.add_argument("--to", default="llmkit", choices=["llmkit", "hf", "gguf"],
                   help="output format: llmkit checkpoint, Hugging Face directory, or a GGUF file (default %(default)s)")
    p.add_argument("--outtype", default="f16", choices=["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1"],
                   help="GGUF weight type (with --to gguf; default %(default)s)")
    p.add_argument("--dtype", default="float32", help="dtype the model is loaded in before writing (default %(default)s)")

    p = sub.add_parser("info", help="architecture, parameters, dtype, context, template, size",
                       description="Describe a model.")
    p.add_argument("model", nargs="?", default="smollm2", help="model to describe (default %(default)s)")
    p.add_argument("--preset", default=None,
                   help="describe an architecture preset instead (no weights), e.g. gpt2, smollm2-135m, tiny-llama")
    p.add_argument("--json", action="store_true", help="print JSON")
    for name in EXTRA_MODULES:
        import importlib

        importlib.import_module(name).register(sub)
    return parser


def cmd_chat(a) -> None:
    from llmkit.formats.loader import keep_quantized_for, load_model
    from llmkit.generate.api import chat_template_for
    from llmkit.generate.chat import ChatSession, repl
    from llmkit.generate.engine import Engine

    lm = load_model(a.model, device=a.device, dtype=a.dtype, keep_quantized=keep_quantized_for(a.weights))
    session = ChatSession(Engine(lm.model, lm.tokenizer), chat_template_for(lm, a.template), _params(a), a.system)
    print(f"llmkit chat — {lm.name} ({lm.model.num_params() / 1e6:.0f}M params)", file=sys.stderr)
    repl(session)


def cmd_generate(a) -> None:
    from llmkit.formats.loader import keep_quantized_for, load_model
    from llmkit.generate.api import generate_text, prompt_ids
    from llmkit.generate.engine import Engine

    lm = load_model(a.model, device=a.device, dtype=a.dtype, keep_quantized=keep_quantized_for(a.weights))
    params = _params(a)
    if a.json or a.num_beams > 1:
        res = generate_text(a.prompt, lm, a.chat, a.system, a.template, a.num_beams, params)
        print(json.dumps(res.to_dict(), ensure_ascii=False) if a.json else res.text)
        return
    ids = prompt_ids(lm, a.prompt, a.chat, a.system, a.template)
    for delta in Engine(lm.model, lm.tokenizer).stream(ids, params):
        sys.stdout.write(delta.text)
        sys.stdout.flush()
    sys.stdout.write("\n")


def cmd_convert(a) -> None:
    from llmkit.formats.convert import convert

    out = convert(a.src, a.dst, to=a.to, dtype=a.dtype, outtype=a.outtype)
    print(f"wrote {out}")


def cmd_info(a) -> None:
    from llmkit.formats.convert import info, preset_info

    data = preset_info(a.preset) if a.preset else info(a.model)
    if a.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return
    for k, v in data.items():
        if k == "parameters":
            v = f"{v:,} ({v / 1e6:.1f}M)"
        elif k == "file_size_bytes":
            k, v = "file_size", f"{v / 1e6:.1f} MB"
        print(f"{k:>16}: {v}")


COMMANDS = {"chat": cmd_chat, "generate": cmd_generate, "convert": cmd_convert, "info": cmd_info}
assert set(COMMANDS) == set(VERBS)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    if not args.verb:
        parser.print_help()
        return 0
    try:
        handler = getattr(args, "func", None) or COMMANDS[args.verb]
        handler(args)
    except LLMKitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
