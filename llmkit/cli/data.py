"""`llmkit data ...`: the data pipeline verbs. Handlers only parse, call and print.

    llmkit data prepare --out data/stdlib                     # the embedded stdlib corpus, SmolLM2 vocab
    llmkit data prepare --input notes/ --include '*.md' --tokenizer gpt2 --out data/notes
    llmkit data prepare --input corpus.jsonl --field content --out data/corpus
    llmkit data synth data/synth.jsonl --method self-instruct -n 200   # instruction data from SmolLM2
    llmkit data synth data/evolved.jsonl --method evol --seeds data/synth.jsonl -n 100
"""

from __future__ import annotations

import argparse

from llmkit.data.prepare import DEFAULT_SHARD_TOKENS, DEFAULT_VAL_FRACTION, prepare_data


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="prepare tokenized pretraining data; synthesize instruction data",
                       description="Data pipeline: turn text into token shards for pretraining, or generate "
                                   "instruction data with a model.")
    p.set_defaults(func=lambda a: p.print_help())
    dsub = p.add_subparsers(dest="data_verb", metavar="SUBVERB")

    q = dsub.add_parser("prepare", help="tokenize text files, directories, JSONL or parquet into train/val shards",
                        description="Tokenize a corpus into uint16/uint32 token shards plus index.json, with a "
                                    "hash-based train/val split and BOS/EOS document boundaries. With no --input, "
                                    "the Python standard library on this machine is the corpus.")
    q.add_argument("--input", "-i", action="append", default=[], metavar="PATH",
                   help="text file, directory (recursive), .jsonl[.gz] or .parquet; repeatable "
                        "(default: the stdlib corpus)")
    q.add_argument("--out", "-o", required=True,
                   help="output directory (created atomically; an old data dir there is replaced)")
    q.add_argument("--tokenizer", "-t", default="smollm2",
                   help="packaged name (smollm2, gpt2), .gguf, .tiktoken, or a dir with tokenizer.json "
                        "(default %(default)s)")
    q.add_argument("--field", default="text",
                   help="JSONL field / parquet column holding the text (default %(default)s)")
    q.add_argument("--include", action="append", default=None, metavar="GLOB",
                   help="in directories, read only files matching GLOB (e.g. '*.md'); repeatable")
    q.add_argument("--exclude", action="append", default=None, metavar="GLOB",
                   help="in directories, skip files and directories matching GLOB (e.g. 'build'); repeatable")
    q.add_argument("--errors", choices=["strict", "skip"], default="strict",
                   help="non-UTF-8 files: stop with an error (strict) or skip and count them (default %(default)s)")
    q.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION,
                   help="fraction of documents held out for validation (default %(default)s)")
    q.add_argument("--max-bytes", type=int, default=None, help="stop after this many bytes of text (default: all)")
    q.add_argument("--shard-tokens", type=int, default=DEFAULT_SHARD_TOKENS,
                   help="token ids per shard file (default %(default)s)")
    q.add_argument("--threads", type=int, default=1, help="tokenizer threads (default %(default)s)")
    q.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    q.set_defaults(func=cmd_prepare)
    _register_synth(dsub)


def _register_synth(dsub) -> None:
    from llmkit.train.synth import SynthConfig

    d = SynthConfig()
    q = dsub.add_parser(
        "synth", help="generate instruction data with a model (self-instruct or Evol-Instruct), filtered",
        description="Write instruction/answer pairs as OpenAI 'messages' JSONL that `llmkit finetune sft` reads. "
                    "self-instruct grows new tasks from seed tasks; evol rewrites tasks into harder or rarer ones. "
                    "Every task passes length, text-only, English and MinHash near-duplicate filters, and every "
                    "answer must be complete and not a refusal. The file is rewritten atomically after each batch; "
                    "a re-run continues until it holds -n records.")
    q.add_argument("out", help="output JSONL (existing records are kept and count towards -n)")
    q.add_argument("--method", default=d.method, choices=["self-instruct", "evol"], help="(default %(default)s)")
    q.add_argument("-n", type=int, default=d.n, help="records wanted in the file (default %(default)s)")
    q.add_argument("--model", "-m", default=d.model, help="generator: packaged name or checkpoint (default %(default)s)")
    q.add_argument("--seeds", default=None,
                   help="seed tasks: conversation JSONL (messages, ShareGPT or Alpaca); default: 24 packaged seeds")
    q.add_argument("--batch", type=int, default=d.batch, help="tasks written per round (default %(default)s)")
    q.add_argument("--shots", type=int, default=d.shots, help="self-instruct: example tasks per prompt (default %(default)s)")
    q.add_argument("--temperature", type=float, default=d.temperature,
                   help="sampling temperature for writing tasks; answers are greedy (default %(default)s)")
    q.add_argument("--task-tokens", type=int, default=d.task_tokens, help="max tokens per task (default %(default)s)")
    q.add_argument("--answer-tokens", type=int, default=d.answer_tokens,
                   help="max tokens per answer; a longer answer is dropped as cut off (default %(default)s)")
    q.add_argument("--dedup", type=float, default=d.dedup,
                   help="MinHash Jaccard at which a task counts as a near-duplicate (default %(default)s)")
    q.add_argument("--any-language", action="store_true", help="skip the English heuristic")
    q.add_argument("--seed", type=int, default=d.seed, help="random seed (default %(default)s)")
    q.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    q.set_defaults(func=cmd_synth)


def cmd_synth(a: argparse.Namespace) -> None:
    from llmkit.train.synth import SynthConfig, synth

    cfg = SynthConfig(method=a.method, n=a.n, model=a.model, seeds=a.seeds, batch=a.batch, shots=a.shots,
                      temperature=a.temperature, task_tokens=a.task_tokens, answer_tokens=a.answer_tokens,
                      dedup=a.dedup, english=not a.any_language, seed=a.seed)
    rep = synth(a.out, cfg, progress=not a.no_progress)
    print(f"wrote {rep.path}: {rep.kept} records ({rep.added} new) in {rep.rounds} rounds")
    if rep.rejected:
        print("  rejected: " + ", ".join(f"{k} {v}" for k, v in rep.rejected.most_common()))
    if rep.kept < a.n:
        print(f"  stopped short of {a.n}: the model wrote too few usable tasks; run again to continue")


def cmd_prepare(a: argparse.Namespace) -> None:
    res = prepare_data(a.input, a.out, tokenizer=a.tokenizer, field=a.field, include=a.include,
                       exclude=a.exclude, errors=a.errors, val_fraction=a.val_fraction, max_bytes=a.max_bytes,
                       shard_tokens=a.shard_tokens, num_threads=a.threads, progress=not a.no_progress)
    total = res["totals"]
    mb = total["bytes"] / 1e6
    print(f"wrote {res['out']}")
    print(f"  {total['docs']:,} documents, {mb:.1f} MB of text in {res['seconds']:.1f} s "
          f"({mb / max(res['seconds'], 1e-9):.2f} MB/s)")
    for name, split in res["splits"].items():
        bpt = split["bytes"] / split["tokens"] if split["tokens"] else float("nan")
        print(f"  {name:>5}: {split['docs']:,} docs, {split['tokens']:,} tokens in {len(split['shards'])} shard(s), "
              f"{bpt:.2f} bytes/token")
    print(f"  dtype {res['dtype']}, vocab {res['vocab_size']:,}, boundary ids {res['boundary']}")
    skipped = {k: v for k, v in res["skipped"].items() if v}
    if skipped:
        print(f"  skipped files: {skipped}")
