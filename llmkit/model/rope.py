"""Rotary position embeddings (RoPE) and their context-extension scalings.

RoPE rotates each (x_i, x_{i+D/2}) pair of a query/key head by an angle
position * inv_freq[i]. The dot product q·k then depends only on the
*relative* distance, which is why RoPE models need no position table.
We use the "rotate half" pairing of HF/GPT-NeoX; GGUF files store q/k rows
permuted for llama.cpp's interleaved pairing and are un-permuted on import.

Scalings stretch the frequencies so a model trained at context L can run at
factor*L:
- linear: divide every frequency by factor (position interpolation).
- ntk:    raise the base instead, theta * factor**(D/(D-2)): high frequencies
          (local detail) barely change, low ones are interpolated.
- yarn:   blend interpolated and original frequencies per dimension with a
          linear ramp between two wavelength cut-offs, and scale attention.
- llama3: Llama-3.1's piecewise rule (keep high, divide low, smooth between).
"""

from __future__ import annotations

import math

import torch


def rope_inv_freq(head_dim: int, theta: float, scaling: str | None = None, factor: float = 1.0,
                  original_max_seq_len: int | None = None, low_freq_factor: float = 1.0,
                  high_freq_factor: float = 4.0, beta_fast: float = 32.0,
                  beta_slow: float = 1.0) -> tuple[torch.Tensor, float]:
    """Return (inv_freq (head_dim/2,), attention scale applied to cos/sin)."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim
    if scaling == "ntk":
        theta = theta * factor ** (head_dim / (head_dim - 2))
    inv_freq = 1.0 / (theta ** exponents)
    if scaling in (None, "ntk") or factor == 1.0 and scaling != "yarn":
        return inv_freq.float(), 1.0
    if scaling == "linear":
        return (inv_freq / factor).float(), 1.0
    if original_max_seq_len is None:
        raise ValueError(f"rope_scaling={scaling!r} needs rope_original_max_seq_len")
    if scaling == "llama3":
        return _llama3(inv_freq, factor, original_max_seq_len, low_freq_factor, high_freq_factor).float(), 1.0
    assert scaling == "yarn", scaling
    return _yarn(inv_freq, head_dim, theta, factor, original_max_seq_len, beta_fast, beta_slow)


def _llama3(inv_freq, factor, old_len, low_ff, high_ff):
    wavelen = 2 * math.pi / inv_freq
    low_wavelen, high_wavelen = old_len / low_ff, old_len / high_ff
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)  # long waves: interpolate
    smooth = (old_len / wavelen - low_ff) / (high_ff - low_ff)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, blended, scaled)


def _yarn(inv_freq, head_dim, theta, factor, old_len, beta_fast, beta_slow):
    def dim_for_rotations(n_rot: float) -> float:
        # the dimension index whose wavelength fits n_rot full turns in the old context
        return head_dim * math.log(old_len / (n_rot * 2 * math.pi)) / (2 * math.log(theta))

    low = max(math.floor(dim_for_rotations(beta_fast)), 0)
    high = min(math.ceil(dim_for_rotations(beta_slow)), head_dim - 1)
    if low == high:
        high += 0.001  # avoid a zero-width ramp
    ramp = ((torch.arange(head_dim // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
    keep = 1 - ramp  # 1 = keep original (extrapolate), 0 = interpolate
    mixed = (inv_freq / factor) * (1 - keep) + inv_freq * keep
    scale = 0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0
    return mixed.float(), scale


def rope_cache(inv_freq: torch.Tensor, max_len: int, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables of shape (max_len, head_dim/2)."""
    t = torch.arange(max_len, dtype=torch.float32)
    angles = torch.outer(t, inv_freq.float())  # (T, D/2)
    return angles.cos() * scale, angles.sin() * scale


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, H, T, D) with cos/sin broadcastable to (B, 1, T, D/2)."""
    d = x.shape[-1] // 2
    x1, x2 = x[..., :d], x[..., d:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
