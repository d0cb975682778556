"""Lineage from meta.json, and the `llmkit merge` / `llmkit lineage` verbs as a user meets them."""

from __future__ import annotations

import json

import yaml

from llmkit.merge import merge_models
from llmkit.merge.lineage import lineage, plot_lineage, to_mermaid
from tests.test_cli import assert_one_line_error, run


def test_lineage_follows_merges_and_finetunes(parents, tmp_path):
    soup = merge_models({"merge_method": "linear", "name": "soup",
                         "models": [{"model": str(parents["a"]), "parameters": {"weight": 1}},
                                    {"model": str(parents["b"]), "parameters": {"weight": 1}}]}, tmp_path / "soup").path
    final = merge_models({"merge_method": "slerp", "name": "final", "base_model": str(parents["base"]),
                          "models": [{"model": str(parents["base"])}, {"model": str(soup)}],
                          "parameters": {"t": 0.3}}, tmp_path / "final").path
    tree = lineage(final)
    names = sorted(n.name for n in tree.nodes.values())
    assert names == ["a", "b", "base", "final", "soup"]
    by_name = {n.name: k for k, n in tree.nodes.items()}
    edges = {(tree.nodes[e.parent].name, tree.nodes[e.child].name): e.label for e in tree.edges}
    assert edges[("soup", "final")].startswith("slerp")
    assert edges[("base", "final")].startswith("slerp (base")
    assert edges[("a", "soup")] == "linear (weight=1)"
    assert edges[("base", "a")] == "finetune" and edges[("base", "b")] == "finetune"
    assert tree.depth()[by_name["base"]] == 3  # base -> a -> soup -> final: the longest path sets the row
    text = to_mermaid(tree)
    assert text.startswith("graph TD") and text.count("-->") == len(tree.edges) == 6
    png = plot_lineage(tree, tmp_path / "tree.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_merge_and_lineage(parents, tmp_path):
    cfg = tmp_path / "merge.yaml"
    cfg.write_text(yaml.safe_dump({"merge_method": "ties", "base_model": "base",
                                   "models": [{"model": "a", "parameters": {"weight": 0.5, "density": 0.5}},
                                              {"model": "b", "parameters": {"weight": 0.5, "density": 0.5}}]}))
    for name in ("base", "a", "b"):  # relative model paths resolve against the config's directory
        (tmp_path / name).symlink_to(parents[name])
    out = tmp_path / "merged"
    proc = run("merge", str(cfg), "--out", str(out), "--no-progress", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "with ties" in proc.stdout and "wrote" in proc.stdout
    meta = json.loads((out / "meta.json").read_text())
    assert meta["lineage"]["method"] == "ties" and meta["lineage"]["parents"][0]["role"] == "base"
    proc = run("lineage", str(out), "--png", str(tmp_path / "t.png"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("graph TD") and "ties" in proc.stdout
    assert (tmp_path / "t.png").is_file()


def test_cli_one_line_errors(parents, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("merge_method: frankenstein\nmodels:\n  - model: x\n")
    assert_one_line_error(run("merge", str(cfg), "--out", str(tmp_path / "o")), "frankenstein", "slerp")
    cfg.write_text("merge_method: linear\nmodels: [\n")
    assert_one_line_error(run("merge", str(cfg), "--out", str(tmp_path / "o")), "not valid YAML")
    assert_one_line_error(run("merge", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "o")), "not found")
    assert not (tmp_path / "o").exists()
