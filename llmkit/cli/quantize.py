"""`llmkit quantize`: argument parsing and printing; the work is llmkit.quantize.api (+ llmkit.eval for --report)."""

from __future__ import annotations

import argparse
from pathlib import Path

CALIB_BYTES = 1 << 20  # default calibration / held-out text: about 1 MB each of the stdlib corpus


def corpus_texts(calib: str | None, max_bytes: int = CALIB_BYTES) -> tuple[str, str]:
    """(calibration text, held-out text): from --calib PATH, or alternating documents of the stdlib corpus.

    With --calib, the held-out text still comes from the stdlib so --report
    never scores the text the model was calibrated on.
    """
    from llmkit.data.sources import StdlibSource, iter_documents, source_for

    docs = iter_documents([StdlibSource(max_bytes=4 * max_bytes)])
    calib_docs, held = [], []
    for i, d in enumerate(docs):
        (calib_docs if i % 2 == 0 else held).append(d)
    held_text = "\n\n".join(held)[:max_bytes]
    if calib:
        return "\n\n".join(iter_documents([source_for(calib)])), held_text
    return "\n\n".join(calib_docs)[:max_bytes], held_text


def cmd_quantize(a: argparse.Namespace) -> None:
    from llmkit.quantize.api import quantize

    calib_text, held_text = corpus_texts(a.calib) if a.method in ("gptq", "awq") or a.report else (None, "")
    out = quantize(a.model, a.method, a.bits, a.group_size, a.symmetric, calib_text, a.calib_samples,
                   a.calib_len, not a.no_act_order, a.out)
    print(f"wrote {out}")
    if a.report:
        from llmkit.eval.quant_report import compare, markdown, write_report
        from llmkit.formats.loader import load_model

        lms = {"fp32": load_model(a.model, device="cpu", dtype="float32"), a.method: load_model(out, device="cpu")}
        tasks = [t for t in a.report_tasks.split(",") if t]
        rows = compare(lms, held_text, tasks, a.report_limit)
        print(markdown(rows), end="")
        md, png = write_report(rows, Path(out))
        print(f"wrote {md}, {png}")


def register(sub) -> None:
    p = sub.add_parser("quantize", help="quantize a model (int8, int4, NF4, GPTQ, AWQ) into a runnable checkpoint",
                       description="Quantize MODEL's linear layers and write an llmkit checkpoint that "
                                   "load_model / `llmkit generate -m DIR` run directly.")
    p.add_argument("model", nargs="?", default="smollm2", help="model to quantize (default %(default)s)")
    p.add_argument("--method", default="int8", choices=["int8", "int8-zp", "int4", "nf4", "gptq", "awq"],
                   help="int8: per-channel absmax; int8-zp: per-channel zero-point; int4: group-wise "
                        "round-to-nearest; nf4: QLoRA NF4; gptq / awq: calibrated 4-bit (default %(default)s)")
    p.add_argument("--bits", type=int, default=4, help="bits for int4/gptq/awq: 2, 3 or 4 (default %(default)s)")
    p.add_argument("--group-size", type=int, default=32,
                   help="inputs sharing one scale (multiple of 32 dividing every layer; default %(default)s)")
    p.add_argument("--symmetric", action="store_true", help="symmetric grid (no zero point) for int4/gptq/awq")
    p.add_argument("--calib", default=None, help="calibration text file or directory (default: the stdlib corpus)")
    p.add_argument("--calib-samples", type=int, default=32, help="calibration windows (default %(default)s)")
    p.add_argument("--calib-len", type=int, default=256, help="tokens per calibration window (default %(default)s)")
    p.add_argument("--no-act-order", action="store_true", help="GPTQ: quantize columns in their natural order")
    p.add_argument("--out", required=True, help="output checkpoint directory")
    p.add_argument("--report", action="store_true",
                   help="compare with fp32: held-out perplexity, accuracy, size, tok/s (report.md + report.png)")
    p.add_argument("--report-tasks", default="", help="comma-separated eval tasks for --report (e.g. arc_easy)")
    p.add_argument("--report-limit", type=int, default=50, help="items per report task (default %(default)s)")
    p.set_defaults(func=cmd_quantize)
