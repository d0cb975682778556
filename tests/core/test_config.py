import pytest

from llmkit.core.config import from_dict, override, replace
from llmkit.core.errors import ConfigError, LLMKitError
from llmkit.model import ModelConfig, preset


def test_preset_and_replace():
    cfg = replace(preset("smollm2-135m"), n_layer=2)
    assert cfg.n_layer == 2 and cfg.d_model == 576 and cfg.kv_heads == 3 and cfg.dim_head == 64


def test_unknown_key_is_an_error_naming_it():
    with pytest.raises(ConfigError, match="n_layers"):
        replace(preset("tiny-llama"), n_layers=3)
    with pytest.raises(ConfigError, match="bogus"):
        from_dict(ModelConfig, {"bogus": 1})


def test_unknown_preset_lists_valid_names():
    with pytest.raises(ConfigError) as e:
        preset("gpt5")
    assert "gpt5" in str(e.value) and "smollm2-135m" in str(e.value)


def test_overrides_parse_values():
    cfg = override(preset("tiny-llama"), ["n_layer=3", "rope_theta=1e4", "tie_embeddings=false", "rope_scaling=none"])
    assert cfg.n_layer == 3 and cfg.rope_theta == 1e4 and cfg.tie_embeddings is False and cfg.rope_scaling is None
    with pytest.raises(ConfigError):
        override(cfg, ["n_layer"])


@pytest.mark.parametrize("bad", [dict(norm="batchnorm"), dict(n_head=3, d_model=128), dict(n_kv_head=3),
                                 dict(pos="alibi"), dict(n_layer=0)])
def test_invalid_values(bad):
    with pytest.raises(ConfigError):
        replace(preset("tiny-llama"), **bad)


def test_roundtrip_dict():
    cfg = preset("llama3.2-1b")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_error_message_has_fix():
    e = ConfigError("bad thing", "do this")
    assert isinstance(e, LLMKitError) and str(e) == "bad thing — do this"
