"""`llmkit quickstart`: the whole small-model lifecycle in about five minutes on a laptop CPU.

1. train a BPE tokenizer on the embedded corpus (the Python standard library);
2. tokenize the corpus into shards;
3. sample from the untrained model, pretrain it against a time budget, sample again;
4. report validation bits per byte;
5. ask the packaged SmolLM2-135M-Instruct to explain what just happened;
6. write runs/<name>/report.md with the numbers, the loss plot, the samples and
   the equivalent stand-alone commands.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from llmkit.train.config import TrainConfig

SAMPLE_PROMPTS = ["def ", "import os\n", "class Config:\n    "]
MODEL = {"n_layer": 4, "n_head": 4, "n_kv_head": 2, "d_model": 192, "max_seq_len": 256}


@dataclass
class QuickstartReport:
    run_dir: Path
    steps: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    numbers: dict[str, float | int | str] = field(default_factory=dict)
    samples_before: list[str] = field(default_factory=list)
    samples_after: list[str] = field(default_factory=list)
    answer: str = ""
    commands: list[str] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)  # {"task", "n", "metric", "value", "stderr", "chance"}


def _say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _samples(model, tokenizer, n_tokens: int = 40) -> list[str]:
    from llmkit.generate import Engine, SamplingParams

    engine = Engine(model.eval(), tokenizer, default_stop_ids=[])
    params = SamplingParams(max_tokens=n_tokens, temperature=0.8, top_k=50, seed=0)
    prompts = [tokenizer.encode(p) for p in SAMPLE_PROMPTS]
    return [p + c.text for p, c in zip(SAMPLE_PROMPTS, engine.generate(prompts, params))]


def _calibrate_steps(cfg: TrainConfig, train_seconds: float) -> int:
    """Time a few optimizer steps of this exact setup, then size max_steps to the budget."""
    from llmkit.data.loader import TokenLoader
    from llmkit.model import Transformer, preset
    from llmkit.train.losses import lm_loss
    from llmkit.train.optim import make_optimizer

    mcfg = preset(cfg.model).replace(**cfg.model_overrides)
    model = Transformer(mcfg)
    opt = make_optimizer(model, cfg.lr)
    it = iter(TokenLoader(cfg.data, "train", cfg.batch_size, cfg.seq_len, seed=cfg.seed))
    times = []
    for _ in range(4):
        x, y = next(it)
        t = time.perf_counter()
        lm_loss(model(x), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t)
    per_step = sorted(times[1:])[1]  # median of the warm steps
    evals = 6  # ~6 evals of eval_batches batches, each ~1/3 of a train step
    return max(20, int(train_seconds / (per_step * (1 + evals * cfg.eval_batches / 3 / 400))))


def quickstart(name: str = "quickstart", runs: str = "runs", train_seconds: float = 150.0,
               corpus_mb: float = 6.0, vocab_size: int = 4096, ask_smollm: bool = True,
               evaluate: Callable[[str], list[dict]] | None = None) -> QuickstartReport:
    """Run the whole pipeline and write ``runs/<name>/report.md``; returns the report data.

    ``evaluate(checkpoint) -> rows`` is the small benchmark eval; it lives in a higher
    layer (llmkit.eval), so the CLI passes it in.
    """
    from llmkit.data.prepare import prepare
    from llmkit.data.sources import StdlibSource, iter_documents
    from llmkit.model import Transformer, preset
    from llmkit.tokenizer.train import train_bpe
    from llmkit.train.loop import pretrain

    run = Path(runs) / name
    rep = QuickstartReport(run_dir=run)
    max_bytes = int(corpus_mb * 1e6)
    t_all = time.perf_counter()

    _say(f"1/5 training a {vocab_size}-token BPE tokenizer on {corpus_mb:g} MB of the Python standard library")
    t = time.perf_counter()
    tok = train_bpe(iter_documents([StdlibSource()], max_bytes=max_bytes), vocab_size, progress=True)
    tok.save(run / "tokenizer")
    rep.steps["tokenizer"] = time.perf_counter() - t
    rep.commands.append(f"llmkit tokenizer train --vocab-size {vocab_size} --max-bytes {max_bytes} --out {run}/tokenizer")

    _say("2/5 tokenizing the corpus into training shards")
    t = time.perf_counter()
    index = prepare([StdlibSource()], tok, run / "data", max_bytes=max_bytes, val_fraction=0.02)
    rep.steps["data"] = time.perf_counter() - t
    rep.numbers["train_tokens"] = index["splits"]["train"]["tokens"]
    rep.numbers["val_tokens"] = index["splits"]["val"]["tokens"]
    rep.commands.append(f"llmkit data prepare --tokenizer {run}/tokenizer --max-bytes {max_bytes} "
                        f"--val-fraction 0.02 --out {run}/data")

    cfg = TrainConfig(model="tiny-llama", model_overrides={**MODEL, "vocab_size": tok.vocab_size},
                      data=str(run / "data"), out_dir=str(run / "model"), batch_size=16, seq_len=128,
                      lr=3e-3, min_lr=3e-4, warmup=30, beta2=0.99, eval_batches=8, resume=False)
    import shutil

    shutil.rmtree(run / "model", ignore_errors=True)  # a re-run of the quickstart starts its model afresh
    steps = _calibrate_steps(cfg, train_seconds)
    cfg = TrainConfig(**{**cfg.to_dict(), "max_steps": steps, "warmup": min(30, steps // 10),
                         "eval_every": max(steps // 6, 1), "ckpt_every": steps})
    untrained = Transformer(preset(cfg.model).replace(**cfg.model_overrides)).init_weights(seed=cfg.seed)
    rep.numbers["parameters"] = untrained.num_params()
    _say(f"3/5 pretraining a {untrained.num_params() / 1e6:.1f}M-parameter model for {steps} steps "
         f"(~{train_seconds:.0f} s budget)")
    rep.samples_before = _samples(untrained, tok)
    print("before training:", repr(rep.samples_before[0]))
    t = time.perf_counter()
    res = pretrain(cfg)
    rep.steps["pretrain"] = time.perf_counter() - t
    from llmkit.formats.loader import load_model

    trained = load_model(res.checkpoint, device="cpu")
    rep.samples_after = _samples(trained.model, trained.tokenizer)
    print("after training: ", repr(rep.samples_after[0]))
    rep.numbers.update(steps=res.step, final_train_loss=round(res.loss or math.nan, 4),
                       val_loss=round(res.val_loss or math.nan, 4), val_bits_per_byte=round(res.val_bpb or math.nan, 4),
                       tokens_seen=res.tokens, checkpoint=str(res.checkpoint))
    rep.commands.append(f"llmkit pretrain --config tiny --data {run}/data --out-dir {run}/model "
                        f"--max-steps {steps} --batch-size 16 --seq-len 128 --lr 3e-3 "
                        + " ".join(f"--model.{k} {v}" for k, v in MODEL.items()))
    rep.commands.append(f"llmkit generate --model {res.checkpoint} --temperature 0.8 \"def \"")

    val = index["splits"]["val"]
    uniform_bpb = math.log2(tok.vocab_size) * val["tokens"] / val["bytes"]  # guessing uniformly over the vocab
    _say(f"4/5 validation: {res.val_loss:.3f} nats/token = {res.val_bpb:.3f} bits per byte "
         f"(uniform guessing over the vocabulary: {uniform_bpb:.2f})")
    if evaluate is not None:
        t = time.perf_counter()
        rep.evals = evaluate(str(res.checkpoint))
        rep.steps["eval"] = time.perf_counter() - t
        for row in rep.evals:
            _say(f"   eval {row['task']}: {row['metric']} {row['value']:.3f} ± {row['stderr']:.3f} "
                 f"(chance {row['chance']:.3f}, {row['n']} items)")
        rep.commands.append(f"llmkit eval --model {res.checkpoint} --tasks "
                            + ",".join(r["task"] for r in rep.evals) + f" --limit {rep.evals[0]['n'] if rep.evals else 50}")
    if ask_smollm:
        _say("5/5 asking SmolLM2-135M-Instruct (the packaged chat model) what we just did")
        t = time.perf_counter()
        question, rep.answer = _ask_smollm(rep)
        rep.steps["smollm2"] = time.perf_counter() - t
        rep.commands.append(f'llmkit generate --chat --temperature 0 "{question}"')
    rep.steps["total"] = time.perf_counter() - t_all
    write_report(rep)
    _say(f"done in {rep.steps['total']:.0f} s — report card: {run / 'report.md'}")
    if rep.answer:
        print(f"\nSmolLM2: {rep.answer}")
    return rep


def _ask_smollm(rep: QuickstartReport) -> tuple[str, str]:
    from llmkit.generate import SamplingParams
    from llmkit.generate.api import generate_text

    n = rep.numbers
    question = (f"I trained a small language model with {n['parameters'] / 1e6:.1f} million parameters on Python "
                f"source code for {n['steps']} steps ({n['tokens_seen']:,} tokens). Its validation loss is "
                f"{n['val_bits_per_byte']} bits per byte. In two sentences, explain what I did and what the "
                f"bits-per-byte number means.")
    answer = generate_text(question, chat=True, params=SamplingParams(temperature=0, max_tokens=96)).text.strip()
    return question, answer


def write_report(rep: QuickstartReport) -> Path:
    from llmkit.core.fileio import atomic_write_file

    n = rep.numbers
    lines = [f"# llmkit quickstart report — {rep.run_dir.name}", "",
             "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in rep.steps.items()]
    lines += ["", "| number | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in n.items()]
    lines += ["", "![loss curve](model/loss.png)", ""]
    if rep.evals:
        lines += ["## Small benchmark eval", "",
                  "A few-million-parameter model trained for minutes on code is expected near chance here; "
                  "the point is reading a model the way `llmkit eval` reads any model "
                  "(SmolLM2's full numbers are in docs/benchmarks.md).", "",
                  "| task | n | metric | value | chance |", "|---|---|---|---|---|"]
        lines += [f"| {r['task']} | {r['n']} | {r['metric']} | {r['value']:.3f} ± {r['stderr']:.3f} | {r['chance']:.3f} |"
                  for r in rep.evals]
        lines += [""]
    lines += ["## Samples before training", ""]
    lines += [f"```\n{s}\n```" for s in rep.samples_before]
    lines += ["", "## Samples after training", ""] + [f"```\n{s}\n```" for s in rep.samples_after]
    if rep.answer:
        lines += ["", "## SmolLM2-135M-Instruct on what we did", "", f"> {rep.answer}"]
    lines += ["", "## Run each step yourself", "", "```bash"] + rep.commands + ["```", ""]
    path = rep.run_dir / "report.md"
    atomic_write_file(path, "\n".join(lines))
    return path
