"""The CLI as a user meets it: help, verbs, one-line errors with exit status 1."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llmkit.cli.main import COMMANDS, EXTRA_VERBS, VERBS, build_parser

ROOT = Path(__file__).resolve().parents[1]


def run(*args, input=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "llmkit", *args], capture_output=True, text=True,
                          input=input, timeout=timeout)


def assert_one_line_error(proc, *needles):
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n.lower() in lines[0].lower(), lines[0]


def test_verbs_map_matches_parser_and_readme():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "verb")
    assert set(VERBS) == set(COMMANDS)
    assert set(sub.choices) == set(VERBS) | set(EXTRA_VERBS)
    readme = (ROOT / "README.md").read_text()
    for verb in set(VERBS) | set(EXTRA_VERBS):
        assert f"llmkit {verb}" in readme, verb


@pytest.mark.parametrize("verb", VERBS + EXTRA_VERBS)
def test_every_verb_has_help(verb):
    proc = run(verb, "--help")
    assert proc.returncode == 0 and "usage: llmkit" in proc.stdout
    for option in re.findall(r"^\s+(--[a-z-]+)", proc.stdout, flags=re.M):  # every option is explained
        line = next(ln for ln in proc.stdout.splitlines() if ln.strip().startswith(option))
        assert len(line.strip()) > len(option) + 5 or "help" in option, line


def test_missing_model_file(tmp_path):
    assert_one_line_error(run("info", str(tmp_path / "nope.gguf")), "not found")


def test_truncated_gguf(tmp_path):
    from llmkit.core.assets import asset_path

    bad = tmp_path / "cut.gguf"
    with open(asset_path("smollm2"), "rb") as f:
        bad.write_bytes(f.read(3_000_000))
    assert_one_line_error(run("generate", "--model", str(bad), "hi"), "cut.gguf")


def test_corrupted_gguf(tmp_path):
    bad = tmp_path / "junk.gguf"
    bad.write_bytes(b"GGUF" + bytes(range(256)) * 10)
    assert_one_line_error(run("info", str(bad)), "junk.gguf")
    notgguf = tmp_path / "model.gguf"
    notgguf.write_text("hello")
    assert_one_line_error(run("info", str(notgguf)), "gguf")


def test_unknown_architecture(tmp_path):
    import gguf as gguf  # a test extra: missing must fail, not skip
    import numpy as np

    path = tmp_path / "mamba.gguf"
    w = gguf.GGUFWriter(str(path), "mamba")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert_one_line_error(run("info", str(path)), "mamba")


def test_unknown_preset():
    assert_one_line_error(run("info", "--preset", "gpt-17"), "gpt-17", "tiny-llama")


def test_preset_info():
    proc = run("info", "--preset", "smollm2-135m", "--json")
    data = json.loads(proc.stdout)
    assert data["parameters"] == 134_515_008 and data["n_kv_head"] == 3


def test_overlong_prompt():
    proc = run("generate", "--max-tokens", "10", "word " * 9000)
    assert_one_line_error(proc, "prompt of 9001 tokens exceeds the context window of 8192")
    proc = run("generate", "--max-tokens", "8000", "word " * 300)
    assert_one_line_error(proc, "context window of 8192", "max_tokens <= 7891")


def test_bad_sampling_flag():
    assert_one_line_error(run("generate", "--temperature", "-1", "hi"), "temperature")


def test_generate_json_answers_paris():
    proc = run("generate", "--chat", "--temperature", "0", "--json", "What is the capital of France?")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert "Paris" in out["text"] and out["finish_reason"] == "stop" and out["completion_tokens"] > 0


def test_chat_repl_commands():
    script = "/system Answer in one word.\nWhat is the capital of France?\n/reset\n/bogus\n/exit\n"
    proc = run("chat", "--temperature", "0", "--max-tokens", "16", input=script)
    assert proc.returncode == 0, proc.stderr
    assert "system prompt set" in proc.stdout and "Paris" in proc.stdout
    assert "history cleared" in proc.stdout and "unknown command '/bogus'" in proc.stdout


def test_info_smollm2():
    proc = run("info", "--json")
    data = json.loads(proc.stdout)
    assert data["arch"] == "llama" and data["n_layer"] == 30 and data["context_length"] == 8192
    assert data["parameters"] == 134_515_008 and "im_start" in data["chat_template"]
