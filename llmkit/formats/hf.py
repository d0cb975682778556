"""Hugging Face model directories ↔ llmkit: config.json, safetensors (sharded too), tokenizer.json.

Covers the GPT-2, Llama (incl. SmolLM, Mistral-style) and Qwen2 key layouts.
GPT-2 checkpoints use Conv1D, which stores weights as (in, out): we transpose.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from llmkit.core.checkpoint import LazyTensors
from llmkit.core.fileio import atomic_write_dir
from llmkit.core.errors import CheckpointError, FormatError
from llmkit.model.config import ModelConfig

if TYPE_CHECKING:
    from llmkit.tokenizer import Tokenizer

LLAMA_TYPES = ("llama", "mistral", "qwen2", "mixtral")
SHARD_BYTES = 2 * 1024**3  # HF's default max shard size is in this range


# ---- config ------------------------------------------------------------------------------------
def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    mt = hf.get("model_type")
    if mt == "gpt2":
        act = hf.get("activation_function", "gelu_new")
        return ModelConfig(
            arch="gpt2", vocab_size=hf["vocab_size"], n_layer=hf["n_layer"], n_head=hf["n_head"],
            d_model=hf["n_embd"], d_ff=hf.get("n_inner") or 4 * hf["n_embd"], max_seq_len=hf["n_positions"],
            pos="learned", norm="layernorm", norm_eps=hf.get("layer_norm_epsilon", 1e-5),
            mlp="gelu" if act == "gelu" else "gelu_tanh", mlp_bias=True, qkv_bias=True, attn_out_bias=True,
            tie_embeddings=hf.get("tie_word_embeddings", True))
    if mt not in LLAMA_TYPES:
        raise FormatError(f"unsupported HF model_type {mt!r}", f"llmkit imports {', '.join(('gpt2',) + LLAMA_TYPES)}")
    if hf.get("hidden_act", "silu") != "silu":
        raise FormatError(f"unsupported hidden_act {hf.get('hidden_act')!r}", "only SwiGLU (silu) MLPs are supported")
    rs = hf.get("rope_scaling") or hf.get("rope_parameters") or {}
    rtype = rs.get("rope_type", rs.get("type"))
    rtype = None if rtype in (None, "default") else rtype
    theta = hf.get("rope_theta") or rs.get("rope_theta") or 10000.0
    n_head = hf["num_attention_heads"]
    head_dim = hf.get("head_dim")
    return ModelConfig(
        arch="qwen2" if mt == "qwen2" else "llama", vocab_size=hf["vocab_size"],
        n_layer=hf["num_hidden_layers"], n_head=n_head, n_kv_head=hf.get("num_key_value_heads", n_head),
        d_model=hf["hidden_size"], d_ff=hf["intermediate_size"],
        head_dim=head_dim if head_dim and head_dim * n_head != hf["hidden_size"] else None,
        max_seq_len=hf.get("max_position_embeddings", 2048), pos="rope", rope_theta=float(theta),
        rope_scaling=_rope_type(rtype), rope_factor=float(rs.get("factor", 1.0)),
        rope_original_max_seq_len=rs.get("original_max_position_embeddings"),
        rope_low_freq_factor=float(rs.get("low_freq_factor", 1.0)),
        rope_high_freq_factor=float(rs.get("high_freq_factor", 4.0)),
        yarn_beta_fast=float(rs.get("beta_fast", 32.0)), yarn_beta_slow=float(rs.get("beta_slow", 1.0)),
        norm="rmsnorm", norm_eps=hf.get("rms_norm_eps", 1e-6),
        mlp="swiglu", mlp_bias=hf.get("mlp_bias", False),
        qkv_bias=mt == "qwen2" or hf.get("attention_bias", False),
        attn_out_bias=hf.get("attention_bias", False) and mt != "qwen2",
        tie_embeddings=hf.get("tie_word_embeddings", False),
        n_expert=hf.get("num_local_experts", 0) if mt == "mixtral" else 0,
        n_expert_active=hf.get("num_experts_per_tok", 2) if mt == "mixtral" else 2)


def _rope_type(rtype: str | None) -> str | None:
    if rtype in (None, "linear", "yarn", "llama3"):
        return rtype
    raise FormatError(f"unsupported rope scaling {rtype!r}",
                      "llmkit supports linear, yarn and llama3 scaling from HF configs (and static ntk natively)")


def config_to_hf(cfg: ModelConfig, tok: Tokenizer | None = None) -> dict[str, Any]:
    ids = {}
    if tok is not None:
        ids = {"bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id, "pad_token_id": tok.pad_id}
    if cfg.arch == "gpt2":
        return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": cfg.vocab_size,
                "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_embd": cfg.d_model, "n_inner": cfg.ff_dim,
                "n_positions": cfg.max_seq_len, "layer_norm_epsilon": cfg.norm_eps,
                "activation_function": "gelu_new" if cfg.mlp == "gelu_tanh" else "gelu",
                "tie_word_embeddings": cfg.tie_embeddings, "torch_dtype": "float32", **ids}
    qwen = cfg.arch == "qwen2"
    out = {"architectures": ["Qwen2ForCausalLM" if qwen else "LlamaForCausalLM"],
           "model_type": "qwen2" if qwen else "llama", "vocab_size": cfg.vocab_size,
           "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head,
           "num_key_value_heads": cfg.kv_heads, "hidden_size": cfg.d_model, "head_dim": cfg.dim_head,
           "intermediate_size": cfg.ff_dim, "max_position_embeddings": cfg.max_seq_len,
           "rope_theta": cfg.rope_theta, "rms_norm_eps": cfg.norm_eps, "hidden_act": "silu",
           "tie_word_embeddings": cfg.tie_embeddings, "torch_dtype": "float32", **ids}
    if cfg.n_expert:
        _mixtral(out, cfg)
    elif not qwen:
        out["attention_bias"] = cfg.qkv_bias
        out["mlp_bias"] = cfg.mlp_bias
    theta = cfg.rope_theta
    if cfg.rope_scaling == "ntk":  # static NTK is exactly a larger base: fold it in
        theta = cfg.rope_theta * cfg.rope_factor ** (cfg.dim_head / (cfg.dim_head - 2))
    out["rope_theta"] = theta
    out["rope_parameters"] = {"rope_type": "default", "rope_theta": theta}
    if cfg.rope_scaling and cfg.rope_scaling != "ntk":
        rs: dict[str, Any] = {"rope_type": cfg.rope_scaling, "factor": cfg.rope_factor}
        if cfg.rope_original_max_seq_len:
            rs["original_max_position_embeddings"] = cfg.rope_original_max_seq_len
        if cfg.rope_scaling == "llama3":
            rs.update(low_freq_factor=cfg.rope_low_freq_factor, high_freq_factor=cfg.rope_high_freq_factor)
        if cfg.rope_scaling == "yarn":
            rs.update(beta_fast=cfg.yarn_beta_fast, beta_slow=cfg.yarn_beta_slow)
        out["rope_scaling"] = rs  # transformers 4.x
        out["rope_parameters"] = {**rs, "rope_theta": theta}  # transformers 5.x
    return out


def _mixtral(out: dict[str, Any], cfg: ModelConfig) -> None:
    """A mixture of experts exports as HF's Mixtral: Llama attention, a routed SwiGLU MoE in every layer."""
    if cfg.arch != "llama" or cfg.qkv_bias or cfg.attn_out_bias or cfg.mlp_bias:
        raise FormatError(f"a {cfg.arch} mixture of experts with biases has no HF equivalent",
                          "HF's Mixtral is a bias-free Llama; merge experts from a Llama-style base")
    out.update(architectures=["MixtralForCausalLM"], model_type="mixtral", num_local_experts=cfg.n_expert,
               num_experts_per_tok=cfg.n_expert_active, sliding_window=None, router_jitter_noise=0.0,
               output_router_logits=False)


