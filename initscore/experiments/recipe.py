"""The training recipe's pieces on tensors (torch): augmentation, cosine schedule, clipping rule.

* :func:`augment` — standard CIFAR augmentation on a normalized batch: pad each image
  by ``padding`` pixels with the normalized value of a BLACK pixel (what
  ``torchvision.transforms.RandomCrop(32, padding=4)`` does on the uint8 image),
  take a random crop of the original size, flip horizontally with probability 1/2.
  Fully vectorized; deterministic given the ``torch.Generator``.
* :func:`cutout` — Cutout (DeVries & Taylor 2017, as GradInit's ``utils.Cutout``): per image one
  square of side ``length`` centred at a uniform pixel, clipped to the image, set to 0 (the
  normalized mean colour: it runs after normalization).
* :func:`param_groups` — SGD parameter groups: BatchNorm affine parameters without weight decay
  when asked, biases of networks without BatchNorm at a fraction of the learning rate (GradInit).
* :func:`cosine_lr` — lr_t = base * 0.5 * (1 + cos(pi * t / T)) for t in [0, T] after an
  optional linear warmup (lr_t = base * (t + 1) / W for t < W), t counted in iterations.
* :func:`needs_clipping` — gradient-norm clipping only for networks without
  BatchNorm (paper Appendix B.2: no-BN networks are trained with clipping 1.0).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn


def pad_values(stats: tuple[Sequence[float], Sequence[float]] | None, channels: int) -> Tensor:
    """Per-channel normalized value of a zero (black) pixel: -mean/std (0 when stats are unknown)."""
    if stats is None:
        return torch.zeros(channels)
    mean, std = stats
    if len(mean) != channels:
        return torch.zeros(channels)
    return torch.tensor([-m / s for m, s in zip(mean, std)], dtype=torch.float32)


def augment(x: Tensor, generator: torch.Generator, padding: int = 4, fill: Tensor | None = None) -> Tensor:
    """Random crop of the ``padding``-padded images + random horizontal flip; x is (B, C, H, W)."""
    if x.dim() != 4:
        raise ValueError(f"augment expects (B, C, H, W) images, got shape {tuple(x.shape)}")
    B, C, H, W = x.shape
    gdev = generator.device
    if padding > 0:
        padded = x.new_empty((B, C, H + 2 * padding, W + 2 * padding))
        f = torch.zeros(C) if fill is None else fill
        padded[:] = f.to(device=x.device, dtype=x.dtype).view(1, C, 1, 1)
        padded[:, :, padding:padding + H, padding:padding + W] = x
        oy = torch.randint(0, 2 * padding + 1, (B,), generator=generator, device=gdev).to(x.device)
        ox = torch.randint(0, 2 * padding + 1, (B,), generator=generator, device=gdev).to(x.device)
        rows = (oy[:, None] + torch.arange(H, device=x.device)[None, :])  # (B, H)
        cols = (ox[:, None] + torch.arange(W, device=x.device)[None, :])  # (B, W)
        bidx = torch.arange(B, device=x.device)[:, None, None, None]
        cidx = torch.arange(C, device=x.device)[None, :, None, None]
        out = padded[bidx, cidx, rows[:, None, :, None], cols[:, None, None, :]]
    else:
        out = x.clone()
    flip = torch.rand((B,), generator=generator, device=gdev).to(x.device) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def cutout(x: Tensor, generator: torch.Generator, length: int) -> Tensor:
    """Zero one ``length`` x ``length`` square per image (rows cy - length//2 .. cy + length//2 - 1, clipped)."""
    if x.dim() != 4:
        raise ValueError(f"cutout expects (B, C, H, W) images, got shape {tuple(x.shape)}")
    if length <= 0:
        return x
    B, _, H, W = x.shape
    gdev = generator.device
    cy = torch.randint(0, H, (B,), generator=generator, device=gdev).to(x.device)
    cx = torch.randint(0, W, (B,), generator=generator, device=gdev).to(x.device)
    half = length // 2
    rows = torch.arange(H, device=x.device)[None, :]
    cols = torch.arange(W, device=x.device)[None, :]
    in_r = (rows >= (cy[:, None] - half)) & (rows < (cy[:, None] + half))  # (B, H)
    in_c = (cols >= (cx[:, None] - half)) & (cols < (cx[:, None] + half))  # (B, W)
    hole = in_r[:, :, None] & in_c[:, None, :]  # (B, H, W)
    return x.masked_fill(hole[:, None, :, :], 0.0)


def param_groups(model: nn.Module, weight_decay: float, bn_weight_decay: bool = True,
                 nobn_bias_lr_scale: float = 1.0) -> list[dict]:
    """SGD parameter groups; each carries ``lr_scale`` (the schedule's lr is multiplied by it).

    With the defaults: one group of every trainable parameter at ``weight_decay``."""
    bn_params = set()
    if not bn_weight_decay:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                bn_params.update(id(p) for p in m.parameters(recurse=False))
    slow_bias = nobn_bias_lr_scale != 1.0 and not has_batchnorm(model)
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        wd = 0.0 if id(p) in bn_params else weight_decay
        lr_scale = nobn_bias_lr_scale if (slow_bias and name.rsplit(".", 1)[-1] == "bias") else 1.0
        groups.setdefault((wd, lr_scale), []).append(p)
    return [{"params": ps, "weight_decay": wd, "lr_scale": s} for (wd, s), ps in groups.items()]


def cosine_lr(step: int, total_steps: int, base_lr: float, warmup_steps: int = 0) -> float:
    """Learning rate at iteration ``step`` (0-based) of ``total_steps``: linear warmup then cosine to 0."""
    if total_steps < 1:
        raise ValueError("total_steps must be >= 1")
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    t = min(max(step - warmup_steps, 0), span)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * t / span))


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def needs_clipping(model: nn.Module, clip: float | str | None) -> float | None:
    """The clipping threshold to apply: ``"auto"`` -> 1.0 without BatchNorm, None with it."""
    if clip == "auto":
        return None if has_batchnorm(model) else 1.0
    if clip is None:
        return None
    return float(clip)
