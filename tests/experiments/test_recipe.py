"""The training recipe's pieces: augmentation, cosine schedule, clipping only without BatchNorm."""
from __future__ import annotations

import math

import pytest
import torch

from initscore import models
from initscore.experiments.recipe import augment, cosine_lr, has_batchnorm, needs_clipping, pad_values


def _images(b=6, c=3, h=8, w=8):
    return torch.arange(b * c * h * w, dtype=torch.float32).reshape(b, c, h, w)


def test_augment_shapes_and_seed_determinism():
    x = _images()
    a = augment(x, torch.Generator().manual_seed(3), padding=4)
    b = augment(x, torch.Generator().manual_seed(3), padding=4)
    c = augment(x, torch.Generator().manual_seed(4), padding=4)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_augment_is_a_crop_of_the_padded_image_possibly_flipped():
    x = _images(b=32)
    fill = torch.tensor([-1.0, -2.0, -3.0])
    out = augment(x, torch.Generator().manual_seed(0), padding=2, fill=fill)
    for i in range(len(x)):
        padded = torch.empty(3, 12, 12)
        padded[:] = fill.view(3, 1, 1)
        padded[:, 2:10, 2:10] = x[i]
        found = any(
            torch.equal(out[i], cand)
            for oy in range(5) for ox in range(5)
            for cand in (padded[:, oy:oy + 8, ox:ox + 8], padded[:, oy:oy + 8, ox:ox + 8].flip(2))
        )
        assert found, f"sample {i} is not a (flipped) crop"


def test_augment_padding_zero_only_flips_and_flips_about_half():
    x = _images(b=400, h=4, w=4)
    out = augment(x, torch.Generator().manual_seed(1), padding=0)
    same = [torch.equal(out[i], x[i]) for i in range(len(x))]
    flipped = [torch.equal(out[i], x[i].flip(2)) for i in range(len(x))]
    assert all(s or f for s, f in zip(same, flipped))
    assert 150 < sum(flipped) < 250


def test_augment_rejects_flat_inputs():
    with pytest.raises(ValueError):
        augment(torch.zeros(4, 10), torch.Generator())


def test_pad_value_is_normalized_black():
    v = pad_values(((0.5, 0.25, 0.0), (0.5, 0.25, 2.0)), 3)
    assert torch.allclose(v, torch.tensor([-1.0, -1.0, 0.0]))
    assert torch.equal(pad_values(None, 3), torch.zeros(3))


def test_cosine_schedule_values():
    T, base = 100, 0.1
    assert cosine_lr(0, T, base) == pytest.approx(base)
    assert cosine_lr(50, T, base) == pytest.approx(base / 2)
    assert cosine_lr(25, T, base) == pytest.approx(base * 0.5 * (1 + math.cos(math.pi / 4)))
    assert cosine_lr(100, T, base) == pytest.approx(0.0, abs=1e-15)
    lrs = [cosine_lr(t, T, base) for t in range(T)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_cosine_schedule_with_warmup():
    T, W, base = 100, 10, 1.0
    assert cosine_lr(0, T, base, W) == pytest.approx(0.1)
    assert cosine_lr(9, T, base, W) == pytest.approx(1.0)
    assert cosine_lr(10, T, base, W) == pytest.approx(1.0)
    assert cosine_lr(55, T, base, W) == pytest.approx(0.5)


def test_clipping_only_for_networks_without_batchnorm():
    no_bn = models.create("resnet20", bn=False)
    with_bn = models.create("resnet20", bn=True)
    assert not has_batchnorm(no_bn) and has_batchnorm(with_bn)
    assert needs_clipping(no_bn, "auto") == 1.0
    assert needs_clipping(with_bn, "auto") is None
    assert needs_clipping(with_bn, 0.5) == 0.5
    assert needs_clipping(no_bn, None) is None
