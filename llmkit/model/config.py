"""ModelConfig: one dataclass describes every family the Transformer covers.

GPT-2:  learned positions, LayerNorm, GELU MLP, biases everywhere, tied embeddings.
Llama / SmolLM: RoPE, RMSNorm, SwiGLU, no biases, grouped-query attention.
Qwen2:  Llama plus a bias on q/k/v projections.

    cfg = preset("smollm2-135m")
    cfg = replace(cfg, n_layer=2)      # unknown keys raise ConfigError
"""

from __future__ import annotations

from dataclasses import dataclass

from llmkit.core.config import from_dict, preset as _preset, replace, to_dict
from llmkit.core.errors import ConfigError

POSITIONS = ("rope", "learned")
NORMS = ("rmsnorm", "layernorm")
MLPS = ("swiglu", "gelu", "gelu_tanh")
ROPE_SCALINGS = (None, "linear", "ntk", "yarn", "llama3")


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "llama"  # family tag, used by converters ("gpt2", "llama", "qwen2")
    vocab_size: int = 32000
    n_layer: int = 2
    n_head: int = 4
    n_kv_head: int | None = None  # None = n_head (MHA); 1 = MQA; in between = GQA
    d_model: int = 128
    d_ff: int | None = None  # None = 4*d_model (gelu) or the Llama 8/3 rule rounded to 64 (swiglu)
    head_dim: int | None = None  # None = d_model // n_head
    max_seq_len: int = 2048
    pos: str = "rope"
    rope_theta: float = 10000.0
    rope_scaling: str | None = None
    rope_factor: float = 1.0
    rope_original_max_seq_len: int | None = None  # context the base model was trained at (yarn, llama3)
    rope_low_freq_factor: float = 1.0  # llama3 scaling
    rope_high_freq_factor: float = 4.0  # llama3 scaling
    yarn_beta_fast: float = 32.0
    yarn_beta_slow: float = 1.0
    norm: str = "rmsnorm"
    norm_eps: float = 1e-5
    mlp: str = "swiglu"
    mlp_bias: bool = False
    qkv_bias: bool = False
    attn_out_bias: bool = False
    tie_embeddings: bool = True
    dropout: float = 0.0
    init_std: float = 0.02
    n_expert: int = 0  # 0 = dense MLP; > 0 = a mixture of this many experts per layer (llmkit.model.moe)
    n_expert_active: int = 2  # experts each token is routed to (top-k), with n_expert > 0

    def __post_init__(self) -> None:
        checks = [
            (self.pos in POSITIONS, "pos", self.pos, POSITIONS),
            (self.norm in NORMS, "norm", self.norm, NORMS),
            (self.mlp in MLPS, "mlp", self.mlp, MLPS),
            (self.rope_scaling in ROPE_SCALINGS, "rope_scaling", self.rope_scaling, ROPE_SCALINGS),
        ]
        for ok, key, value, valid in checks:
            if not ok:
                raise ConfigError(f"unknown {key} {value!r}", f"choose one of: {', '.join(map(str, valid))}")
        for key in ("vocab_size", "n_layer", "n_head", "d_model", "max_seq_len"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key} must be positive (got {getattr(self, key)})", f"set {key} to a positive int")
        if self.n_kv_head is not None and (self.n_kv_head <= 0 or self.n_head % self.n_kv_head):
            raise ConfigError(f"n_head={self.n_head} is not a multiple of n_kv_head={self.n_kv_head}",
                              "pick n_kv_head dividing n_head")
        if self.head_dim is None and self.d_model % self.n_head:
            raise ConfigError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}",
                              "set head_dim explicitly or change n_head")
        if self.n_expert and not (0 < self.n_expert_active <= self.n_expert):
            raise ConfigError(f"n_expert_active={self.n_expert_active} must be in [1, n_expert={self.n_expert}]",
                              "route each token to at least one and at most all experts")
        if self.n_expert and self.mlp != "swiglu":
            raise ConfigError(f"mixture of experts needs mlp='swiglu' (got {self.mlp!r})", "set mlp=swiglu")
        if self.pos == "rope" and self.dim_head % 2:
            raise ConfigError(f"RoPE needs an even head_dim (got {self.dim_head})", "change head_dim")

    # Derived sizes: properties so the stored config stays minimal.
    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def dim_head(self) -> int:
        return self.head_dim or self.d_model // self.n_head

    @property
    def ff_dim(self) -> int:
        if self.d_ff:
            return self.d_ff
        if self.mlp == "swiglu":  # 2/3 of 4d keeps the parameter count of a 4d GELU MLP
            return 64 * ((int(8 * self.d_model / 3) + 63) // 64)
        return 4 * self.d_model

    def to_dict(self) -> dict:
        d = to_dict(self)
        if not self.n_expert:  # dense models keep the config.json they had before MoE existed
            d.pop("n_expert")
            d.pop("n_expert_active")
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        return from_dict(cls, data)

    def replace(self, **kw) -> "ModelConfig":
        return replace(self, **kw)


_GPT2 = dict(arch="gpt2", vocab_size=50257, max_seq_len=1024, pos="learned", norm="layernorm",
             mlp="gelu_tanh", mlp_bias=True, qkv_bias=True, attn_out_bias=True, tie_embeddings=True)
_SMOLLM2 = dict(arch="llama", vocab_size=49152, max_seq_len=8192, rope_theta=100000.0, tie_embeddings=True)

PRESETS: dict[str, ModelConfig] = {
    "gpt2": ModelConfig(**_GPT2, n_layer=12, n_head=12, d_model=768),
    "gpt2-medium": ModelConfig(**_GPT2, n_layer=24, n_head=16, d_model=1024),
    "smollm2-135m": ModelConfig(**_SMOLLM2, n_layer=30, n_head=9, n_kv_head=3, d_model=576, d_ff=1536),
    "smollm2-360m": ModelConfig(**_SMOLLM2, n_layer=32, n_head=15, n_kv_head=5, d_model=960, d_ff=2560),
    "qwen2.5-0.5b": ModelConfig(arch="qwen2", vocab_size=151936, n_layer=24, n_head=14, n_kv_head=2,
                                d_model=896, d_ff=4864, max_seq_len=32768, rope_theta=1000000.0,
                                norm_eps=1e-6, qkv_bias=True, tie_embeddings=True),
    "llama3.2-1b": ModelConfig(vocab_size=128256, n_layer=16, n_head=32, n_kv_head=8, d_model=2048,
                               d_ff=8192, max_seq_len=131072, rope_theta=500000.0, rope_scaling="llama3",
                               rope_factor=32.0, rope_original_max_seq_len=8192, tie_embeddings=True),
    # Small shapes for laptops and tests.
    "tiny-llama": ModelConfig(vocab_size=4096, n_layer=4, n_head=4, n_kv_head=2, d_model=128, max_seq_len=512),
    "tiny-gpt": ModelConfig(**{**_GPT2, "vocab_size": 4096, "max_seq_len": 512}, n_layer=4, n_head=4, d_model=128),
}


def preset(name: str) -> ModelConfig:
    return _preset(PRESETS, name, kind="model preset")
