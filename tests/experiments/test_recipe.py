"""The training recipe's pieces: augmentation, cosine schedule, clipping only without BatchNorm."""
from __future__ import annotations

import math

import pytest
import torch

from initscore import models
from initscore.experiments.recipe import augment, cosine_lr, cutout, has_batchnorm
from initscore.experiments.recipe import needs_clipping, pad_values, param_groups


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


def test_cutout_zeroes_one_clipped_square_per_image_like_gradinit():
    """Against a per-image loop written as GradInit's utils.Cutout (numpy clip of centre +- length//2)."""
    x = torch.randn(64, 3, 32, 32) + 5.0  # no zeros of its own
    gen = torch.Generator().manual_seed(7)
    out = cutout(x, gen, 16)
    ref_gen = torch.Generator().manual_seed(7)
    cy = torch.randint(0, 32, (64,), generator=ref_gen)
    cx = torch.randint(0, 32, (64,), generator=ref_gen)
    for i in range(64):
        mask = torch.ones(32, 32)
        y1, y2 = max(int(cy[i]) - 8, 0), min(int(cy[i]) + 8, 32)
        x1, x2 = max(int(cx[i]) - 8, 0), min(int(cx[i]) + 8, 32)
        mask[y1:y2, x1:x2] = 0
        assert torch.equal(out[i], x[i] * mask), i
    sizes = (out == 0).all(1).flatten(1).sum(1)  # zeroed pixels per image
    assert int(sizes.max()) == 256 and int(sizes.min()) >= 64  # a full 16x16 hole; a corner one keeps >= 8x8
    assert cutout(x, gen, 0) is x
    with pytest.raises(ValueError):
        cutout(torch.zeros(4, 10), gen, 16)


def test_param_groups_default_is_one_group_and_gradinit_options_split_it():
    nobn = models.build({"arch": "resnet20", "args": {"bn": False}})
    bn = models.build({"arch": "resnet20", "args": {"bn": True}})
    for m in (nobn, bn):
        (g,) = param_groups(m, 1e-4)
        assert g["weight_decay"] == 1e-4 and g["lr_scale"] == 1.0
        assert [id(p) for p in g["params"]] == [id(p) for p in m.parameters()]
    groups = param_groups(nobn, 1e-4, bn_weight_decay=False, nobn_bias_lr_scale=0.1)
    slow = {id(p) for g in groups if g["lr_scale"] == 0.1 for p in g["params"]}
    assert slow == {id(p) for n, p in nobn.named_parameters() if n.endswith(".bias")} and slow
    assert all(g["weight_decay"] == 1e-4 for g in groups)  # no BN: nothing exempt from decay
    groups = param_groups(bn, 1e-4, bn_weight_decay=False, nobn_bias_lr_scale=0.1)
    free = {id(p) for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    bn_ids = {id(p) for mod in bn.modules() if isinstance(mod, torch.nn.BatchNorm2d) for p in mod.parameters()}
    assert free == bn_ids and free
    assert all(g["lr_scale"] == 1.0 for g in groups)  # BN network: no slow biases
