"""A model's family tree, read from meta.json files, drawn as mermaid text or a PNG.

    tree = lineage("runs/merged")
    print(to_mermaid(tree))        # paste into any markdown that renders mermaid
    plot_lineage(tree, "tree.png")

A merge records every parent (path, name, sha256, role, parameters) under
``meta["lineage"]``; other stages record one ``meta["parent"]``. Parents that
are themselves llmkit checkpoints are followed, so fine-tune → merge → merge
chains draw as one graph.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmkit.core import checkpoint as ckpt
from llmkit.core.errors import LLMKitError
from llmkit.formats.loader import resolve

MAX_DEPTH = 32


@dataclass
class Node:
    key: str  # resolved path (or the parent string when it is not on disk)
    name: str
    stage: str | None = None
    sha256: str | None = None


@dataclass
class Edge:
    parent: str
    child: str
    label: str  # the method or stage, with the parent's weight/role when it has one


@dataclass
class Lineage:
    root: str
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)

    def depth(self) -> dict[str, int]:
        """Generations above the root: the root is 0, its parents 1, ... (longest path)."""
        d = {self.root: 0}
        changed = True
        while changed:
            changed = False
            for e in self.edges:
                if e.child in d and d.get(e.parent, -1) < d[e.child] + 1 <= MAX_DEPTH:
                    d[e.parent] = d[e.child] + 1
                    changed = True
        return d


def _read_meta(path: Path) -> dict[str, Any] | None:
    if path.is_dir() and (path / ckpt.META).is_file():
        try:
            return ckpt.read_json(path / ckpt.META)
        except LLMKitError:  # a damaged parent is drawn as a leaf, not an error
            return None
    return None


def _edge_label(method: str, entry: dict[str, Any]) -> str:
    params = entry.get("parameters") or {}
    bits = [f"{k}={v}" for k, v in params.items() if isinstance(v, (int, float, str, bool))]
    if entry.get("role") == "base":
        bits.insert(0, "base")
    return method + (f" ({', '.join(bits)})" if bits else "")


def lineage(model: str | os.PathLike) -> Lineage:
    """Walk meta.json parents from ``model`` (any spec the loader accepts) up to the roots."""
    path, _ = resolve(model)
    root = str(path.resolve())
    tree = Lineage(root)
    todo = [(path.resolve(), 0)]
    while todo:
        p, depth = todo.pop()
        key = str(p)
        if key in tree.nodes and tree.nodes[key].stage is not None:
            continue
        meta = _read_meta(p) or {}
        tree.nodes[key] = Node(key, str(meta.get("name") or p.name), meta.get("stage") or "file", None)
        if depth >= MAX_DEPTH:
            continue
        lin = meta.get("lineage") or {}
        parents = lin.get("parents") or ([{"path": meta["parent"]}] if meta.get("parent") else [])
        for entry in parents:
            ppath = Path(str(entry.get("path") or entry.get("model")))
            pkey = str(ppath.resolve()) if ppath.exists() else str(ppath)
            if pkey not in tree.nodes:
                tree.nodes[pkey] = Node(pkey, str(entry.get("name") or ppath.name), None, entry.get("sha256"))
            elif entry.get("sha256"):
                tree.nodes[pkey].sha256 = entry["sha256"]
            tree.edges.append(Edge(pkey, key, _edge_label(lin.get("method") or meta.get("stage") or "parent", entry)))
            if ppath.exists():
                todo.append((ppath.resolve(), depth + 1))
    return tree


def _node_label(n: Node) -> str:
    extra = [n.stage] if n.stage and n.stage != "file" else []
    if n.sha256:
        extra.append(n.sha256[:8])
    return n.name + (f" ({', '.join(extra)})" if extra else "")


def to_mermaid(tree: Lineage) -> str:
    """Mermaid flowchart text, oldest ancestors at the top."""
    ids = {k: f"n{i}" for i, k in enumerate(tree.nodes)}
    esc = lambda s: s.replace('"', "'")  # noqa: E731 - mermaid labels are double-quoted
    lines = ["graph TD"]
    lines += [f'    {ids[k]}["{esc(_node_label(n))}"]' for k, n in tree.nodes.items()]
    lines += [f'    {ids[e.parent]} -->|"{esc(e.label)}"| {ids[e.child]}' for e in tree.edges]
    return "\n".join(lines) + "\n"


def plot_lineage(tree: Lineage, path: str | os.PathLike) -> Path:
    """Draw the tree as a PNG: one row per generation, arrows from parents to children."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from llmkit.core.fileio import atomic_write_file

    depth = tree.depth()
    rows: dict[int, list[str]] = {}
    for k in tree.nodes:
        rows.setdefault(depth.get(k, 0), []).append(k)
    top = max(rows)
    pos = {k: ((i + 1) / (len(ks) + 1), (d + 0.5) / (top + 1)) for d, ks in rows.items() for i, k in enumerate(ks)}
    fig, ax = plt.subplots(figsize=(max(6, 3 * max(len(v) for v in rows.values())), 1.6 * (top + 1) + 0.6))
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    for e in tree.edges:
        (x0, y0), (x1, y1) = pos[e.parent], pos[e.child]
        # an edge that skips a generation bends around the rows in between instead of crossing their boxes
        rad = 0.45 if depth.get(e.parent, 0) - depth.get(e.child, 0) > 1 else 0.0
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="->", color="0.4", shrinkA=18, shrinkB=18,
                                    connectionstyle=f"arc3,rad={rad}"))
        # label a third of the way down, so edges into one child keep their labels apart; on a bent
        # edge, follow the bend (the quadratic's point at that fraction, in data units: approximate)
        f = 0.5 if rad else 1 / 3
        (px0, py0), (px1, py1) = ax.transData.transform([(x0, y0), (x1, y1)])  # arc3 bends in pixels
        cx, cy = (px0 + px1) / 2 + rad * (py1 - py0), (py0 + py1) / 2 - rad * (px1 - px0)
        lx = (1 - f) ** 2 * px0 + 2 * f * (1 - f) * cx + f ** 2 * px1
        ly = (1 - f) ** 2 * py0 + 2 * f * (1 - f) * cy + f ** 2 * py1
        ax.text(*ax.transData.inverted().transform((lx, ly)), e.label, fontsize=7, ha="center", va="center", color="0.25",
                bbox=dict(boxstyle="round", fc="white", ec="none", alpha=0.8))
    for k, n in tree.nodes.items():
        x, y = pos[k]
        color = "#cfe3ff" if k == tree.root else "#eeeeee"
        ax.text(x, y, _node_label(n), ha="center", va="center", fontsize=9,
                bbox=dict(boxstyle="round,pad=0.4", fc=color, ec="0.3"))
    # y grows with depth: ancestors sit on top, the model itself at the bottom, arrows point down
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_file(path, buf.getvalue())
