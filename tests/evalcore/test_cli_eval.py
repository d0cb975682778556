"""`llmkit eval` from the command line: results files, generative + perplexity tasks, one-line errors."""

import json
from pathlib import Path

from llmkit.cli.main import main

README = Path(__file__).resolve().parents[2] / "README.md"


def test_cli_eval_generative_and_perplexity(tmp_path, capsys):
    rc = main(["eval", "--tasks", f"example_arithmetic,ppl:{README}", "--limit", "300", "--shots", "1",
               "--out", str(tmp_path), "--no-progress", "--samples"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "note: example_arithmetic: --limit 300 is more than its 8 items; using all 8" in out
    rep = json.loads((tmp_path / "results.json").read_text())
    assert rep["complete"] is True
    arith, ppl = rep["results"]
    assert arith["n"] == 8 and 0 <= arith["metrics"]["exact_match"] <= 1 and "exact_match" in arith["stderr"]
    assert ppl["n"] == 299 and ppl["metrics"]["perplexity"] > 1 and 0 < ppl["metrics"]["bits_per_byte"] < 8
    assert "| exact_match |" in (tmp_path / "results.md").read_text()
    rows = [json.loads(x) for x in (tmp_path / "samples" / "example_arithmetic.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all({"output", "answers", "metrics"} <= set(r) for r in rows)
    assert sum(r["metrics"]["exact_match"] for r in rows) / 8 == arith["metrics"]["exact_match"]
    assert "samples" not in arith


def test_cli_eval_bad_inputs_are_one_line(tmp_path, capsys):
    for argv, key in ((["--tasks", "nope"], "unknown task 'nope'"),
                      (["--tasks", "ppl:/no/such/file.txt"], "does not exist"),
                      (["--tasks", "arc_easy", "--limit", "-3"], "--limit must be positive"),
                      (["--tasks", "arc_easy", "--shots", "-1"], "--shots must be >= 0")):
        rc = main(["eval", *argv, "--out", str(tmp_path)])
        err = capsys.readouterr().err
        assert rc == 1 and key in err and err.count("\n") == 1, (argv, err)
    assert not (tmp_path / "results.json").exists()