# ---- weight names ------------------------------------------------------------------------------
_LLAMA_LAYER = {"attn_norm": "input_layernorm", "mlp_norm": "post_attention_layernorm",
                "attn.wq": "self_attn.q_proj", "attn.wk": "self_attn.k_proj", "attn.wv": "self_attn.v_proj",
                "attn.wo": "self_attn.o_proj", "mlp.w_gate": "mlp.gate_proj", "mlp.w_up": "mlp.up_proj",
                "mlp.w_down": "mlp.down_proj"}
_GPT2_LAYER = {"attn_norm": "ln_1", "mlp_norm": "ln_2", "attn.wo": "attn.c_proj",
               "mlp.w_up": "mlp.c_fc", "mlp.w_down": "mlp.c_proj"}
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def hf_names(cfg: ModelConfig) -> dict[str, str]:
    """Our tensor name → HF tensor name, for every tensor the config can have.

    GPT-2's fused c_attn is not in the table: it is split/joined explicitly.
    """
    gpt2 = cfg.arch == "gpt2"
    names = ({"tok_emb.weight": "wte.weight", "pos_emb.weight": "wpe.weight", "norm_f.weight": "ln_f.weight",
              "norm_f.bias": "ln_f.bias"} if gpt2 else
             {"tok_emb.weight": "model.embed_tokens.weight", "norm_f.weight": "model.norm.weight"})
    names["lm_head.weight"] = "lm_head.weight"
    layer, prefix = (_GPT2_LAYER, "h.{}.") if gpt2 else (_LLAMA_LAYER, "model.layers.{}.")
    for i in range(cfg.n_layer):
        for ours, theirs in layer.items():
            for kind in ("weight", "bias"):
                names[f"blocks.{i}.{ours}.{kind}"] = prefix.format(i) + f"{theirs}.{kind}"
        if cfg.n_expert:  # Mixtral's names: a router "gate", experts with w1 (gate), w2 (down), w3 (up)
            moe = prefix.format(i) + "block_sparse_moe."
            names[f"blocks.{i}.mlp.gate.weight"] = moe + "gate.weight"
            for e in range(cfg.n_expert):
                for ours, theirs in (("w_gate", "w1"), ("w_down", "w2"), ("w_up", "w3")):
                    names[f"blocks.{i}.mlp.experts.{e}.{ours}.weight"] = moe + f"experts.{e}.{theirs}.weight"
    return names


