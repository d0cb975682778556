"""The `llmkit quantize` verb: writes a runnable checkpoint, a report, and one-line errors."""

import torch

from llmkit.cli.main import main
from llmkit.formats.loader import load_model
from tests.quantize.test_api import IDS, tiny  # noqa: F401  (shared module fixture)


def test_quantize_verb_writes_checkpoint_and_report(tiny, tmp_path, capsys, monkeypatch):  # noqa: F811
    path, fp = tiny
    import llmkit.cli.quantize as cq

    text = "def f(x):\n    return x * 2\n" * 400
    monkeypatch.setattr(cq, "corpus_texts", lambda calib: (text, text))
    out = tmp_path / "q"
    assert main(["quantize", str(path), "--method", "gptq", "--group-size", "32", "--calib-samples", "4",
                 "--calib-len", "32", "--out", str(out), "--report"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "| fp32 |" in printed and "| gptq |" in printed
    assert (out / "report.md").is_file() and (out / "report.png").stat().st_size > 1000
    with torch.no_grad():
        assert torch.isfinite(load_model(out).model(IDS)).all()


def test_bad_group_size_is_one_line_error(tiny, tmp_path, capsys):  # noqa: F811
    path, _ = tiny
    assert main(["quantize", str(path), "--method", "int4", "--group-size", "96", "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "group size 96 does not divide the 64 input features" in err
    assert not (tmp_path / "x").exists()


def test_corpus_texts_split_calibration_from_heldout():
    from llmkit.cli.quantize import corpus_texts

    calib, held = corpus_texts(None, max_bytes=50_000)
    assert len(calib) > 10_000 and len(held) > 10_000 and calib[:2000] not in held
