"""Losses as small pure functions (error-prone math gets a known-value test)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IGNORE = -100


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE) -> torch.Tensor:
    """Mean next-token cross-entropy in nats. logits (B, T, V), targets (B, T).

    Uniform logits over V tokens give exactly log(V).
    """
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=ignore_index)


def bits_per_byte(loss_nats: float, bytes_per_token: float) -> float:
    """Convert a per-token loss in nats to bits per UTF-8 byte of text.

    Tokenizer-independent, so models with different vocabularies compare fairly:
    bits/byte = (nats/token) / ln 2 / (bytes/token).
    """
    return loss_nats / math.log(2) / bytes_per_token


# ---- log-probabilities -----------------------------------------------------------------------------
def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE) -> torch.Tensor:
    """log p(target_t | <t) per position, 0 where the target is ignored. logits (B, T, V), targets (B, T) -> (B, T)."""
    mask = targets != ignore_index
    safe = targets.masked_fill(~mask, 0)
    lp = torch.gather(logits.float().log_softmax(-1), -1, safe.unsqueeze(-1)).squeeze(-1)  # (B, T)
    return lp * mask


def sequence_logprobs(logits: torch.Tensor, targets: torch.Tensor, average: bool = False,
                      ignore_index: int = IGNORE) -> torch.Tensor:
    """Summed (or per-token mean) log-prob of each row's non-ignored targets -> (B,)."""
    lp = token_logprobs(logits, targets, ignore_index).sum(-1)
    if average:
        lp = lp / (targets != ignore_index).sum(-1).clamp(min=1)
    return lp


# ---- preference losses (inputs: (B,) response log-probs under policy and reference) ------------------
DPO_TYPES = ("sigmoid", "ipo", "hinge")


def dpo_loss(pi_c: torch.Tensor, pi_r: torch.Tensor, ref_c: torch.Tensor, ref_r: torch.Tensor,
             beta: float = 0.1, loss_type: str = "sigmoid", label_smoothing: float = 0.0):
    """DPO and its IPO / hinge variants. Returns (loss, chosen_rewards, rejected_rewards).

    h = (pi_c - ref_c) - (pi_r - ref_r)             the implicit reward margin (per pair)
    sigmoid (DPO):  -log σ(β h)  (conservative DPO: -(1-ε) log σ(βh) - ε log σ(-βh))
    IPO:            (h - 1/(2β))²                   (pass per-token-mean log-probs, as TRL does)
    hinge (SLiC):   max(0, 1 - β h)
    rewards = β (pi - ref), detached: what the logs call rewards/chosen and rewards/rejected.
    policy == reference ⇒ h = 0 ⇒ sigmoid loss = log 2.
    """
    h = (pi_c - ref_c) - (pi_r - ref_r)
    if loss_type == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    elif loss_type == "ipo":
        losses = (h - 1 / (2 * beta)) ** 2
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * h)
    else:
        from llmkit.core.errors import ConfigError

        raise ConfigError(f"unknown DPO loss_type {loss_type!r}", f"use one of {list(DPO_TYPES)}")
    return losses.mean(), beta * (pi_c - ref_c).detach(), beta * (pi_r - ref_r).detach()


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, stable on both sides of -log 2 (Mächler 2012)."""
    return torch.where(x < -math.log(2), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def orpo_loss(pi_c_mean: torch.Tensor, pi_r_mean: torch.Tensor, nll_chosen: torch.Tensor, lam: float = 0.1):
    """ORPO: SFT loss on the chosen answer minus λ · log σ(log odds ratio). Returns (loss, log_odds, ratio_term).

    odds(y) = p / (1 - p) with p = exp(mean token log-prob); log odds = lp - log(1 - exp(lp)).
    No reference model. ``nll_chosen`` is the chosen answer's mean token NLL (scalar).
    """
    pi_c_mean, pi_r_mean = pi_c_mean.float(), pi_r_mean.float()
    log_odds = (pi_c_mean - pi_r_mean) - (log1mexp(pi_c_mean) - log1mexp(pi_r_mean))
    ratio = F.logsigmoid(log_odds)
    return nll_chosen - lam * ratio.mean(), log_odds.detach(), ratio.detach()


def kto_loss(pi: torch.Tensor, ref: torch.Tensor, desirable: torch.Tensor, kl: torch.Tensor | float,
             beta: float = 0.1, desirable_weight: float = 1.0, undesirable_weight: float = 1.0):
    """KTO (Ethayarajh et al. 2024, eq. 7) on unpaired examples. Returns (loss, rewards).

    r = pi - ref (log-ratio of each completion); z0 = the KL reference point (detached, >= 0)
    desirable:    w_d (1 - σ(β (r - z0)))       undesirable:  w_u (1 - σ(β (z0 - r)))
    The loss is the mean over all examples of the batch.
    """
    z0 = torch.as_tensor(kl, dtype=pi.dtype, device=pi.device).detach().clamp(min=0)
    r = pi - ref
    losses = torch.where(desirable.bool(), desirable_weight * (1 - torch.sigmoid(beta * (r - z0))),
                         undesirable_weight * (1 - torch.sigmoid(beta * (z0 - r))))
    return losses.mean(), beta * r.detach()


# ---- GRPO ------------------------------------------------------------------------------------------
def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """(B·G,) rewards, consecutive groups of G samples of one prompt -> advantages (r - mean_g) / (std_g + eps).

    std is the unbiased sample std of the group (as TRL computes it); a group whose
    samples all got the same reward has advantage 0 everywhere: nothing to learn from it.
    """
    g = rewards.float().view(-1, group_size)  # (B, G)
    adv = g - g.mean(-1, keepdim=True)
    if scale:
        adv = adv / (g.std(-1, keepdim=True, correction=1) + eps)
    return adv.reshape(-1)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token KL(π‖π_ref) estimate k3 = exp(ref - logp) - (ref - logp) - 1 (>= 0, unbiased; Schulman 2020)."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None, advantages: torch.Tensor,
              mask: torch.Tensor, eps: float = 0.2, beta: float = 0.04):
    """GRPO clipped objective (per-token, per-sequence mean, then batch mean). Returns (loss, mean_kl, clip_frac).

    logp, old_logp, ref_logp, mask: (N, T) over completion tokens; advantages (N,).
    ratio = exp(logp - old_logp);  token loss = -min(ratio·A, clip(ratio, 1-ε, 1+ε)·A) + β·k3(logp, ref_logp)
    """
    mask = mask.float()
    ratio = torch.exp(logp - old_logp)
    a = advantages[:, None]
    per_token = -torch.minimum(ratio * a, ratio.clamp(1 - eps, 1 + eps) * a)
    kl = k3_kl(logp, ref_logp) if ref_logp is not None and beta != 0 else torch.zeros_like(logp)
    per_token = per_token + beta * kl
    denom = mask.sum(-1).clamp(min=1.0)
    loss = ((per_token * mask).sum(-1) / denom).mean()
    total = mask.sum().clamp(min=1.0)
    clipped = ((ratio < 1 - eps) & (a < 0)) | ((ratio > 1 + eps) & (a > 0))
    return loss, float((kl.detach() * mask).sum() / total), float((clipped.float() * mask).sum() / total)