def _hf_plan(hf_keys, cfg: ModelConfig) -> dict[str, tuple[str, Callable[[torch.Tensor], torch.Tensor]]]:
    """Our tensor name -> (the HF tensor it comes from, how it becomes ours), for HF tensors ``hf_keys``."""
    to_ours = {hf: ours for ours, hf in hf_names(cfg).items()}
    plan: dict[str, tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = {}
    for hf in hf_keys:
        name = hf.removeprefix("transformer.") if cfg.arch == "gpt2" else hf
        transpose = cfg.arch == "gpt2" and name.endswith(_CONV1D)  # Conv1D stores the weight (in, out)
        if cfg.arch == "gpt2":
            if name.endswith((".attn.bias", ".attn.masked_bias")):
                continue  # causal-mask buffers in old GPT-2 checkpoints
            m = re.fullmatch(r"h\.(\d+)\.attn\.c_attn\.(weight|bias)", name)
            if m:  # q, k, v fused along the output dim
                for i, short in enumerate(("wq", "wk", "wv")):
                    plan[f"blocks.{m[1]}.attn.{short}.{m[2]}"] = (
                        hf, lambda t, i=i, tr=transpose: (t.t() if tr else t).split(cfg.d_model, dim=0)[i].contiguous())
                continue
        if name.endswith("rotary_emb.inv_freq"):
            continue  # derived from the config
        if name not in to_ours:
            raise FormatError(f"unexpected tensor {name!r} in HF checkpoint",
                              "llmkit imports plain GPT-2 / Llama / Qwen2 causal LMs")
        plan[to_ours[name]] = (hf, (lambda t: t.t().contiguous()) if transpose else (lambda t: t.contiguous()))
    return plan


class _Planned(Mapping[str, torch.Tensor]):
    """Our state dict over HF tensors, each converted when indexed (with LazyTensors: read then, too)."""

    def __init__(self, tensors: Mapping[str, torch.Tensor], plan: dict):
        self._tensors, self._plan = tensors, plan

    def __getitem__(self, name: str) -> torch.Tensor:
        hf, convert = self._plan[name]
        return convert(self._tensors[hf])

    def __iter__(self) -> Iterator[str]:
        return iter(self._plan)

    def __len__(self) -> int:
        return len(self._plan)


def state_dict_from_hf(tensors: Mapping[str, torch.Tensor], cfg: ModelConfig,
                       lazy: bool = False) -> Mapping[str, torch.Tensor]:
    """HF tensors -> our state dict: a dict, or with ``lazy`` a mapping that converts each tensor on access."""
    planned = _Planned(tensors, _hf_plan(tensors, cfg))
    return planned if lazy else dict(planned.items())


def state_dict_to_hf(sd: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    names = hf_names(cfg)
    out: dict[str, torch.Tensor] = {}
    for name, t in sd.items():
        if cfg.tie_embeddings and name == "lm_head.weight":
            continue  # transformers re-ties from tie_word_embeddings
        if cfg.arch == "gpt2" and re.fullmatch(r"blocks\.\d+\.attn\.w[qkv]\.(weight|bias)", name):
            continue  # joined into c_attn below
        hf = names[name]
        out[hf] = (t.t() if cfg.arch == "gpt2" and hf.endswith(_CONV1D) else t).contiguous()
    if cfg.arch == "gpt2":
        for i in range(cfg.n_layer):
            for kind in ("weight", "bias"):
                t = torch.cat([sd[f"blocks.{i}.attn.{w}.{kind}"] for w in ("wq", "wk", "wv")], dim=0)
                out[f"h.{i}.attn.c_attn.{kind}"] = (t.t() if kind == "weight" else t).contiguous()
    return out


# ---- directories ---------------------------------------------------------------------------
def read_hf_tensors(path: Path, lazy: bool = False) -> Mapping[str, torch.Tensor]:
    """The checkpoint's tensors by HF name; ``lazy``: safetensors read one tensor at a time (LazyTensors)."""
    index = path / "model.safetensors.index.json"
    try:
        if index.is_file():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            if lazy:
                return LazyTensors([path / f for f in files])
            tensors: dict[str, torch.Tensor] = {}
            for f in files:
                tensors.update(load_file(str(path / f)))
            return tensors
        if (path / "model.safetensors").is_file():
            if lazy:
                return LazyTensors([path / "model.safetensors"])
            return load_file(str(path / "model.safetensors"))
        if (path / "pytorch_model.bin").is_file():  # never unpickle arbitrary objects
            return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    except (SafetensorError, CheckpointError, OSError, KeyError, ValueError, RuntimeError) as e:
        raise FormatError(f"could not read weights in {str(path)!r}: {e}", "the download may be incomplete") from e
    raise FormatError(f"no model.safetensors (or index) in {str(path)!r}", "point at a Hugging Face model directory")


def load_hf(path: str | os.PathLike, lazy: bool = False) -> tuple[ModelConfig, Mapping[str, torch.Tensor],
                                                                  Tokenizer | None]:
    """(config, our state dict, tokenizer); ``lazy``: tensors read and converted on access (safetensors)."""
    p = Path(path)
    try:
        hf_cfg = json.loads((p / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise FormatError(f"cannot read {str(p / 'config.json')!r}: {e}", "point at a Hugging Face model directory") from e
    cfg = config_from_hf(hf_cfg)
    sd = state_dict_from_hf(read_hf_tensors(p, lazy), cfg, lazy)
    tok = None
    if (p / "tokenizer.json").is_file():
        from llmkit.tokenizer import Tokenizer

        tok = Tokenizer.load(p)
    return cfg, sd, tok


def save_hf(path: str | os.PathLike, cfg: ModelConfig, sd: dict[str, torch.Tensor],
            tok: Tokenizer | None = None, shard_bytes: int = SHARD_BYTES) -> Path:
    """Write a transformers-loadable directory atomically (sharded past ``shard_bytes``)."""
    hf_sd = {k: v.detach().float().cpu().contiguous() for k, v in state_dict_to_hf(sd, cfg).items()}

    def fill(tmp: Path) -> None:
        (tmp / "config.json").write_text(json.dumps(config_to_hf(cfg, tok), indent=2) + "\n")
        gen = {"bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id} if tok else {}
        (tmp / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
        shards, size = [{}], 0
        for name, t in hf_sd.items():
            nbytes = t.numel() * t.element_size()
            if shards[-1] and size + nbytes > shard_bytes:
                shards.append({})
                size = 0
            shards[-1][name] = t
            size += nbytes
        if len(shards) == 1:
            save_file(shards[0], str(tmp / "model.safetensors"), metadata={"format": "pt"})
        else:
            weight_map = {}
            for i, shard in enumerate(shards):
                fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
                save_file(shard, str(tmp / fname), metadata={"format": "pt"})
                weight_map.update({k: fname for k in shard})
            total = sum(t.numel() * t.element_size() for t in hf_sd.values())
            (tmp / "model.safetensors.index.json").write_text(
                json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
        if tok is not None:
            tok.save(tmp)

    return atomic_write_dir(path, fill)
