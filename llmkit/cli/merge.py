"""`llmkit merge` and `llmkit lineage`: argument parsing and printing; the work is llmkit.merge."""

from __future__ import annotations

import argparse


def cmd_merge(a: argparse.Namespace) -> None:
    from llmkit.merge.run import merge_models

    res = merge_models(a.config, a.out, progress=not a.no_progress)
    names = ", ".join(p["name"] for p in res.parents)
    print(f"merged {names} with {res.method}: {res.n_tensors} tensors, {res.n_layer} layers "
          f"in {res.seconds:.1f} s")
    print(f"wrote {res.path}")


def cmd_lineage(a: argparse.Namespace) -> None:
    from llmkit.merge.lineage import lineage, plot_lineage, to_mermaid

    tree = lineage(a.model)
    text = to_mermaid(tree)
    if a.mermaid:
        from llmkit.core.fileio import atomic_write_file

        atomic_write_file(a.mermaid, text)
        print(f"wrote {a.mermaid}")
    else:
        print(text, end="")
    if a.png:
        print(f"wrote {plot_lineage(tree, a.png)}")


def register(sub) -> None:
    p = sub.add_parser("merge", help="merge models from a mergekit-style YAML config (linear, slerp, ties, dare, ...)",
                       description="Merge the models a YAML config names (mergekit's format: models or slices, "
                                   "merge_method, base_model, parameters, dtype) into an llmkit checkpoint. "
                                   "A config with 'experts:' assembles a mixture of experts.")
    p.add_argument("config", help="YAML merge config (see docs/merging.md)")
    p.add_argument("--out", "-o", required=True, help="output checkpoint directory (written atomically)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("lineage", help="a model's family tree from meta.json, as mermaid text or a PNG",
                       description="Follow meta.json parents from MODEL and draw the family tree.")
    p.add_argument("model", help="llmkit checkpoint (or any model spec) whose ancestry to draw")
    p.add_argument("--png", default=None, help="also draw the tree into this PNG file")
    p.add_argument("--mermaid", default=None, help="write the mermaid text to this file instead of stdout")
    p.set_defaults(func=cmd_lineage)
